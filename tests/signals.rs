//! The binary under the signals and pipes that operating it brings: a stdout closed by the
//! script that read the address line, SIGHUP from a closing terminal, SIGUSR1 for a report,
//! and the human summary. Loopback and port 0 only; every wait is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use echoloop_testkit::child::{ChildProcess, Listening, Signal, Summary};

fn echoloop(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_echoloop"));
    command.args(args).env("RUST_LOG", "info");
    command
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
/// the server neither panics (101) nor dies of SIGPIPE: it exits 0 as documented, and it kept
/// serving after its stdout went away.
#[test]
fn closed_stdout_then_sigterm_exits_zero() {
    for summary in ["kv", "human"] {
        let mut server = ChildProcess::spawn_server_reading_one_line(&mut echoloop(&[
            "--port",
            "0",
            "--summary",
            summary,
        ]));
        let tcp = server.listening().tcp();
        // Give the reader thread a moment to drop the pipe's read end.
        std::thread::sleep(Duration::from_millis(100));
        echo_once(tcp, b"still here");
        server.signal(Signal::TERM);
        assert_eq!(
            server.wait_exit(),
            0,
            "--summary {summary}: {}",
            server.stderr()
        );
        assert!(!server.stderr().contains("panicked"));
    }
}

/// SIGHUP (the terminal closed) is a graceful shutdown like SIGTERM: summary, exit 0.
#[test]
fn sighup_shuts_down_gracefully_with_summary() {
    let mut server = ChildProcess::spawn_server(&mut echoloop(&["--port", "0", "--summary", "kv"]));
    echo_once(server.listening().tcp(), b"before the hangup");
    server.signal(Signal::HUP);
    let summary = Summary::parse(&server.next_line());
    assert_eq!(summary.get("conn_accepted"), 1);
    assert_eq!(summary.get("tcp_bytes_out"), 17);
    assert_eq!(server.wait_exit(), 0);
    assert!(server.stderr().contains("signal 1: shutting down"));
}

/// SIGUSR1 logs the counters and rates now and the server keeps serving; a second SIGUSR1
/// reports again (it is not the "second signal" that exits at once).
#[test]
fn sigusr1_reports_and_keeps_serving() {
    let mut server = ChildProcess::spawn_server(&mut echoloop(&["--port", "0", "--summary", "kv"]));
    let tcp = server.listening().tcp();
    echo_once(tcp, b"count me");
    server.signal(Signal::USR1);
    let report = server.log_line_with(" stats ");
    let fields = Summary::from_pairs(&report);
    assert_eq!(fields.get("tcp_bytes_in"), 8, "{report}");
    assert!(
        report.contains(" tcp_bytes_in_per_s="),
        "rates beside totals: {report}"
    );
    assert!(server.is_running());
    echo_once(tcp, b"and me");
    server.signal(Signal::USR1);
    let again = Summary::from_pairs(&server.log_line_with(" stats "));
    assert_eq!(again.get("tcp_bytes_in"), 14);
    assert!(server.is_running());
    let summary = server.stop();
    assert_eq!(summary.get("conn_accepted"), 2);
}

/// `--summary human` prints the aligned block instead of the key=value line.
#[test]
fn human_summary_is_a_block() {
    let mut server =
        ChildProcess::spawn_server(&mut echoloop(&["--port", "0", "--summary", "human"]));
    echo_once(server.listening().tcp(), b"hello");
    server.signal(Signal::TERM);
    assert_eq!(server.next_line(), "echoloop summary");
    let rows: Vec<String> = (0..6).map(|_| server.next_line()).collect();
    assert!(rows[0].trim_start().starts_with("uptime"), "{rows:?}");
    assert!(rows[1].contains("accepted 1, closed 1"), "{rows:?}");
    assert!(rows[5].contains("in 5 B, out 5 B"), "{rows:?}");
    assert_eq!(server.wait_exit(), 0);
}

/// With `--metrics`, the `listening` line names the metrics address too.
#[test]
fn listening_line_names_the_metrics_address() {
    let server =
        ChildProcess::spawn_server(&mut echoloop(&["--port", "0", "--metrics", "127.0.0.1:0"]));
    let listening: Listening = server.listening();
    let metrics = listening.metrics.expect("metrics= in the listening line");
    assert!(metrics.ip().is_loopback() && metrics.port() != 0);
    server.stop();
}

/// On a terminal (a pty from `script(1)`) the default summary is the block, not the key=value
/// line. `timeout(1)` delivers its SIGTERM twice (to the child and to its process group) at
/// once: that is one shutdown request, so the drain runs and the exit code stays 0.
#[test]
fn terminal_gets_the_block_and_timeout_exits_zero() {
    let has_script = Command::new("script").arg("--version").output().is_ok();
    if !has_script {
        eprintln!("script(1) not installed: skipping the terminal check");
        return;
    }
    let inner = format!(
        "timeout --preserve-status -s TERM 1 {} --port 0 --log-level warn",
        env!("CARGO_BIN_EXE_echoloop")
    );
    let mut child = ChildProcess::spawn(Command::new("script").args(["-qec", &inner, "/dev/null"]));
    assert!(child.next_line().starts_with("listening "));
    let first_summary_line = child.next_line();
    assert_eq!(first_summary_line.trim_end(), "echoloop summary");
    assert_eq!(child.wait_exit(), 0, "{}", child.stderr());
}
