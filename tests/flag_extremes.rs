//! Every `echoloop` flag at its extreme, through the real binary: a duration of
//! `10000000000000000000` seconds used to panic (exit 101) when added to a clock reading, at
//! start (`--stats-interval`), at the first connection (`--idle-timeout`), at the first client
//! that stops reading (`--stall-timeout`) or at SIGTERM (`--drain-timeout`). Here each flag
//! meets the event that used to crash it, the server keeps serving, and SIGTERM drains to
//! exit 0. Sizes past memory are one-line usage errors. Loopback and port 0 only; every wait
//! is bounded, and a child left running by a failing test is killed on drop.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use echoloop::{Config, Server};
use echoloop_testkit::child::{ChildProcess, Signal};
use echoloop_testkit::{assert_same, connect, pattern, read_to_eof};

const BIN: &str = env!("CARGO_BIN_EXE_echoloop");

/// About 317 billion years.
const HUGE: &str = "10000000000000000000";
/// `usize::MAX` and `u32::MAX`, the largest values the count flags parse.
const USIZE_MAX: &str = "18446744073709551615";
const U32_MAX: &str = "4294967295";
/// What the hog writes without reading: more than loopback absorbs in kernel buffers (about
/// 9 MiB), so the server holds output pending, and less than the default `--max-pending`.
const HOG_BYTES: usize = 24 << 20;

/// One short echo on a fresh connection.
#[track_caller]
fn assert_echoes(addr: SocketAddr, args: &[&str]) {
    let mut client = connect(addr);
    client.write_all(b"still serving").expect("write");
    let mut back = [0u8; 13];
    client
        .read_exact(&mut back)
        .unwrap_or_else(|e| panic!("{args:?}: no echo: {e}"));
    assert_eq!(&back, b"still serving");
}

/// The hog half-closes and reads to EOF: the server drained to it what it had read, a
/// byte-exact prefix of what it sent (a draining server echoes no new input), then its FIN.
#[track_caller]
fn drained(mut hog: TcpStream, sent: &[u8]) {
    hog.shutdown(Shutdown::Write).expect("half-close");
    let echoed = read_to_eof(&mut hog, sent.len());
    assert!(!echoed.is_empty(), "the drain sent nothing back");
    assert_same(&echoed, &sent[..echoed.len().min(sent.len())]);
}

/// The life that used to crash each flag: a client arrives and echoes (idle deadline), a hog
/// writes 24 MiB without reading (stall deadline), another client is served beside it, then
/// SIGTERM (drain deadline) while the hog's output is pending. The hog then reads what was
/// drained to it, and the server exits 0 with its summary.
#[track_caller]
fn serve_then_drain(args: &[&str]) {
    let mut args = args.to_vec();
    if !args.contains(&"--drain-timeout") {
        // The default 5 s can run out on a loaded machine before the hog has read it all.
        args.extend(["--drain-timeout", "60s"]);
    }
    let args = &args[..];
    let mut server = ChildProcess::spawn_server(
        Command::new(BIN)
            .args(["--port", "0", "--no-udp", "--log-level", "warn"])
            .args(args),
    );
    let addr = server.listening().tcp();
    assert_echoes(addr, args);
    let mut hog = connect(addr);
    let data = pattern(HOG_BYTES);
    hog.write_all(&data).expect("the hog's writes are taken");
    std::thread::sleep(Duration::from_millis(100));
    assert_echoes(addr, args);

    server.signal(Signal::TERM);
    std::thread::sleep(Duration::from_millis(100));
    drained(hog, &data);
    let summary = server.next_line();
    assert_eq!(server.wait_exit(), 0, "{args:?}: {}", server.stderr());
    assert!(summary.starts_with("summary "), "{args:?}: {summary}");
}

/// Each duration flag alone at `10000000000000000000` seconds.
#[test]
fn each_duration_flag_at_its_extreme_serves_and_drains() {
    for flag in [
        "--stats-interval",
        "--idle-timeout",
        "--stall-timeout",
        "--drain-timeout",
    ] {
        serve_then_drain(&[flag, HUGE]);
    }
}

/// `forever` is a duration too (a timeout that never fires is off).
#[test]
fn forever_is_a_duration() {
    serve_then_drain(&["--idle-timeout", "forever", "--drain-timeout", "forever"]);
}

/// Every count and size flag at the largest value it parses, with the durations as above:
/// nothing multiplies or adds them into an overflow.
#[test]
fn every_flag_at_its_maximum_at_once() {
    serve_then_drain(&[
        "--max-pending",
        USIZE_MAX,
        "--memory-budget",
        USIZE_MAX,
        "--max-connections",
        USIZE_MAX,
        "--zero-copy-conns",
        USIZE_MAX,
        "--max-per-source",
        USIZE_MAX,
        "--backlog",
        U32_MAX,
        "--stats-interval",
        HUGE,
        "--idle-timeout",
        HUGE,
        "--stall-timeout",
        HUGE,
        "--drain-timeout",
        HUGE,
    ]);
}

/// A size no `usize` holds is a usage error: exit 2, one line naming the value.
#[test]
fn sizes_past_memory_are_one_line_usage_errors() {
    for flag in ["--max-pending", "--memory-budget"] {
        let out = Command::new(BIN)
            .args(["--port", "0", flag, "99999999999999999999G"])
            .output()
            .expect("run echoloop");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{flag}: {stderr}");
        assert!(stderr.starts_with("echoloop: "), "{flag}: {stderr}");
        assert!(stderr.contains("too large"), "{flag}: {stderr}");
    }
}

/// An embedder's `Config` is not parsed, so the library itself must take the longest
/// durations there are: `Duration::MAX` for every timer, the same life as above in-process.
#[test]
fn an_embedder_may_pass_duration_max_everywhere() {
    let config = Config {
        port: 0,
        udp: false,
        idle_timeout: Some(Duration::MAX),
        stall_timeout: Some(Duration::MAX),
        stats_interval: Some(Duration::MAX),
        drain_timeout: Duration::MAX,
        ..Config::default()
    };
    let server = Server::bind(config).expect("bind");
    let addr = server.tcp_addr().expect("TCP is on");
    let stop = server.shutdown_handle();
    let running = std::thread::spawn(move || server.run());
    assert_echoes(addr, &["Duration::MAX"]);
    let mut hog = connect(addr);
    let data = pattern(HOG_BYTES);
    hog.write_all(&data).expect("the hog's writes are taken");
    assert_echoes(addr, &["Duration::MAX"]);
    stop.shutdown();
    drained(hog, &data);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !running.is_finished() {
        assert!(Instant::now() < deadline, "the drain did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = running.join().expect("no panic").expect("run ends cleanly");
    assert_eq!(stats.conn_accepted, 3);
}
