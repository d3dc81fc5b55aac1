//! Interrupted runs: the first SIGINT/SIGTERM ends the run with a complete report for the
//! time it ran, marked interrupted, exit code 128 + signal; a second signal exits at once.
//! The real binary runs as a child; every wait is bounded.

mod support_loadgen;

use std::io::Read;
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support_loadgen::{Fault, TcpEcho, UdpEcho};

#[track_caller]
fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_echoloop-bench"))
        .args(args)
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start echoloop-bench")
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

/// Waits at most `limit` for the child; returns (exit code, stdout, elapsed).
#[track_caller]
fn finish(mut child: Child, limit: Duration) -> (Option<i32>, String, Duration) {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut out = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            return (status.code(), out, t0.elapsed());
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("echoloop-bench did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGINT during a 30 s rate run: JSON report, interrupted, about a second measured.
#[test]
fn sigint_prints_the_json_report() {
    let server = TcpEcho::start(Fault::None);
    let target = server.addr.to_string();
    let child = spawn(&[
        "rate", "--rate", "500", "-d", "30s", "-c", "4", "--target", &target, "--json",
    ]);
    std::thread::sleep(Duration::from_millis(1200));
    signal(&child, "-INT");
    let (code, out, took) = finish(child, Duration::from_secs(10));
    assert_eq!(code, Some(130), "stdout: {out}");
    assert!(took < Duration::from_secs(5), "stopped promptly ({took:?})");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(v["interrupted"], true);
    let measured = v["duration_s"].as_f64().unwrap();
    assert!((0.5..10.0).contains(&measured), "measured {measured} s");
    assert!(v["requests"].as_u64().unwrap() > 100);
    assert_eq!(v["errors"]["verify"], 0, "no byte lost by stopping");
}

/// SIGTERM in pingpong (human report) and in UDP mode: same, with 143.
#[test]
fn sigterm_prints_the_human_report_in_every_mode() {
    let tcp = TcpEcho::start(Fault::None);
    let udp = UdpEcho::start(0);
    for (mode, target) in [("pingpong", tcp.addr), ("udp", udp.addr)] {
        let target = target.to_string();
        let child = spawn(&[mode, "-d", "30s", "-c", "2", "--target", &target]);
        std::thread::sleep(Duration::from_millis(800));
        signal(&child, "-TERM");
        let (code, out, _) = finish(child, Duration::from_secs(10));
        assert_eq!(code, Some(143), "{mode}: {out}");
        assert!(out.contains("INTERRUPTED"), "{mode}: {out}");
        assert!(
            out.contains("latency us"),
            "{mode}: a complete report: {out}"
        );
    }
}

/// A second signal during the drain exits at once, without a report.
#[test]
fn second_signal_exits_at_once() {
    // A UDP "server" that never answers: the drain after the first signal would wait.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = silent.local_addr().unwrap().to_string();
    let child = spawn(&[
        "udp",
        "--rate",
        "1000",
        "-d",
        "30s",
        "--drain-timeout",
        "5s",
        "--target",
        &target,
    ]);
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "-INT");
    std::thread::sleep(Duration::from_millis(100));
    signal(&child, "-INT");
    let (code, out, took) = finish(child, Duration::from_secs(10));
    assert_eq!(code, Some(130));
    assert!(took < Duration::from_millis(800), "{took:?}");
    assert!(out.is_empty(), "no report after the second signal: {out}");
}

/// `ping` stopped between sends (TCP, 1 s interval) or while it waits for an echo (UDP, a
/// socket that never answers, 10 s timeout): it stops at once and prints the summary, as
/// ping(1) does on Ctrl-C; the unanswered message is awaited, not lost; exit 130.
#[test]
fn sigint_ends_ping_with_its_summary() {
    let server = TcpEcho::start(Fault::None);
    let target = server.addr.to_string();
    let child = spawn(&[
        "ping",
        "--count",
        "100",
        "--interval",
        "1s",
        "--target",
        &target,
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    signal(&child, "-INT");
    let (code, out, took) = finish(child, Duration::from_secs(10));
    assert_eq!(code, Some(130), "{out}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert!(out.contains("seq=1 time="), "{out}");
    assert!(out.contains("echo statistics"), "{out}");
    assert!(out.contains("2 sent, 2 echoed, 0 wrong, 0% loss"), "{out}");

    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = silent.local_addr().unwrap().to_string();
    let child = spawn(&["ping", "--udp", "--timeout", "10s", "--target", &target]);
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "-INT");
    let (code, out, took) = finish(child, Duration::from_secs(10));
    assert_eq!(code, Some(130), "{out}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert!(
        out.contains("1 sent, 0 echoed, 0 wrong, 0% loss (1 still awaited when stopped)"),
        "{out}"
    );
}
