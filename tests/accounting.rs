//! Honest accounting: every TCP byte read is echoed, pending, or discarded with a reason
//! (`tcp_bytes_in = tcp_bytes_out + pending_bytes + tcp_bytes_discarded`), and every datagram
//! received is echoed, queued, or dropped with a reason. Checked in the final counters after a
//! drain timeout, a stall timeout and a reset, and on every periodic stats line of the binary
//! while a client that never reads keeps output pending. Loopback, port 0, bounded waits.

mod support;
#[path = "support/process.rs"]
mod process;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use echoloop::{Config, Server, ServerError, ShutdownHandle, Stats};
use process::{field, Echoloop};

/// A server with exactly `config`'s timeouts (the shared `TestServer` fixes its drain).
struct Timed {
    tcp: std::net::SocketAddr,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<Result<Stats, ServerError>>>,
}

impl Timed {
    fn start(config: Config) -> Timed {
        let config = Config {
            bind: "127.0.0.1".parse().unwrap(),
            port: 0,
            udp: false,
            ..config
        };
        let server = Server::bind(config).expect("bind");
        let tcp = server.tcp_addr().expect("tcp on");
        let handle = server.shutdown_handle();
        let thread = Some(std::thread::spawn(move || server.run()));
        Timed {
            tcp,
            handle,
            thread,
        }
    }

    fn stop(mut self) -> Stats {
        self.handle.shutdown();
        let thread = self.thread.take().expect("running");
        thread.join().expect("no panic").expect("no error")
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.handle.shutdown();
            let _ = thread.join();
        }
    }
}

/// A client that writes until its writes block and never reads: the server's pending output
/// for it is then well above zero (loopback absorbs ~9 MiB in kernel buffers; the limit is
/// above that, so what the server holds is real).
fn writer_that_never_reads(addr: std::net::SocketAddr) -> (TcpStream, u64) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let chunk = vec![7u8; 256 * 1024];
    let mut written = 0u64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        match stream.write(&chunk) {
            Ok(n) => written += n as u64,
            Err(_) => break, // blocked: the server stopped reading (backpressure)
        }
    }
    (stream, written)
}

#[track_caller]
fn assert_tcp_accounting(stats: &Stats) {
    assert_eq!(
        stats.tcp_bytes_in,
        stats.tcp_bytes_out + stats.pending_bytes + stats.tcp_bytes_discarded,
        "tcp bytes unaccounted: {stats}"
    );
    assert_eq!(
        stats.tcp_bytes_discarded,
        stats.tcp_discarded_drain_timeout
            + stats.tcp_discarded_stall_timeout
            + stats.tcp_discarded_reset
            + stats.tcp_discarded_idle_timeout
            + stats.tcp_discarded_io_error
            + stats.tcp_discarded_linger,
        "discards must add up by reason: {stats}"
    );
    assert!(stats.accounting_holds(), "{stats}");
}

/// The drain deadline cuts off a client that never reads: what was pending is counted as
/// discarded at the drain timeout, not lost.
#[test]
fn drain_timeout_discards_are_counted() {
    let server = Timed::start(Config {
        drain_timeout: Duration::from_millis(300),
        max_pending: 16 << 20,
        low_water: 4 << 20,
        ..Config::default()
    });
    let (_client, written) = writer_that_never_reads(server.tcp);
    let stats = server.stop();
    assert_eq!(stats.closed_drain_timeout, 1, "{stats}");
    assert!(stats.tcp_discarded_drain_timeout > 0, "{stats}");
    assert_eq!(stats.pending_bytes, 0, "nothing left after the run: {stats}");
    assert!(stats.tcp_bytes_in <= written, "{stats}");
    assert_tcp_accounting(&stats);
}

/// The stall timeout closes a client that never reads; its pending output is discarded under
/// that reason.
#[test]
fn stall_timeout_discards_are_counted() {
    let server = Timed::start(Config {
        stall_timeout: Some(Duration::from_millis(300)),
        max_pending: 16 << 20,
        low_water: 4 << 20,
        ..Config::default()
    });
    let (mut client, _) = writer_that_never_reads(server.tcp);
    // The server closes it (we see EOF or a reset once we read).
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut sink = vec![0u8; 1 << 20];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        match client.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let stats = server.stop();
    assert_eq!(stats.closed_stalled, 1, "{stats}");
    assert!(stats.tcp_discarded_stall_timeout > 0, "{stats}");
    assert_tcp_accounting(&stats);
}

/// A client that resets with output pending: the pending bytes are discarded as `reset`.
#[test]
fn reset_discards_are_counted() {
    let server = Timed::start(Config {
        max_pending: 16 << 20,
        low_water: 4 << 20,
        ..Config::default()
    });
    let (client, _) = writer_that_never_reads(server.tcp);
    // SO_LINGER 0: close sends RST instead of FIN.
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    std::thread::sleep(Duration::from_millis(300));
    let stats = server.stop();
    assert_eq!(stats.closed_reset + stats.closed_io_error, 1, "{stats}");
    assert!(
        stats.tcp_discarded_reset + stats.tcp_discarded_io_error > 0,
        "{stats}"
    );
    assert_tcp_accounting(&stats);
}

/// The binary's stats lines (every 100 ms here) and its summary all satisfy the invariants,
/// while a client that never reads keeps output pending and the drain deadline then cuts it.
#[test]
fn every_stats_line_and_the_summary_add_up() {
    let mut server = Echoloop::start(&[
        "--port",
        "0",
        "--stats-interval",
        "100ms",
        "--drain-timeout",
        "300ms",
        "--max-pending",
        "16M",
        "--summary",
        "kv",
    ]);
    let listening = server.stdout_line();
    let tcp = listening
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("tcp="))
        .expect("tcp=")
        .parse()
        .unwrap();
    let udp_addr = listening
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("udp="))
        .expect("udp=");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..10 {
        udp.send_to(&[1u8; 100], udp_addr).unwrap();
    }
    let (_client, _) = writer_that_never_reads(tcp);
    let mut checked = 0;
    let mut saw_pending = false;
    while checked < 5 {
        let line = server.stderr_line_with(" stats ");
        let line = &line[line.find(" stats ").unwrap()..];
        check_line(line);
        saw_pending |= field(line, "pending_bytes") > 0;
        checked += 1;
    }
    assert!(saw_pending, "a stats line showed output pending");
    server.signal(libc::SIGTERM);
    let summary = server.stdout_line();
    check_line(&summary);
    assert!(field(&summary, "tcp_discarded_drain_timeout") > 0, "{summary}");
    assert_eq!(server.exit_code(), 0);
}

/// Both invariants, from the `key=value` fields of a stats or summary line.
#[track_caller]
fn check_line(line: &str) {
    let tcp_discarded = [
        "drain_timeout",
        "stall_timeout",
        "reset",
        "idle_timeout",
        "io_error",
        "linger",
    ]
    .iter()
    .map(|reason| field(line, &format!("tcp_discarded_{reason}")))
    .sum::<u64>();
    assert_eq!(field(line, "tcp_bytes_discarded"), tcp_discarded, "{line}");
    assert_eq!(
        field(line, "tcp_bytes_in"),
        field(line, "tcp_bytes_out") + field(line, "pending_bytes") + tcp_discarded,
        "{line}"
    );
    assert_eq!(
        field(line, "udp_datagrams_in"),
        field(line, "udp_datagrams_out")
            + field(line, "udp_queued_datagrams")
            + field(line, "udp_dropped"),
        "{line}"
    );
}
