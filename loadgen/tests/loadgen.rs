//! End-to-end tests of the load generator against tiny in-test echo servers on loopback:
//! every mode completes cleanly against a correct server, and a server that corrupts,
//! drops, duplicates or reorders a single byte is caught. The binary is run for the exit
//! codes and the JSON output.

mod support_loadgen;

use echoloop_bench::{self as loadgen, Mode, Options, Report};
use std::net::SocketAddr;
use std::time::Duration;
use support_loadgen::{bench, closed_port, Fault, TcpEcho, UdpEcho};

/// Short runs: these tests check behaviour, not speed.
#[track_caller]
fn options(mode: Mode, target: SocketAddr) -> Options {
    let mut o = Options::new(mode, target);
    o.connections = 4;
    o.duration = Duration::from_millis(300);
    o.drain_timeout = Duration::from_millis(500);
    o.loss_timeout = Duration::from_millis(100);
    o.connect_timeout = Duration::from_secs(2);
    o
}

#[track_caller]
fn run(o: &Options) -> Report {
    loadgen::run(o).expect("run should start")
}

/// A run that must be clean: no error of any kind, some traffic, exact totals.
#[track_caller]
fn assert_clean(r: &Report) {
    let e = &r.stats.errors;
    assert_eq!((e.verify, e.connect, e.io), (0, 0, 0), "errors: {e:?}");
    assert!(r.stats.requests > 0, "no requests measured");
    assert_eq!(
        r.stats.bytes_sent, r.stats.bytes_received,
        "every byte sent came back"
    );
    assert_eq!(r.exit_code(), 0);
    assert!(r.failure().is_none());
}

/// Closed loop, one message in flight: clean, and the byte totals match the server's own
/// counter exactly (what a benchmark script cross-checks).
#[test]
fn pingpong_is_clean_and_totals_are_exact() {
    let server = TcpEcho::start(Fault::None);
    let r = run(&options(Mode::PingPong, server.addr));
    assert_clean(&r);
    assert_eq!(r.stats.connections_opened, 4);
    assert!(!r.stats.latency.is_empty() && r.stats.connect.len() == 4);
    let echoed = server.echoed.clone();
    drop(server); // joins every server thread: the counter is final
    assert_eq!(
        echoed.load(std::sync::atomic::Ordering::Relaxed),
        r.stats.bytes_received
    );
}

/// Pipelining with random sizes across two threads.
#[test]
fn pipeline_with_random_sizes_and_threads_is_clean() {
    let server = TcpEcho::start(Fault::None);
    let mut o = options(Mode::Pipeline { depth: 8 }, server.addr)
        .with_size("1..4K")
        .unwrap();
    o.threads = 2;
    let r = run(&o);
    assert_clean(&r);
    assert_eq!(r.threads, 2);
}

/// Streaming bulk data with a bounded window; large messages span many reads and writes.
#[test]
fn stream_is_clean() {
    let server = TcpEcho::start(Fault::None);
    let o = options(Mode::Stream { window: 256 * 1024 }, server.addr)
        .with_size("64K")
        .unwrap();
    let r = run(&o);
    assert_clean(&r);
    assert!(r.bytes_per_s() > 0.0);
}

/// Open loop: exactly the scheduled number of requests, both latencies recorded.
#[test]
fn rate_sends_exactly_the_timetable() {
    let server = TcpEcho::start(Fault::None);
    let o = options(Mode::Rate { rate: 2000.0 }, server.addr);
    let r = run(&o);
    assert_clean(&r);
    // 2000/s for 0.3 s: 600 slots, whatever the timer granularity.
    assert!(
        (599..=601).contains(&r.stats.requests),
        "{}",
        r.stats.requests
    );
    assert_eq!(r.stats.latency_uncorrected.len(), r.stats.requests);
    let json = r.to_json();
    assert!(json["latency_uncorrected_us"]["p99"].is_u64());
}

/// Connect, one echo, close: many connections, each verified.
#[test]
fn churn_is_clean() {
    let server = TcpEcho::start(Fault::None);
    let r = run(&options(Mode::Churn, server.addr));
    assert_clean(&r);
    assert!(r.stats.connections_opened >= r.stats.requests);
    assert!(r.stats.requests > 4, "more than one cycle per slot");
    assert!(r.to_json()["connections_per_s"].as_f64().unwrap() > 0.0);
}

/// The connect ramp spaces connections out.
#[test]
fn connect_rate_ramps_up() {
    let server = TcpEcho::start(Fault::None);
    let mut o = options(Mode::PingPong, server.addr);
    o.connect_rate = Some(20.0); // 4 connections: one every 50 ms
    let r = run(&o);
    assert_clean(&r);
    assert_eq!(r.stats.connections_opened, 4);
}

/// UDP, window-paced and rate-paced: no loss, no duplicates, no reordering.
#[test]
fn udp_is_clean() {
    let server = UdpEcho::start(0);
    for mode in [
        Mode::Udp {
            window: 4,
            rate: None,
        },
        Mode::Udp {
            window: 1,
            rate: Some(2000.0),
        },
    ] {
        let mut o = options(mode, server.addr).with_size("8..1K").unwrap();
        // An echo that a loaded machine delays past 100 ms is not lost; give it a second.
        o.loss_timeout = Duration::from_secs(1);
        let r = run(&o);
        assert_clean(&r);
        let u = &r.stats.udp;
        assert_eq!((u.lost, u.duplicates, u.reordered), (0, 0, 0), "{mode:?}");
        assert_eq!(u.sent, u.received);
    }
}

