//! `echoloop-bench ping`: the tutorials' echo client as a tool. Sends N messages at an
//! interval over TCP or UDP, checks that each comes back byte for byte, and prints one line
//! per reply with its round-trip time, then a summary, as `ping` does:
//!
//! ```text
//! PING 127.0.0.1:7007 (tcp): 64 bytes per message
//! 64 bytes from 127.0.0.1:7007: seq=0 time=0.112 ms
//! 64 bytes from 127.0.0.1:7007: seq=1 time=0.087 ms
//!
//! --- 127.0.0.1:7007 echo statistics ---
//! 2 sent, 2 echoed, 0 wrong, 0% loss, time 1001 ms
//! rtt min/avg/max/mdev = 0.087/0.099/0.112/0.012 ms
//! ```
//!
//! Unlike the load modes, this is one blocking socket and one message in flight: it answers
//! "is it up and does it echo?", not "how fast?". A message carries its sequence number, so
//! a late echo (after its timeout) is recognised and skipped rather than taken for the next
//! one. Any missing or wrong echo makes the exit code 1.
//!
//! Interrupted (the `stop` flag, raised by SIGINT or SIGTERM), it stops at once, whether it
//! was waiting for an echo or for the next send, and still prints the summary, as `ping`
//! does on Ctrl-C; a message whose wait was cut short counts as sent, not as lost.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What to ping and how.
#[derive(Debug, Clone)]
pub struct PingOptions {
    /// The echo server.
    pub target: SocketAddr,
    /// UDP instead of TCP.
    pub udp: bool,
    /// Messages to send.
    pub count: u64,
    /// Pause between sends (from one send to the next).
    pub interval: Duration,
    /// Bytes per message (at least 8, to carry the sequence number).
    pub size: usize,
    /// How long to wait for each echo.
    pub timeout: Duration,
}

/// The smallest message: the sequence number takes 8 bytes.
pub const MIN_SIZE: usize = 8;

/// The longest a wait (for an echo, or for the next send) goes without looking at the stop
/// flag.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// Message `seq`: its number (big-endian), then bytes that depend on it and on position.
pub fn message(seq: u64, size: usize) -> Vec<u8> {
    let mut bytes = seq.to_be_bytes().to_vec();
    bytes.extend((MIN_SIZE..size).map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8));
    bytes.truncate(size.max(MIN_SIZE));
    bytes
}

/// The sequence number an echo claims to carry.
pub fn sequence_of(echo: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(echo.get(..MIN_SIZE)?.try_into().ok()?))
}

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reply {
    /// Came back exactly, after this long.
    Echoed(Duration),
    /// Came back different: this many bytes differ (length differences count too).
    Wrong(usize),
    /// Nothing came back in time.
    Lost,
    /// The run was stopped while this one's echo was awaited: sent, but neither lost nor
    /// echoed.
    Cut,
}

/// Counts and round-trip times over the run (sans-IO: the summary is computed here).
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Messages sent.
    pub sent: u64,
    /// Exact echoes, with their round-trip times in seconds.
    pub rtts: Vec<f64>,
    /// Echoes that differed.
    pub wrong: u64,
    /// Messages with no echo in time.
    pub lost: u64,
    /// A message whose wait the stop cut short (0 or 1).
    pub cut: u64,
}

impl Tally {
    /// Records one message's fate.
    pub fn record(&mut self, reply: Reply) {
        self.sent += 1;
        match reply {
            Reply::Echoed(rtt) => self.rtts.push(rtt.as_secs_f64()),
            Reply::Wrong(_) => self.wrong += 1,
            Reply::Lost => self.lost += 1,
            Reply::Cut => self.cut += 1,
        }
    }

    /// Loss in percent: every message without an exact echo, of those whose wait ran its
    /// course.
    pub fn loss_percent(&self) -> f64 {
        let awaited = self.sent - self.cut;
        if awaited == 0 {
            return 0.0;
        }
        100.0 * (awaited - self.rtts.len() as u64) as f64 / awaited as f64
    }

    /// min, avg, max and mdev (as Linux ping: sqrt(mean(x²) − mean²)), in milliseconds.
    pub fn rtt_summary_ms(&self) -> Option<[f64; 4]> {
        if self.rtts.is_empty() {
            return None;
        }
        let n = self.rtts.len() as f64;
        let min = self.rtts.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.rtts.iter().copied().fold(0.0, f64::max);
        let mean = self.rtts.iter().sum::<f64>() / n;
        let mean_sq = self.rtts.iter().map(|x| x * x).sum::<f64>() / n;
        let mdev = (mean_sq - mean * mean).max(0.0).sqrt();
        Some([min, mean, max, mdev].map(|secs| secs * 1e3))
    }

