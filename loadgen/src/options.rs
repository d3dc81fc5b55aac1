//! Plain run options for the load generator, plus the parsers for the human units the CLI
//! accepts (`64K`, `64..4K`, `500ms`). No clap here: embedders and tests build [`Options`]
//! directly, and the binary only maps flags onto it.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use echoloop::units::MAX_DURATION;

/// Largest UDP payload over IPv4 (65,535 - 8 UDP header - 20 IP header).
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Largest message we accept for TCP modes. Messages are generated on the fly, so the limit
/// only guards against typos such as `--size 64G` that would make one message take minutes.
pub const MAX_TCP_MESSAGE: usize = 64 << 20;

/// Default `--spin`: long enough to cover the timer's wake-up latency. Measured here (a VM,
/// timer slack already 1 ns): wake-ups came 25–28 µs late at the median, so a 20 µs spin left
/// the corrected p50 25 µs above the uncorrected one at 1,000/s; 100 µs brought the gap to 0
/// at 1,000/s and 20,000/s (`scripts/rate_precision.sh 5s --spin 100us`). The cost is CPU: at
/// rates above 10,000/s the sender polls without sleeping.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(100);

/// Shortest `--interval`: below it the lines are noise and the hand-over costs show.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Every datagram starts with its 8-byte sequence number, so a datagram cannot be smaller.
pub const UDP_HEADER: usize = 8;

/// Most connections (or UDP sockets) one run may ask for. One source address reaches one
/// target over at most 64K ports, so this is far past any real run; its purpose is to refuse
/// a typo before the tables sized by it are allocated.
pub const MAX_CONNECTIONS: usize = 1 << 20;

/// Most worker threads: each has its own poll loop and buffers.
pub const MAX_THREADS: usize = 1024;

/// Most messages (pipeline `--depth`) or datagrams (udp `--window`) in flight per connection:
/// the per-connection tables of send times are sized by it.
pub const MAX_IN_FLIGHT: usize = 1 << 16;

/// What traffic the generator produces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// One message in flight per connection (closed loop).
    PingPong,
    /// `depth` messages in flight per connection (closed loop).
    Pipeline {
        /// Messages in flight per connection.
        depth: usize,
    },
    /// Continuous writing and reading, at most `window` bytes in flight per connection.
    Stream {
        /// Bytes in flight per connection.
        window: usize,
    },
    /// Open loop at a fixed total rate (messages per second across all connections).
    Rate {
        /// Total messages per second.
        rate: f64,
    },
    /// Connect, one echo, close, repeat.
    Churn,
    /// Datagrams with sequence numbers; paced by `rate` (total, open loop) if set, otherwise
    /// by a window of `window` outstanding datagrams per socket.
    Udp {
        /// Outstanding datagrams per socket (closed loop), used when `rate` is `None`.
        window: usize,
        /// Total datagrams per second (open loop).
        rate: Option<f64>,
    },
}

impl Mode {
    /// The name used on the command line and in the JSON report.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::PingPong => "pingpong",
            Mode::Pipeline { .. } => "pipeline",
            Mode::Stream { .. } => "stream",
            Mode::Rate { .. } => "rate",
            Mode::Churn => "churn",
            Mode::Udp { .. } => "udp",
        }
    }
}

/// Message size: fixed, or drawn uniformly per message from an inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeSpec {
    /// Every message has this many bytes.
    Fixed(usize),
    /// Each message has between `min` and `max` bytes (inclusive).
    Range {
        /// Smallest size.
        min: usize,
        /// Largest size.
        max: usize,
    },
}

impl SizeSpec {
    /// Smallest possible message.
    pub fn min(&self) -> usize {
        match *self {
            SizeSpec::Fixed(n) => n,
            SizeSpec::Range { min, .. } => min,
        }
    }

    /// Largest possible message.
    pub fn max(&self) -> usize {
        match *self {
            SizeSpec::Fixed(n) => n,
            SizeSpec::Range { max, .. } => max,
        }
    }

    /// Picks a size from a random 64-bit value (the caller owns the PRNG so that sizes are
    /// reproducible per connection).
    #[inline]
    pub fn pick(&self, random: u64) -> usize {
        match *self {
            SizeSpec::Fixed(n) => n,
            SizeSpec::Range { min, max } => {
                let span = (max - min) as u64 + 1;
                // Multiply-shift instead of `%`: no division on the hot path, and the bias is
                // negligible for spans far below 2^64.
                min + ((random as u128 * span as u128) >> 64) as usize
            }
        }
    }
}

