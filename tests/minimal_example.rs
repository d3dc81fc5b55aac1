//! `examples/minimal.rs`, the reactor a reader starts from, run as a user runs it: the tutorials'
//! 10 MB write-before-read client (in Rust, and the tutorial's own Python client when
//! `python3` is installed) gets every byte back, and a UDP datagram comes back on the same
//! port.

use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use echoloop_testkit::child::{ChildProcess, WAIT};
use echoloop_testkit::client::{assert_same, connect, read_to_eof, udp_ask};
use echoloop_testkit::rng::pattern;

/// The example's binary, built by the cargo that runs this test. `cargo test` builds every
/// example, but `cargo test --test minimal_example` does not, and a binary left from an
/// earlier build may be stale; `cargo build --example` is a no-op when it is fresh.
fn minimal_binary() -> PathBuf {
    // The test runs in `<target>/<profile>/deps/`; examples are in `<target>/<profile>/examples/`.
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target layout");
    let mut build = Command::new(env!("CARGO"));
    build
        .args(["build", "--quiet", "--example", "minimal"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build --example minimal");
    assert!(status.success(), "cargo build --example minimal failed");
    profile_dir.join("examples").join("minimal")
}

/// The example on a free loopback port; its first line of stdout is the address it bound.
fn start_minimal() -> (ChildProcess, SocketAddr) {
    let child = ChildProcess::spawn(Command::new(minimal_binary()).arg("127.0.0.1:0"));
    let line = child.next_line();
    let addr = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("first line {line:?} is not an address"));
    (child, addr)
}

/// The tutorials' deadlock client: blocking sends of 10 MB in 1 KiB chunks without reading, then
/// `shutdown(SHUT_WR)`, then read. A server that writes back with blocking calls deadlocks;
/// the minimal reactor returns all 10 MB, then closes.
#[test]
fn the_ten_megabyte_client_gets_everything_back() {
    let (_server, addr) = start_minimal();
    let data = pattern(10 * 1024 * 1024);
    let mut stream = connect(addr);
    for chunk in data.chunks(1024) {
        stream.write_all(chunk).expect("write");
    }
    stream.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
    let echoed = read_to_eof(&mut stream, data.len());
    assert_same(&echoed, &data);
}

/// A datagram sent to the same port comes back whole, while a TCP client is connected.
#[test]
fn udp_round_trip_on_the_same_port() {
    let (_server, addr) = start_minimal();
    let mut tcp = connect(addr);
    echoloop_testkit::client::ping(&mut tcp, b"tcp first");
    for request in [&b"hello"[..], &[], &pattern(65_507)] {
        assert_eq!(udp_ask(addr, request), request);
    }
    echoloop_testkit::client::ping(&mut tcp, b"and tcp still");
}

/// The tutorial's own client (`tests/fixtures/tutorial_deadlock_client.py`, adapted only for
/// host, port and Python 3) prints 10 MB of `x` after "All data sent.". Skipped (with a note)
/// when `python3` is not installed.
#[test]
fn the_tutorials_own_ten_megabyte_client_is_served() {
    let python3 = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    if !python3.is_ok_and(|status| status.success()) {
        eprintln!("SKIP: python3 is not installed");
        return;
    }
    let (_server, addr) = start_minimal();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tutorial_deadlock_client.py"
    );
    let mut client = Command::new("python3")
        .args([script, &addr.ip().to_string(), &addr.port().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    // Read stdout on a thread (10 MB would fill the pipe) and bound the wait: the client has
    // no timeout of its own, as in the tutorial.
    let mut stdout = client.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut all).map(|_| all)
    });
    let deadline = Instant::now() + WAIT * 3;
    while client.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = client.kill();
            panic!("the tutorial's 10 MB client did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = client.wait_with_output().expect("output");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = reader.join().expect("reader").expect("read stdout");
    let marker = b"All data sent.\n";
    let start = stdout
        .windows(marker.len())
        .position(|window| window == marker)
        .expect("the client says it sent everything")
        + marker.len();
    let echoed = &stdout[start..];
    assert_eq!(echoed.len(), 10_485_760);
    assert!(echoed.iter().all(|&byte| byte == b'x'));
}

/// A bad address is one line on stderr and exit code 1, not a panic or a debug dump.
#[test]
fn a_bad_address_is_one_line_and_exit_one() {
    let output = Command::new(minimal_binary())
        .arg("not-an-address")
        .output()
        .expect("run the example");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("minimal: not-an-address: "), "{stderr}");
}