    /// True when every message came back exactly.
    pub fn all_echoed(&self) -> bool {
        self.wrong == 0 && self.lost == 0 && self.rtts.len() as u64 == self.sent - self.cut
    }
}

/// Bytes that differ between what was sent and what came back, lengths included.
pub fn differences(sent: &[u8], echoed: &[u8]) -> usize {
    let common = sent.iter().zip(echoed).filter(|(a, b)| a != b).count();
    common + sent.len().abs_diff(echoed.len())
}

/// How a wait for an echo ended.
enum Wait {
    /// The next echo (of `len` bytes over TCP; the next datagram over UDP).
    Echo(Vec<u8>),
    /// The deadline passed.
    TimedOut,
    /// The stop flag was raised.
    Stopped,
}

/// One transport: send a message, wait for the echo of `seq`.
trait Transport {
    fn send(&mut self, message: &[u8]) -> io::Result<()>;
    /// Reads the next echo of `len` bytes (TCP) or the next datagram (UDP), skipping
    /// echoes of earlier messages, until `deadline` or until `stop` is raised.
    fn receive(
        &mut self,
        seq: u64,
        len: usize,
        deadline: Instant,
        stop: &AtomicBool,
    ) -> io::Result<Wait>;
}

struct Tcp(TcpStream);
struct Udp(UdpSocket);

fn until(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
}