/// A UDP server that drops every 10th datagram: the loss is counted exactly.
#[test]
fn udp_loss_is_reported() {
    let server = UdpEcho::start(10);
    let o = options(
        Mode::Udp {
            window: 2,
            rate: None,
        },
        server.addr,
    );
    let r = run(&o);
    let dropped = server.dropped.clone();
    drop(server);
    let u = &r.stats.udp;
    assert!(u.lost > 0);
    assert_eq!(u.lost, dropped.load(std::sync::atomic::Ordering::Relaxed));
    assert_eq!(u.sent, u.received + u.lost);
    assert_eq!(r.to_json()["udp"]["lost"], u.lost);
}

/// One faulty byte in the whole run must fail verification.
#[track_caller]
fn assert_caught(fault: Fault, mode: Mode) {
    let server = TcpEcho::start(fault);
    let r = run(&options(mode, server.addr));
    assert!(
        r.stats.errors.verify > 0,
        "{fault:?} in {mode:?} not caught: {:?}",
        r.stats.errors
    );
    assert_eq!(r.exit_code(), 1);
}

/// Corruption, loss, duplication and reordering of a single byte are each detected, in
/// closed-loop and streaming modes.
#[test]
fn single_byte_faults_are_caught() {
    for mode in [Mode::PingPong, Mode::Stream { window: 64 * 1024 }] {
        assert_caught(Fault::FlipByte { at: 100 }, mode);
        assert_caught(Fault::DropByte { at: 100 }, mode);
        assert_caught(Fault::DuplicateByte { at: 100 }, mode);
        assert_caught(Fault::SwapBytes { at: 100 }, mode);
    }
}

/// Dropping the very last byte shifts nothing; it must still count as lost after the drain.
#[test]
fn a_missing_last_byte_is_lost() {
    let server = TcpEcho::start(Fault::DropByte { at: 63 });
    let mut o = options(Mode::PingPong, server.addr);
    o.connections = 1;
    let r = run(&o);
    assert_eq!(r.stats.errors.lost_bytes, 1);
    assert_eq!(r.exit_code(), 1);
}

/// The binary exits 1 on a corrupting server, and --json prints one parseable object.
#[test]
fn binary_exits_nonzero_on_corruption() {
    let server = TcpEcho::start(Fault::FlipByte { at: 1000 });
    let target = server.addr.to_string();
    let out = bench(&[
        "pingpong",
        "--target",
        &target,
        "-c",
        "2",
        "--duration",
        "300ms",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert!(v["errors"]["verify"].as_u64().unwrap() > 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("verification failed"));
}

/// The JSON report carries every documented key.
#[test]
fn binary_json_has_the_schema() {
    let server = TcpEcho::start(Fault::None);
    let target = server.addr.to_string();
    let out = bench(&[
        "pipeline",
        "--depth",
        "4",
        "--target",
        &target,
        "-c",
        "3",
        "--size",
        "64..4K",
        "--duration",
        "0.3",
        "--warmup",
        "100ms",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.trim().lines().count(), 1, "one line of JSON");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for key in [
        "mode",
        "connections",
        "size",
        "duration_s",
        "requests",
        "requests_per_s",
        "bytes_per_s",
        "latency_us",
        "errors",
        "run",
        "connect_us",
        "totals",
        "threads",
        "cpu",
        "depth",
    ] {
        assert!(!v[key].is_null(), "missing {key} in {v}");
    }
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(v["latency_us"][key].is_u64(), "latency_us.{key}");
    }
    for key in ["verify", "connect", "io"] {
        assert_eq!(v["errors"][key], 0, "errors.{key}");
    }
    for key in [
        "command_line",
        "version",
        "cpu_model",
        "kernel",
        "started_at",
        "tool",
    ] {
        assert!(v["run"][key].is_string(), "run.{key}");
    }
    assert_eq!(v["mode"], "pipeline");
    assert_eq!(v["size"], serde_json::json!({"min": 64, "max": 4096}));
    assert_eq!(v["duration_s"], 0.3);
    assert_eq!(v["totals"]["bytes_sent"], v["totals"]["bytes_received"]);
    assert!(v["requests"].as_u64().unwrap() > 0);
    assert!(v["cpu"]["user_s"].is_f64());
}

/// Usage errors: exit 2 and exactly one line, no panic.
#[test]
fn bad_flags_are_one_line_exit_2() {
    for args in [
        &["pingpong", "--bogus"][..],
        &["pingpong", "--size", "12X"],
        &["pingpong", "--duration", "soon"],
        &["pingpong", "--target", "nonsense"],
        &["pingpong", "--connections", "0"],
        &["warp"],
    ] {
        let out = bench(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("echoloop-bench: "), "{args:?}: {err}");
        assert!(!err.contains("panicked"));
    }
}

/// Nothing listening: connect errors counted, a clear message, exit 1.
#[test]
fn refused_target_exits_1() {
    let target = closed_port().to_string();
    let out = bench(&[
        "pingpong",
        "--target",
        &target,
        "-c",
        "2",
        "--duration",
        "200ms",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["errors"]["connect"], 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no connection could be made"));
}

/// The human summary is the default output.
#[test]
fn binary_human_summary() {
    let server = UdpEcho::start(0);
    let target = server.addr.to_string();
    let out = bench(&["udp", "--target", &target, "-c", "2", "--duration", "200ms"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("udp -> "), "{text}");
    assert!(
        text.contains("latency us") && text.contains("datagrams"),
        "{text}"
    );
}