/// Everything one run needs. Build it with [`Options::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct Options {
    /// Traffic pattern.
    pub mode: Mode,
    /// Echo server address (TCP or UDP depending on the mode).
    pub target: SocketAddr,
    /// Worker threads, each with its own `mio::Poll` and a share of the connections.
    pub threads: usize,
    /// Connections (TCP) or sockets (UDP) in total; for churn, concurrent connect/echo/close
    /// loops.
    pub connections: usize,
    /// Message size.
    pub size: SizeSpec,
    /// The size as the user wrote it, echoed in the report (`"64"`, `"64..4K"`).
    pub size_text: String,
    /// Measured time, after the warm-up.
    pub duration: Duration,
    /// Time before measuring starts; traffic flows but is not counted in latency/requests.
    pub warmup: Duration,
    /// New connections per second across all threads, `None` = as fast as possible.
    pub connect_rate: Option<f64>,
    /// Seed for payloads and random sizes; the same seed gives the same byte streams.
    pub seed: u64,
    /// After the run, how long echoes may stop arriving before the rest is declared lost (the
    /// wait extends while echoes keep arriving, up to 10 times this).
    pub drain_timeout: Duration,
    /// UDP: how long a datagram may stay unanswered before its window slot is freed.
    pub loss_timeout: Duration,
    /// A connect that has not completed after this long is abandoned and counted.
    pub connect_timeout: Duration,
    /// Print a progress line on stderr once a second.
    pub progress: bool,
    /// Report figures per interval of this length (`--interval`).
    pub interval: Option<Duration>,
    /// Open-loop modes: how long before each send deadline the worker stops sleeping and
    /// polls without blocking, for precise send times (see `pacer`).
    pub spin: Duration,
    /// UDP: highest acceptable loss, in percent of the datagrams sent, before the exit
    /// code says so. `None`: 0 on a loopback target, 1% elsewhere.
    pub max_loss: Option<f64>,
    /// Failed connects tolerated before the exit code says so.
    pub max_connect_errors: u64,
    /// The command line, recorded in the report's `run` block.
    pub command_line: String,
    /// Wall-clock time to wait for before connecting (`--start-at`), so that generators in
    /// several processes or machines measure the same window.
    pub start_at: Option<SystemTime>,
}

impl Options {
    /// Options with the documented defaults for `mode` and `target`.
    pub fn new(mode: Mode, target: SocketAddr) -> Options {
        Options {
            mode,
            target,
            threads: 1,
            connections: 50,
            size: SizeSpec::Fixed(64),
            size_text: "64".to_string(),
            duration: Duration::from_secs(10),
            warmup: Duration::ZERO,
            connect_rate: None,
            seed: 0x5eed,
            drain_timeout: Duration::from_secs(2),
            loss_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(5),
            progress: false,
            interval: None,
            spin: DEFAULT_SPIN,
            max_loss: None,
            max_connect_errors: 0,
            command_line: String::new(),
            start_at: None,
        }
    }

    /// Sets the size from its textual form, keeping the text for the report.
    pub fn with_size(mut self, text: &str) -> Result<Options, OptionError> {
        self.size = parse_size_spec(text)?;
        self.size_text = text.to_string();
        Ok(self)
    }

    /// The loss (percent of datagrams sent) above which a UDP run fails: `--max-loss`, or by
    /// default none at all on a loopback target (nothing there should drop a datagram) and
    /// 1% across a real network.
    pub fn loss_limit(&self) -> f64 {
        self.max_loss.unwrap_or(if self.target.ip().is_loopback() {
            0.0
        } else {
            1.0
        })
    }

