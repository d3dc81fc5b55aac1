//! The `echoloop` binary as a user runs it: the address line, signals, exit codes and
//! one-line errors. Loopback and port 0 only; every wait is bounded.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use echoloop_testkit::child::{ChildProcess, Signal, WAIT};

const BIN: &str = env!("CARGO_BIN_EXE_echoloop");

/// Starts `echoloop ARGS` with the `info` log level; killed on drop if a test fails midway.
#[track_caller]
fn start(args: &[&str]) -> ChildProcess {
    ChildProcess::spawn(Command::new(BIN).args(args).env("RUST_LOG", "info"))
}

/// [`start`] for a server on port 0, read up to its `listening` line (started again if a
/// port was taken: [`ChildProcess::spawn_server`]).
#[track_caller]
fn serve(args: &[&str]) -> ChildProcess {
    ChildProcess::spawn_server(Command::new(BIN).args(args).env("RUST_LOG", "info"))
}

/// With `--port 0` the first stdout line names the real TCP and UDP addresses, and they
/// serve echo; SIGTERM then exits 0 with a summary that counts what was echoed.
#[test]
fn port_zero_prints_addresses_and_sigterm_exits_zero_with_summary() {
    let mut server = serve(&["--port", "0"]);
    let listening = server.listening();
    let (tcp, udp) = (listening.tcp(), listening.udp());
    assert!(tcp.ip().is_loopback() && tcp.port() != 0);
    assert_eq!(tcp.port(), udp.port());

    let mut client = TcpStream::connect(tcp).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.write_all(b"hello, echo").unwrap();
    let mut back = [0u8; 11];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello, echo");
    drop(client);

    server.signal(Signal::TERM);
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
    let mut server = start(&["--port", "0", "--no-udp"]);
    let line = server.next_line();
    assert!(line.ends_with(" udp=off"), "{line}");
    server.signal(Signal::INT);
    assert!(server.next_line().starts_with("summary "));
    assert_eq!(server.wait_exit(), 0);
}

/// A second signal cuts a long drain short: a client that never reads keeps output pending,
/// so the first SIGTERM would wait out `--drain-timeout` (60 s here); the second exits at
/// once with 130.
#[test]
fn second_signal_exits_at_once() {
    let mut server = serve(&["--port", "0", "--drain-timeout", "60s"]);
    let tcp = server.listening().tcp();
    let mut hog = TcpStream::connect(tcp).unwrap();
    hog.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let started = Instant::now();
    // Fill both directions' buffers until our writes block: output is now pending.
    while hog.write_all(&chunk).is_ok() {
        assert!(started.elapsed() < WAIT, "the server never pushed back");
    }
    server.signal(Signal::TERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.is_running(), "still draining");
    let second = Instant::now();
    server.signal(Signal::TERM);
    assert_eq!(server.wait_exit(), 130);
    assert!(second.elapsed() < Duration::from_secs(5));
    assert!(server.stderr().contains("second signal"));
}

/// An unknown flag: exit 2 and exactly one line on stderr, naming the flag.
#[test]
fn bad_flag_exits_two_with_one_line() {
    let mut server = start(&["--no-such-flag"]);
    assert_eq!(server.wait_exit(), 2);
    let stderr = server.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("echoloop: "), "{stderr}");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

/// An unparsable address: exit 2, one line.
#[test]
fn bad_address_exits_two_with_one_line() {
    let mut server = start(&["--bind", "not-an-address"]);
    assert_eq!(server.wait_exit(), 2);
    let stderr = server.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not-an-address"), "{stderr}");
}

/// `--bind` with a character pasted along (a trailing non-breaking space) is neither an
/// address nor a host name: exit 2 and one line that names the character, not a server
/// on 127.0.0.1.
#[test]
fn a_bind_address_with_a_stray_character_exits_two_with_one_line() {
    for bind in ["127.0.0.1\u{a0}", "127.0.0.1 ", "local_host"] {
        let mut server = start(&["--bind", bind, "--port", "0"]);
        assert_eq!(server.wait_exit(), 2, "--bind {bind:?}");
        let stderr = server.stderr();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("neither an IP address nor a host name"),
            "{stderr}"
        );
    }
    let mut server = start(&["--bind", "127.0.0.1\u{a0}"]);
    assert_eq!(server.wait_exit(), 2);
    assert!(server.stderr().contains("U+00A0"));
}

/// `--threads auto` says in its start-up line how many reactors it started: one per core
/// this process may use.
#[test]
fn threads_auto_names_its_reactors_at_start() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let server = serve(&["--threads", "auto", "--port", "0"]);
    server.listening();
    let line = server.log_line_with("started on host");
    assert!(
        line.contains(&format!("reactors {cores})")),
        "{cores} cores: {line}"
    );
    server.stop();
}

/// A port already in use: exit 2, one line, with the hint to pick another port.
#[test]
fn port_in_use_exits_two_with_a_hint() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut server = start(&["--port", &port, "--no-udp"]);
    assert_eq!(server.wait_exit(), 2);
    let stderr = server.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("echoloop: cannot bind TCP"), "{stderr}");
    assert!(
        stderr.contains("in use") && stderr.contains("--port"),
        "{stderr}"
    );
}

/// `--bind A --bind B --port 0`: every address listens on the one port the kernel picked
/// (per service: `--listen daytime=0` gets its own, on both addresses too), and echoes there.
#[test]
fn several_bind_addresses_share_one_port_zero() {
    let server = ChildProcess::spawn_server(Command::new(BIN).args([
        "--bind",
        "127.0.0.1",
        "--bind",
        "127.0.0.2",
        "--port",
        "0",
        "--listen",
        "daytime=0",
    ]));
    let listening = server.listening();
    let ports = |name: &str| -> Vec<u16> {
        listening
            .sockets
            .iter()
            .filter(|(field, _)| field.as_str() == name)
            .map(|(_, addr)| addr.port())
            .collect()
    };
    let echo = ports("echo/tcp");
    assert_eq!(echo.len(), 2, "{:?}", listening.sockets);
    assert_eq!(echo[0], echo[1], "{:?}", listening.sockets);
    assert_eq!(ports("echo/udp"), echo);
    let daytime = ports("daytime/tcp");
    assert_eq!(daytime.len(), 2, "{:?}", listening.sockets);
    assert_eq!(daytime[0], daytime[1], "{:?}", listening.sockets);
    for ip in ["127.0.0.1", "127.0.0.2"] {
        let mut client = TcpStream::connect((ip, echo[0])).expect("connect");
        client.set_read_timeout(Some(WAIT)).unwrap();
        client.write_all(b"same port").unwrap();
        let mut back = [0u8; 9];
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"same port");
    }
    server.stop();
}
