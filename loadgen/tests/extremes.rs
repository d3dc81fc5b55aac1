//! The generator's flags at their extremes: a duration as long as
//! `10000000000000000000` seconds is accepted and never overflows a clock reading, and a
//! count that would size a table past memory is refused in one line (exit 2), never a panic
//! or an abort. Runs the real binary against an in-test echo server on loopback; every run
//! is bounded by its own duration or killed after a fixed wait.

mod support_loadgen;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support_loadgen::{Fault, TcpEcho, UdpEcho};

/// About 317 billion years: far past any `Instant` the clock can represent if added as is.
const HUGE: &str = "10000000000000000000";
/// The longest any one run here may take.
const WAIT: Duration = Duration::from_secs(20);

fn bench() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_echoloop-bench"));
    command.env("RUST_LOG", "off");
    command
}

/// Runs `echoloop-bench ARGS` to completion, failing the test if it outlives [`WAIT`].
#[track_caller]
fn finish(args: &[&str]) -> Output {
    let mut child = bench()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start echoloop-bench");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > WAIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("echoloop-bench {args:?} did not finish within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

#[track_caller]
fn assert_clean_exit(args: &[&str], out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
}

/// Timeouts of any length end a short run normally: the drain finishes when the echoes are
/// in (it used to multiply `--drain-timeout` by 10 and panic), and a connect timeout that
/// never fires changes nothing.
#[test]
fn huge_timeouts_let_a_short_run_finish() {
    let tcp = TcpEcho::start(Fault::None);
    let udp = UdpEcho::start(0);
    let (tcp, udp) = (tcp.addr.to_string(), udp.addr.to_string());
    for (mode, target, timeout) in [
        ("pingpong", &tcp, "--connect-timeout"),
        ("stream", &tcp, "--connect-timeout"),
        ("churn", &tcp, "--connect-timeout"),
        ("udp", &udp, "--loss-timeout"),
    ] {
        let args = [
            mode,
            "--target",
            target,
            "-c",
            "2",
            "-d",
            "300ms",
            "--drain-timeout",
            HUGE,
            timeout,
            HUGE,
        ];
        assert_clean_exit(&args, &finish(&args));
    }
}

/// A run told to last (or warm up) for ever starts and keeps running: no overflow when the
/// end of the run is computed. Killed after a second.
#[test]
fn endless_duration_and_warmup_run_until_stopped() {
    let server = TcpEcho::start(Fault::None);
    let target = server.addr.to_string();
    for flag in ["-d", "--warmup"] {
        let mut child = bench()
            .args(["pingpong", "--target", &target, "-c", "1", flag, HUGE])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start echoloop-bench");
        std::thread::sleep(Duration::from_secs(1));
        let status = child.try_wait().expect("wait");
        let _ = child.kill();
        let out = child.wait_with_output().expect("collect output");
        assert_eq!(
            status,
            None,
            "{flag} {HUGE}: exited early: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Counts that would size a table beyond memory are usage errors: exit 2, one line naming
/// the flag (they used to abort the process while allocating, or panic).
#[test]
fn counts_beyond_memory_are_one_line_usage_errors() {
    let server = TcpEcho::start(Fault::None);
    let target = server.addr.to_string();
    for (args, flag) in [
        (&["pingpong", "-c", HUGE][..], "--connections"),
        (&["pingpong", "--threads", HUGE], "--threads"),
        (&["pipeline", "--depth", HUGE], "--depth"),
        (&["udp", "--window", HUGE], "--window"),
        (
            &["pingpong", "--size", "99999999999999999999G"],
            "too large",
        ),
        (
            &["stream", "--window", "99999999999999999999G"],
            "too large",
        ),
    ] {
        let mut all = vec!["--target", &target, "-d", "300ms"];
        all.extend_from_slice(args);
        let out = finish(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("echoloop-bench: "), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}
