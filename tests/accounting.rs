//! Honest accounting: every TCP byte read is echoed, pending, or discarded with a reason
//! (`tcp_bytes_in = tcp_bytes_out + pending_bytes + tcp_bytes_discarded`), and every datagram
//! received is echoed, queued, or dropped with a reason. Checked in the final counters after a
//! drain timeout, a stall timeout and a reset, and on every periodic stats line of the binary
//! while a client that never reads keeps output pending. Loopback, port 0, bounded waits.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use echoloop::{Config, Stats};
use echoloop_testkit::child::{ChildProcess, Signal, Summary};
use echoloop_testkit::TestServer;

/// A TCP-only server with exactly `config`'s timeouts.
fn server(config: Config) -> TestServer {
    TestServer::with_drain(Config {
        udp: false,
        ..config
    })
}

/// A client that writes until its writes block and never reads: the server's pending output
/// for it is then well above zero (loopback absorbs ~9 MiB in kernel buffers; the limit is
/// above that, so what the server holds is real).
fn writer_that_never_reads(addr: SocketAddr) -> (TcpStream, u64) {
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
    let server = server(Config {
        drain_timeout: Duration::from_millis(300),
        max_pending: 16 << 20,
        low_water: 4 << 20,
        ..Config::default()
    });
    let (_client, written) = writer_that_never_reads(server.tcp());
    let stats = server.stop();
    assert_eq!(stats.closed_drain_timeout, 1, "{stats}");
    assert!(stats.tcp_discarded_drain_timeout > 0, "{stats}");
    assert_eq!(
        stats.pending_bytes, 0,
        "nothing left after the run: {stats}"
    );
    assert!(stats.tcp_bytes_in <= written, "{stats}");
    assert_tcp_accounting(&stats);
}

/// The stall timeout closes a client that never reads; its pending output is discarded under
/// that reason.
#[test]
fn stall_timeout_discards_are_counted() {
    let server = server(Config {
        stall_timeout: Some(Duration::from_millis(300)),
        max_pending: 16 << 20,
        low_water: 4 << 20,
        ..Config::default()
    });
    let (mut client, _) = writer_that_never_reads(server.tcp());
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
    let server = server(Config {
        max_pending: 16 << 20,
        low_water: 4 << 20,
        ..Config::default()
    });
    let (client, _) = writer_that_never_reads(server.tcp());
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
    let mut server = ChildProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_echoloop"))
            .args([
                "--port",
                "0",
                "--stats-interval",
                "100ms",
                "--drain-timeout",
                "300ms",
            ])
            .args(["--max-pending", "16M", "--summary", "kv"])
            .env("RUST_LOG", "info"),
    );
    let listening = server.listening();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..10 {
        udp.send_to(&[1u8; 100], listening.udp()).unwrap();
    }
    let (_client, _) = writer_that_never_reads(listening.tcp());
    let mut saw_pending = false;
    for _ in 0..5 {
        let line = server.log_line_with(" stats ");
        let stats = Summary::from_pairs(&line);
        check_line(&stats, &line);
        saw_pending |= stats.get("pending_bytes") > 0;
    }
    assert!(saw_pending, "a stats line showed output pending");
    server.signal(Signal::TERM);
    let line = server.next_line();
    let summary = Summary::parse(&line);
    check_line(&summary, &line);
    assert!(summary.get("tcp_discarded_drain_timeout") > 0, "{line}");
    assert_eq!(server.wait_exit(), 0);
}

/// Both invariants, from the `key=value` fields of a stats or summary line.
#[track_caller]
fn check_line(fields: &Summary, line: &str) {
    let tcp_discarded = [
        "drain_timeout",
        "stall_timeout",
        "reset",
        "idle_timeout",
        "io_error",
        "linger",
    ]
    .iter()
    .map(|reason| fields.get(&format!("tcp_discarded_{reason}")))
    .sum::<u64>();
    assert_eq!(fields.get("tcp_bytes_discarded"), tcp_discarded, "{line}");
    assert_eq!(
        fields.get("tcp_bytes_in"),
        fields.get("tcp_bytes_out") + fields.get("pending_bytes") + tcp_discarded,
        "{line}"
    );
    assert_eq!(
        fields.get("udp_datagrams_in"),
        fields.get("udp_datagrams_out")
            + fields.get("udp_queued_datagrams")
            + fields.get("udp_dropped"),
        "{line}"
    );
}