    /// Checks combinations that the types cannot express.
    pub fn validate(&self) -> Result<(), OptionError> {
        let bad = |msg: String| Err(OptionError(msg));
        if !(1..=MAX_THREADS).contains(&self.threads) {
            return bad(format!("--threads must be between 1 and {MAX_THREADS}"));
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            return bad(format!(
                "--connections must be between 1 and {MAX_CONNECTIONS}"
            ));
        }
        // The run adds these to clock readings (and the drain deadline up to ten times
        // `drain_timeout`): bounded, no sum can overflow an `Instant`.
        for (flag, value) in [
            ("--duration", self.duration),
            ("--warmup", self.warmup),
            ("--drain-timeout", self.drain_timeout),
            ("--loss-timeout", self.loss_timeout),
            ("--connect-timeout", self.connect_timeout),
        ] {
            if value > MAX_DURATION {
                return bad(format!("{flag} must be at most 100 years"));
            }
        }
        let ahead = |at: SystemTime| at.duration_since(SystemTime::now()).unwrap_or_default();
        if self
            .start_at
            .is_some_and(|at| ahead(at) > crate::start_at::MAX_AHEAD)
        {
            return bad("--start-at is more than 24 hours away".into());
        }
        if self.size.min() == 0 {
            return bad("--size must be at least 1 byte".into());
        }
        if self.duration.is_zero() {
            return bad("--duration must be greater than zero".into());
        }
        if self.interval.is_some_and(|i| i < MIN_INTERVAL) {
            return bad(format!(
                "--interval must be at least {} ms",
                MIN_INTERVAL.as_millis()
            ));
        }
        if self.max_loss.is_some_and(|l| !(0.0..=100.0).contains(&l)) {
            return bad("--max-loss must be a percentage between 0 and 100".into());
        }
        if let Some(r) = self.connect_rate {
            if !(r > 0.0 && r.is_finite()) {
                return bad("--connect-rate must be a positive number".into());
            }
        }
        match self.mode {
            Mode::Pipeline { depth } if !(1..=MAX_IN_FLIGHT).contains(&depth) => {
                bad(format!("--depth must be between 1 and {MAX_IN_FLIGHT}"))
            }
            Mode::Stream { window: 0 } => bad("--window must be at least 1".into()),
            Mode::Rate { rate } if !(rate > 0.0 && rate.is_finite()) => {
                bad("--rate must be a positive number".into())
            }
            Mode::Udp { window, rate } => {
                if !(1..=MAX_IN_FLIGHT).contains(&window) {
                    return bad(format!("--window must be between 1 and {MAX_IN_FLIGHT}"));
                }
                if let Some(r) = rate {
                    if !(r > 0.0 && r.is_finite()) {
                        return bad("--rate must be a positive number".into());
                    }
                }
                if self.size.min() < UDP_HEADER || self.size.max() > MAX_UDP_PAYLOAD {
                    return bad(format!(
                        "udp --size must be between {UDP_HEADER} and {MAX_UDP_PAYLOAD} bytes \
                         (each datagram carries an 8-byte sequence number)"
                    ));
                }
                Ok(())
            }
            _ if self.size.max() > MAX_TCP_MESSAGE => {
                bad(format!("--size must be at most {}M", MAX_TCP_MESSAGE >> 20))
            }
            _ => Ok(()),
        }
    }
}

/// A bad option value, with a message fit for `echoloop-bench: <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError(pub String);

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OptionError {}

/// Parses a byte count (`64`, `1K`, `64K`, `1M`): the crate's size syntax, see
/// [`echoloop::units::parse_size`].
pub fn parse_size(text: &str) -> Result<usize, OptionError> {
    echoloop::units::parse_size(text).map_err(OptionError)
}

/// Parses `--size`: a byte count or an inclusive range `MIN..MAX` (`64..4K`).
pub fn parse_size_spec(text: &str) -> Result<SizeSpec, OptionError> {
    match text.split_once("..") {
        None => Ok(SizeSpec::Fixed(parse_size(text)?)),
        Some((a, b)) => {
            // Accept `..=` too, since Rust users will type it.
            let b = b.strip_prefix('=').unwrap_or(b);
            let (min, max) = (parse_size(a)?, parse_size(b)?);
            if min > max {
                return Err(OptionError(format!(
                    "invalid size range '{text}': the minimum is larger than the maximum"
                )));
            }
            Ok(if min == max {
                SizeSpec::Fixed(min)
            } else {
                SizeSpec::Range { min, max }
            })
        }
    }
}

/// Parses a duration (`10s`, `500ms`, `2m`, a plain number of seconds): the crate's
/// duration syntax, see [`echoloop::units::parse_duration`].
pub fn parse_duration(text: &str) -> Result<Duration, OptionError> {
    echoloop::units::parse_duration(text).map_err(OptionError)
}

