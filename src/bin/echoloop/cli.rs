//! The `echoloop` command line: flags mapped onto [`Config`], and clap's errors turned into
//! one line.
//!
//! This is the only place that knows about clap; embedders build a `Config` directly.

use std::net::IpAddr;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::Parser;
use log::LevelFilter;

use echoloop::config::{default_max_connections, Config, DEFAULT_PORT, DEFAULT_ZERO_COPY_CONNS};
use echoloop::units::{parse_duration, parse_size, MAX_DURATION};

/// A timeout that can be turned off: a duration, or `off` (also `0`). A timeout of
/// [`MAX_DURATION`] or more (`forever`, or a number that long) never fires, so it is off too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Option<Duration>);

fn parse_timeout(text: &str) -> Result<Timeout, String> {
    match text.trim() {
        "off" | "0" => Ok(Timeout(None)),
        other => parse_duration(other).map(|d| Timeout(Some(d).filter(|&d| d < MAX_DURATION))),
    }
}

/// How many reactors: a number, or `auto` for one per available core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threads(pub usize);

fn parse_threads(text: &str) -> Result<Threads, String> {
    match text.trim() {
        "auto" => Ok(Threads(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        )),
        other => match other.parse::<usize>() {
            Ok(0) | Err(_) => Err(format!(
                "'{other}' is not a number of threads (1 or more, or auto)"
            )),
            Ok(n) => Ok(Threads(n)),
        },
    }
}

/// A single-threaded mio reactor serving echo (RFC 862) over TCP and UDP.
#[derive(Debug, Parser)]
#[command(name = "echoloop", version, about, long_about = None)]
pub struct Cli {
    /// Address to listen on; 0.0.0.0 or :: exposes the service beyond this machine.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub bind: IpAddr,

    /// Port for both TCP and UDP; 0 picks a free one (printed at start).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// Listen backlog (capped by the kernel's net.core.somaxconn).
    #[arg(long, value_name = "N", default_value_t = Config::default().backlog)]
    pub backlog: u32,

    /// Serve UDP only.
    #[arg(long, conflicts_with = "no_udp")]
    pub no_tcp: bool,

    /// Serve TCP only.
    #[arg(long)]
    pub no_udp: bool,

    /// Pending output per connection before reading pauses (backpressure), e.g. 16M.
    #[arg(long, value_name = "SIZE", default_value = "32M", value_parser = parse_size)]
    pub max_pending: usize,

    /// How long shutdown waits for pending output to drain, e.g. 5s.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Log the counters this often, e.g. 10s (off by default).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub stats_interval: Option<Duration>,

    /// Most connections served at once; more are accepted and closed at once (client sees
    /// EOF). Default: the open-file limit minus 32 (and 4 per further reactor); zero-copy
    /// pipes only use descriptors that connections leave spare.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// Most connections echoing with zero copy (splice through a pipe, 2 descriptors each,
    /// made only from spare descriptors); bulk connections beyond it copy. 0 turns zero copy
    /// off. Linux only.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ZERO_COPY_CONNS)]
    pub zero_copy_conns: usize,

    /// Most connections from one source IP (default: no limit).
    #[arg(long, value_name = "N")]
    pub max_per_source: Option<usize>,

    /// Soft bound on pending output across all connections; above it, connections over a
    /// fair share pause reading, e.g. 512M.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size)]
    pub memory_budget: usize,

    /// Close connections that move no byte for this long, e.g. 5m ("off" by default).
    #[arg(long, value_name = "DURATION", default_value = "off", value_parser = parse_timeout)]
    pub idle_timeout: Timeout,

    /// Close connections whose pending output makes no progress for this long ("off" to
    /// disable).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_timeout)]
    pub stall_timeout: Timeout,

    /// Reactors, each a single-threaded event loop on its own thread with its own listener
    /// and UDP socket on the same port (SO_REUSEPORT); "auto" is one per available core.
    #[arg(long, value_name = "N|auto", default_value = "1", value_parser = parse_threads)]
    pub threads: Threads,

    /// Pin reactor i to the i-th core this process may run on.
    #[arg(long)]
    pub pin: bool,

    /// Keep the soft open-file limit as it is (by default it is raised to the hard limit at
    /// start).
    #[arg(long)]
    pub no_raise_nofile: bool,

    /// Log level: off, error, warn, info, debug, trace (overrides RUST_LOG).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<LevelFilter>,
}

impl Cli {
    /// The configuration these flags describe; everything else keeps its default.
    pub fn to_config(&self) -> Config {
        let defaults = Config::default();
        Config {
            bind: self.bind,
            port: self.port,
            tcp: !self.no_tcp,
            udp: !self.no_udp,
            backlog: self.backlog,
            max_pending: self.max_pending,
            low_water: self.max_pending / 4,
            drain_timeout: self.drain_timeout,
            stats_interval: self.stats_interval,
            max_connections: self
                .max_connections
                .unwrap_or_else(|| default_max_connections(self.threads.0)),
            zero_copy_conns: self.zero_copy_conns,
            max_per_source: self.max_per_source,
            memory_budget: self.memory_budget,
            idle_timeout: self.idle_timeout.0,
            stall_timeout: self.stall_timeout.0,
            ..defaults
        }
    }
}

/// What parsing the command line decided.
#[derive(Debug)]
pub enum Parsed {
    /// Run with these flags.
    Run(Box<Cli>),
    /// Help or version was asked for: print this and exit 0.
    Print(String),
    /// The command line is wrong: print `echoloop: <this>` and exit 2.
    Invalid(String),
}

/// Parses arguments (including the program name) without exiting or panicking.
pub fn parse<I, T>(args: I) -> Parsed
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(cli) => Parsed::Run(Box::new(cli)),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            Parsed::Print(e.to_string())
        }
        Err(e) => Parsed::Invalid(one_line(&e, "echoloop")),
    }
}

