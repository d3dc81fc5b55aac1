//! The binary under the signals and pipes that operating it brings: a stdout closed by the
//! script that read the address line, SIGHUP from a closing terminal, SIGUSR1 for a report,
//! and the human summary. Loopback and port 0 only; every wait is bounded.

#[path = "support/process.rs"]
mod process;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use process::{field, Echoloop};

fn tcp_addr(listening: &str) -> SocketAddr {
    let tcp = listening
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("tcp="))
        .unwrap_or_else(|| panic!("tcp= in {listening:?}"));
    tcp.parse().expect("a socket address")
}

/// One echo round trip, so the counters have something to count.
fn echo_once(addr: SocketAddr, message: &[u8]) {
    let mut client = TcpStream::connect(addr).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.write_all(message).expect("write");
    let mut back = vec![0; message.len()];
    client.read_exact(&mut back).expect("echo");
    assert_eq!(back, message);
}

/// `echoloop --port 0 | head -1`, then SIGTERM: the summary cannot be printed (EPIPE), yet
/// the server neither panics (101) nor dies of SIGPIPE: it exits 0 as documented.
#[test]
fn closed_stdout_then_sigterm_exits_zero() {
    let mut server = Echoloop::start(&["--port", "0"]);
    let listening = server.first_line_then_close_stdout();
    // The server keeps serving after its stdout is gone.
    echo_once(tcp_addr(&listening), b"still here");
    server.signal(libc::SIGTERM);
    assert_eq!(server.exit_code(), 0);
}

/// A closed stdout even before the summary block is asked for, with `--summary human`.
#[test]
fn closed_stdout_with_human_summary_exits_zero() {
    let mut server = Echoloop::start(&["--port", "0", "--summary", "human"]);
    server.first_line_then_close_stdout();
    server.signal(libc::SIGINT);
    assert_eq!(server.exit_code(), 0);
}

/// SIGHUP (the terminal closed) is a graceful shutdown like SIGTERM: summary, exit 0.
#[test]
fn sighup_shuts_down_gracefully_with_summary() {
    let mut server = Echoloop::start(&["--port", "0", "--summary", "kv"]);
    let addr = tcp_addr(&server.stdout_line());
    echo_once(addr, b"before the hangup");
    server.signal(libc::SIGHUP);
    let summary = server.stdout_line();
    assert!(summary.starts_with("summary "), "{summary}");
    assert_eq!(field(&summary, "conn_accepted"), 1);
    assert_eq!(field(&summary, "tcp_bytes_out"), 17);
    server.stderr_line_with("signal 1: shutting down");
    assert_eq!(server.exit_code(), 0);
}

/// `--summary human` prints the aligned block instead of the key=value line.
#[test]
fn human_summary_is_a_block() {
    let mut server = Echoloop::start(&["--port", "0", "--summary", "human"]);
    let addr = tcp_addr(&server.stdout_line());
    echo_once(addr, b"hello");
    server.signal(libc::SIGTERM);
    assert_eq!(server.stdout_line(), "echoloop summary");
    let mut rows = Vec::new();
    for _ in 0..4 {
        rows.push(server.stdout_line());
    }
    assert!(rows[0].trim_start().starts_with("uptime"), "{rows:?}");
    assert!(rows[1].contains("1 accepted"), "{rows:?}");
    assert!(rows[3].contains("5 B in, 5 B out"), "{rows:?}");
    assert_eq!(server.exit_code(), 0);
}