/// Parses a positive rate such as `1000`, `50k` or `1.5M` (decimal suffixes: these are
/// counts per second, not bytes).
pub fn parse_rate(text: &str) -> Result<f64, OptionError> {
    let err = || OptionError(format!("invalid rate '{text}' (examples: 1000, 50k, 1.5M)"));
    let t = text.trim();
    let (digits, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'm' | 'M')) => (&t[..i], 1e6),
        _ => (t, 1.0),
    };
    let v: f64 = digits.parse().map_err(|_| err())?;
    if v > 0.0 && v.is_finite() {
        Ok(v * mult)
    } else {
        Err(err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_specs() {
        assert_eq!(parse_size_spec("64"), Ok(SizeSpec::Fixed(64)));
        assert_eq!(
            parse_size_spec("64..4K"),
            Ok(SizeSpec::Range { min: 64, max: 4096 })
        );
        assert_eq!(
            parse_size_spec("1..=2"),
            Ok(SizeSpec::Range { min: 1, max: 2 })
        );
        assert_eq!(parse_size_spec("8..8"), Ok(SizeSpec::Fixed(8)));
        assert!(parse_size_spec("4K..64").is_err());
        assert!(parse_size_spec("..64").is_err());
    }

    #[test]
    fn pick_stays_in_range() {
        let s = SizeSpec::Range { min: 64, max: 4096 };
        assert_eq!(s.pick(0), 64);
        assert_eq!(s.pick(u64::MAX), 4096);
        let mut x = 1u64;
        for _ in 0..10_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = s.pick(x);
            assert!((64..=4096).contains(&v));
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("1000"), Ok(1000.0));
        assert_eq!(parse_rate("50k"), Ok(50_000.0));
        assert_eq!(parse_rate("1.5M"), Ok(1_500_000.0));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn validation() {
        let addr: SocketAddr = "127.0.0.1:7".parse().unwrap();
        let ok = Options::new(Mode::PingPong, addr);
        assert!(ok.validate().is_ok());
        let mut o = ok.clone();
        o.connections = 0;
        assert!(o.validate().is_err());
        let o = Options::new(
            Mode::Udp {
                window: 1,
                rate: None,
            },
            addr,
        )
        .with_size("4")
        .unwrap();
        assert!(
            o.validate().is_err(),
            "udp datagrams need room for the sequence number"
        );
        let o = Options::new(
            Mode::Udp {
                window: 1,
                rate: None,
            },
            addr,
        )
        .with_size("64K")
        .unwrap();
        assert!(o.validate().is_err(), "larger than a UDP datagram");
        let o = Options::new(Mode::Pipeline { depth: 0 }, addr);
        assert!(o.validate().is_err());
    }

    #[test]
    fn values_that_would_overflow_or_exhaust_memory_are_refused() {
        let addr: SocketAddr = "127.0.0.1:7".parse().unwrap();
        let ok = Options::new(Mode::PingPong, addr);
        let refused = |change: &dyn Fn(&mut Options)| {
            let mut o = ok.clone();
            change(&mut o);
            o.validate().expect_err("refused").0
        };
        assert!(refused(&|o| o.connections = usize::MAX).contains("--connections"));
        assert!(refused(&|o| o.threads = MAX_THREADS + 1).contains("--threads"));
        assert!(refused(&|o| o.duration = Duration::MAX).contains("--duration"));
        assert!(refused(&|o| o.warmup = Duration::MAX).contains("--warmup"));
        assert!(refused(&|o| o.drain_timeout = Duration::MAX).contains("--drain-timeout"));
        assert!(refused(&|o| o.mode = Mode::Pipeline { depth: usize::MAX }).contains("--depth"));
        let in_a_week = SystemTime::now() + Duration::from_secs(7 * 86_400);
        assert!(refused(&|o| o.start_at = Some(in_a_week)).contains("--start-at"));
        let udp = |window| Mode::Udp { window, rate: None };
        assert!(refused(&|o| o.mode = udp(usize::MAX)).contains("--window"));
        // The largest accepted values are accepted.
        let mut o = ok.clone();
        o.connections = MAX_CONNECTIONS;
        o.duration = MAX_DURATION;
        o.drain_timeout = MAX_DURATION;
        o.mode = Mode::Pipeline {
            depth: MAX_IN_FLIGHT,
        };
        assert_eq!(o.validate(), Ok(()));
    }
}