/// Clap's error as one line: its first line without the `error: ` prefix, plus a hint.
pub fn one_line(error: &clap::Error, program: &str) -> String {
    let rendered = error.to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    let message = first.strip_prefix("error: ").unwrap_or(first);
    format!("{message} (try '{program} --help')")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn run(args: &[&str]) -> Cli {
        match parse(std::iter::once("echoloop").chain(args.iter().copied())) {
            Parsed::Run(cli) => *cli,
            other => panic!("expected flags to parse, got {other:?}"),
        }
    }

    fn invalid(args: &[&str]) -> String {
        match parse(std::iter::once("echoloop").chain(args.iter().copied())) {
            Parsed::Invalid(message) => message,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_flags_give_the_default_config() {
        assert_eq!(run(&[]).to_config(), Config::default());
    }

    #[test]
    fn bind_port_backlog_map_onto_config() {
        let config = run(&["--bind", "::", "--port", "0", "--backlog", "16"]).to_config();
        assert_eq!(config.bind, "::".parse::<IpAddr>().unwrap());
        assert_eq!(config.port, 0);
        assert_eq!(config.backlog, 16);
        assert!(config.is_exposed());
    }

    #[test]
    fn no_udp_and_no_tcp_turn_one_side_off() {
        assert!(!run(&["--no-udp"]).to_config().udp);
        assert!(!run(&["--no-tcp"]).to_config().tcp);
        assert!(invalid(&["--no-tcp", "--no-udp"]).contains("cannot be used with"));
    }

    #[test]
    fn sizes_and_durations_parse_with_units() {
        let cli = run(&[
            "--max-pending",
            "16M",
            "--drain-timeout",
            "250ms",
            "--stats-interval",
            "10s",
            "--log-level",
            "debug",
        ]);
        let config = cli.to_config();
        assert_eq!(config.max_pending, 16 << 20);
        assert_eq!(config.low_water, 4 << 20);
        assert_eq!(config.drain_timeout, Duration::from_millis(250));
        assert_eq!(config.stats_interval, Some(Duration::from_secs(10)));
        assert_eq!(cli.log_level, Some(LevelFilter::Debug));
    }

    #[test]
    fn limits_and_timeouts_map_onto_config() {
        let config = run(&[
            "--max-connections",
            "100",
            "--max-per-source",
            "4",
            "--memory-budget",
            "64M",
            "--idle-timeout",
            "30s",
            "--stall-timeout",
            "off",
        ])
        .to_config();
        assert_eq!(config.max_connections, 100);
        assert_eq!(config.max_per_source, Some(4));
        assert_eq!(config.memory_budget, 64 << 20);
        assert_eq!(config.idle_timeout, Some(Duration::from_secs(30)));
        assert_eq!(config.stall_timeout, None);
        assert!(invalid(&["--stall-timeout", "soon"]).contains("not a duration"));
    }

    #[test]
    fn threads_take_a_number_or_auto() {
        assert_eq!(run(&[]).threads, Threads(1));
        assert_eq!(run(&["--threads", "4"]).threads, Threads(4));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(run(&["--threads", "auto"]).threads, Threads(cores));
        assert!(invalid(&["--threads", "0"]).contains("not a number of threads"));
        assert!(invalid(&["--threads", "many"]).contains("not a number of threads"));
        let cli = run(&["--threads", "3", "--pin", "--no-raise-nofile"]);
        assert!(cli.pin && cli.no_raise_nofile);
        // Each further reactor holds four more descriptors.
        assert_eq!(
            cli.to_config().max_connections + 8,
            run(&[]).to_config().max_connections
        );
    }

    #[test]
    fn durations_at_any_size_are_capped_or_off() {
        let huge = "10000000000000000000";
        let config = run(&[
            "--idle-timeout",
            huge,
            "--stall-timeout",
            "forever",
            "--drain-timeout",
            huge,
            "--stats-interval",
            huge,
        ])
        .to_config();
        assert_eq!(
            config.idle_timeout, None,
            "a timeout that never fires is off"
        );
        assert_eq!(config.stall_timeout, None);
        assert_eq!(config.drain_timeout, MAX_DURATION);
        assert_eq!(config.stats_interval, Some(MAX_DURATION));
        assert_eq!(config.validate(), Ok(()));
        let long = run(&["--idle-timeout", "36524d"]).to_config();
        assert_eq!(
            long.idle_timeout,
            Some(Duration::from_secs(36_524 * 86_400))
        );
    }

    #[test]
    fn sizes_too_large_for_memory_are_refused_in_one_line() {
        for flag in ["--max-pending", "--memory-budget"] {
            let message = invalid(&[flag, "99999999999999999999G"]);
            assert!(message.contains("too large"), "{message}");
            assert!(!message.contains('\n'));
        }
        let config = run(&["--max-pending", &usize::MAX.to_string()]).to_config();
        assert_eq!(config.low_water, usize::MAX / 4);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn errors_are_one_line_with_a_hint() {
        let unknown = invalid(&["--frobnicate"]);
        assert!(unknown.contains("--frobnicate"), "{unknown}");
        assert!(unknown.ends_with("(try 'echoloop --help')"));
        assert!(!unknown.contains('\n'));
        let address = invalid(&["--bind", "localhost:80"]);
        assert!(address.contains("invalid value"), "{address}");
        assert!(!address.contains('\n'));
    }

    #[test]
    fn help_is_printed_not_an_error() {
        let parsed = parse(["echoloop", "--help"]);
        assert!(matches!(parsed, Parsed::Print(text) if text.contains("--max-pending")));
    }
}
