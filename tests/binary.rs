//! The `echoloop` binary as a user runs it: the address line, signals, exit codes and
//! one-line errors. Loopback and port 0 only; every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_echoloop");
const WAIT: Duration = Duration::from_secs(20);

/// A running `echoloop` child, killed on drop if a test fails midway.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start echoloop");
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    #[track_caller]
    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("a line on stdout in time")
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped); it touches no
        // memory of ours.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    #[track_caller]
    fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().expect("exited, not killed by a signal");
            }
            assert!(Instant::now() < deadline, "echoloop did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            stderr.read_to_string(&mut text).unwrap();
        }
        text
    }
}

/// Parses `listening tcp=IP:PORT udp=IP:PORT`.
fn parse_listening(line: &str) -> (SocketAddr, SocketAddr) {
    let mut tcp = None;
    let mut udp = None;
    for field in line
        .strip_prefix("listening ")
        .expect("listening line")
        .split(' ')
    {
        match field.split_once('=') {
            Some(("tcp", addr)) => tcp = Some(addr.parse().unwrap()),
            Some(("udp", addr)) => udp = Some(addr.parse().unwrap()),
            _ => panic!("unexpected field {field:?} in {line:?}"),
        }
    }
    (tcp.unwrap(), udp.unwrap())
}

/// With `--port 0` the first stdout line names the real TCP and UDP addresses, and they
/// serve echo; SIGTERM then exits 0 with a summary that counts what was echoed.
#[test]
fn port_zero_prints_addresses_and_sigterm_exits_zero_with_summary() {
    let mut server = Running::start(&["--port", "0"]);
    let (tcp, udp) = parse_listening(&server.next_line());
    assert!(tcp.ip().is_loopback() && tcp.port() != 0);
    assert_eq!(tcp.port(), udp.port());

    let mut client = TcpStream::connect(tcp).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.write_all(b"hello, echo").unwrap();
    let mut back = [0u8; 11];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello, echo");
    drop(client);

    server.signal(libc::SIGTERM);
    let summary = server.next_line();
    assert_eq!(server.wait_exit(), 0);
    assert!(summary.starts_with("summary "), "{summary}");
    for expected in [
        "conn_accepted=1",
        "conn_closed=1",
        "tcp_bytes_in=11",
        "tcp_bytes_out=11",
    ] {
        assert!(
            summary.split(' ').any(|kv| kv == expected),
            "{expected} in {summary}"
        );
    }
    assert!(summary.contains("udp_datagrams_in="));
}

/// SIGINT works the same way; `--no-udp` shows up as `udp=off`.
#[test]
fn sigint_exits_zero_and_no_udp_is_reported_off() {
    let mut server = Running::start(&["--port", "0", "--no-udp"]);
    let line = server.next_line();
    assert!(line.ends_with(" udp=off"), "{line}");
    server.signal(libc::SIGINT);
    assert!(server.next_line().starts_with("summary "));
    assert_eq!(server.wait_exit(), 0);
}

/// A second signal cuts a long drain short: a client that never reads keeps output pending,
/// so the first SIGTERM would wait out `--drain-timeout` (60 s here); the second exits at
/// once with 130.
#[test]
fn second_signal_exits_at_once() {
    let mut server = Running::start(&["--port", "0", "--drain-timeout", "60s"]);
    let (tcp, _) = parse_listening(&server.next_line());
    let mut hog = TcpStream::connect(tcp).unwrap();
    hog.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let started = Instant::now();
    // Fill both directions' buffers until our writes block: output is now pending.
    while hog.write_all(&chunk).is_ok() {
        assert!(started.elapsed() < WAIT, "the server never pushed back");
    }
    server.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.child.try_wait().unwrap().is_none(), "still draining");
    let second = Instant::now();
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(), 130);
    assert!(second.elapsed() < Duration::from_secs(5));
    assert!(server.stderr().contains("second signal"));
}

/// An unknown flag: exit 2 and exactly one line on stderr, naming the flag.
#[test]
fn bad_flag_exits_two_with_one_line() {
    let mut server = Running::start(&["--no-such-flag"]);
    assert_eq!(server.wait_exit(), 2);
    let stderr = server.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("echoloop: "), "{stderr}");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

/// An unparsable address: exit 2, one line.
#[test]
fn bad_address_exits_two_with_one_line() {
    let mut server = Running::start(&["--bind", "not-an-address"]);
    assert_eq!(server.wait_exit(), 2);
    let stderr = server.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not-an-address"), "{stderr}");
}

/// A port already in use: exit 2, one line, with the hint to pick another port.
#[test]
fn port_in_use_exits_two_with_a_hint() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut server = Running::start(&["--port", &port, "--no-udp"]);
    assert_eq!(server.wait_exit(), 2);
    let stderr = server.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("echoloop: cannot bind TCP"), "{stderr}");
    assert!(
        stderr.contains("in use") && stderr.contains("--port"),
        "{stderr}"
    );
}