/// The next slice of a wait for `deadline`: at most [`STOP_CHECK`]; `Err` with how the wait
/// ends when it is over (stopped, or past the deadline).
fn next_slice(deadline: Instant, stop: &AtomicBool) -> Result<Duration, Wait> {
    if stop.load(Ordering::Relaxed) {
        return Err(Wait::Stopped);
    }
    until(deadline)
        .map(|left| left.min(STOP_CHECK))
        .ok_or(Wait::TimedOut)
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Transport for Tcp {
    fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.0.write_all(message)
    }

    fn receive(
        &mut self,
        seq: u64,
        len: usize,
        deadline: Instant,
        stop: &AtomicBool,
    ) -> io::Result<Wait> {
        loop {
            // Messages have one size, so the stream stays aligned even across a late echo.
            let mut echo = vec![0; len];
            let mut got = 0;
            while got < len {
                let slice = match next_slice(deadline, stop) {
                    Ok(slice) => slice,
                    Err(end) => return Ok(end),
                };
                self.0.set_read_timeout(Some(slice))?;
                match self.0.read(&mut echo[got..]) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => got += n,
                    Err(e) if timed_out(&e) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if sequence_of(&echo).is_some_and(|s| s < seq) {
                continue; // the late echo of an earlier message
            }
            return Ok(Wait::Echo(echo));
        }
    }
}

impl Transport for Udp {
    fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.0.send(message).map(|_| ())
    }

    fn receive(
        &mut self,
        seq: u64,
        len: usize,
        deadline: Instant,
        stop: &AtomicBool,
    ) -> io::Result<Wait> {
        let mut buffer = vec![0; len.max(65_536)];
        loop {
            let slice = match next_slice(deadline, stop) {
                Ok(slice) => slice,
                Err(end) => return Ok(end),
            };
            self.0.set_read_timeout(Some(slice))?;
            match self.0.recv(&mut buffer) {
                Ok(n) if sequence_of(&buffer[..n]).is_some_and(|s| s < seq) => continue,
                Ok(n) => return Ok(Wait::Echo(buffer[..n].to_vec())),
                Err(e) if timed_out(&e) => {}
                // An ICMP port unreachable from an earlier send: nobody listens (yet).
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Runs the pings, printing to `out`, until all are done or `stop` is raised; returns the
/// tally, or the I/O error that ended it.
pub fn run(options: &PingOptions, out: &mut dyn Write, stop: &AtomicBool) -> io::Result<Tally> {
    let size = options.size.max(MIN_SIZE);
    let mut transport: Box<dyn Transport> = if options.udp {
        let local: SocketAddr = match options.target {
            SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
            SocketAddr::V6(_) => "[::]:0".parse().expect("literal"),
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(options.target)?;
        Box::new(Udp(socket))
    } else {
        let stream = TcpStream::connect_timeout(&options.target, options.timeout)?;
        stream.set_nodelay(true)?;
        Box::new(Tcp(stream))
    };
    let protocol = if options.udp { "udp" } else { "tcp" };
    writeln!(
        out,
        "PING {} ({protocol}): {size} bytes per message",
        options.target
    )?;
    let started = Instant::now();
    let mut tally = Tally::default();
    for seq in 0..options.count {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let next_send = started
            + options
                .interval
                .saturating_mul(seq.min(u32::MAX as u64) as u32 + 1);
        let message = message(seq, size);
        let sent_at = Instant::now();
        transport.send(&message)?;
        let reply = match transport.receive(seq, size, sent_at + options.timeout, stop)? {
            Wait::Echo(echo) if echo == message => Reply::Echoed(sent_at.elapsed()),
            Wait::Echo(echo) => Reply::Wrong(differences(&message, &echo)),
            Wait::TimedOut => Reply::Lost,
            Wait::Stopped => Reply::Cut,
        };
        match reply {
            Reply::Echoed(rtt) => writeln!(
                out,
                "{size} bytes from {}: seq={seq} time={:.3} ms",
                options.target,
                rtt.as_secs_f64() * 1e3
            )?,
            Reply::Wrong(n) => writeln!(out, "seq={seq}: WRONG echo, {n} byte(s) differ")?,
            Reply::Lost => writeln!(
                out,
                "seq={seq}: no echo within {} ms",
                options.timeout.as_millis()
            )?,
            Reply::Cut => {}
        }
        tally.record(reply);
        if seq + 1 < options.count {
            while let Ok(pause) = next_slice(next_send, stop) {
                std::thread::sleep(pause);
            }
        }
    }
    writeln!(out, "\n--- {} echo statistics ---", options.target)?;
    let cut = match tally.cut {
        0 => String::new(),
        n => format!(" ({n} still awaited when stopped)"),
    };
    writeln!(
        out,
        "{} sent, {} echoed, {} wrong, {:.0}% loss{cut}, time {} ms",
        tally.sent,
        tally.rtts.len(),
        tally.wrong,
        tally.loss_percent(),
        started.elapsed().as_millis()
    )?;
    if let Some([min, avg, max, mdev]) = tally.rtt_summary_ms() {
        writeln!(
            out,
            "rtt min/avg/max/mdev = {min:.3}/{avg:.3}/{max:.3}/{mdev:.3} ms"
        )?;
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_their_sequence_and_differ_from_each_other() {
        let a = message(7, 64);
        assert_eq!(a.len(), 64);
        assert_eq!(sequence_of(&a), Some(7));
        assert_ne!(a[8..], message(8, 64)[8..]);
        assert_eq!(
            message(1, 3).len(),
            MIN_SIZE,
            "never shorter than the sequence"
        );
        assert_eq!(sequence_of(b"short"), None);
    }

    #[test]
    fn differences_count_bytes_and_length() {
        assert_eq!(differences(b"abcd", b"abcd"), 0);
        assert_eq!(differences(b"abcd", b"abXd"), 1);
        assert_eq!(differences(b"abcd", b"ab"), 2);
    }

    #[test]
    fn summary_is_min_avg_max_mdev_and_loss_counts_wrong_and_lost() {
        let mut tally = Tally::default();
        for ms in [1, 2, 3] {
            tally.record(Reply::Echoed(Duration::from_millis(ms)));
        }
        let [min, avg, max, mdev] = tally.rtt_summary_ms().unwrap();
        assert!((min - 1.0).abs() < 1e-9 && (avg - 2.0).abs() < 1e-9 && (max - 3.0).abs() < 1e-9);
        assert!((mdev - (2.0f64 / 3.0).sqrt()).abs() < 1e-9);
        assert!(tally.all_echoed());
        tally.record(Reply::Wrong(1));
        tally.record(Reply::Lost);
        assert_eq!(tally.loss_percent(), 40.0);
        assert!(!tally.all_echoed());
        assert_eq!(Tally::default().rtt_summary_ms(), None);
    }

    #[test]
    fn a_wait_cut_by_the_stop_is_sent_but_neither_lost_nor_echoed() {
        let mut tally = Tally::default();
        tally.record(Reply::Echoed(Duration::from_millis(1)));
        tally.record(Reply::Cut);
        assert_eq!((tally.sent, tally.cut, tally.lost), (2, 1, 0));
        assert_eq!(tally.loss_percent(), 0.0);
        assert!(tally.all_echoed());
        let mut only_cut = Tally::default();
        only_cut.record(Reply::Cut);
        assert_eq!(only_cut.loss_percent(), 0.0);
    }
}
