//! `echoloop-bench check` against echoloop itself (an in-process `echoloop::Server` on a free
//! loopback port): every check of the quick battery passes, TCP and UDP, and the binary's
//! exit code and JSON say so. Also: an unknown check name is a usage error.

mod support_loadgen;

use echoloop_bench::check::{self, CheckOptions, Verdict};
use std::process::Command;
use support_loadgen::Echoloop;

/// The whole quick battery, TCP and UDP: nothing fails, nothing is skipped, and fairness is
/// reported as information.
#[test]
fn echoloop_passes_every_check() {
    let server = Echoloop::start();
    let mut opts = CheckOptions::new(server.addr);
    opts.quick = true;
    opts.udp = true;
    let report = check::run(&opts).expect("valid options");
    let text = report.human();
    assert_eq!(report.exit_code(), 0, "{text}");
    assert_eq!(report.checks.len(), check::names().count(), "{text}");
    for c in &report.checks {
        let expected = if c.name == "fairness" {
            Verdict::Info
        } else {
            Verdict::Pass
        };
        assert_eq!(c.verdict, expected, "{text}");
        assert!(!c.figure.is_empty(), "{} has a figure: {text}", c.name);
    }
}

/// The binary: `--json` prints one object with a verdict per check, exit 0; `--only`
/// limits the run (plus `connect`, which the TCP checks depend on).
#[test]
fn binary_prints_json_and_exits_zero() {
    let server = Echoloop::start();
    let target = server.addr.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_echoloop-bench"))
        .args(["check", "--quick", "--json", "--only", "half-close,idle"])
        .args(["--target", &target, "--seed", "7"])
        .output()
        .expect("run echoloop-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(json["verdict"], "PASS");
    assert_eq!(json["seed"], 7);
    let names: Vec<&str> = json["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["connect", "half-close", "idle"]);
}

/// A misspelt check is a one-line usage error (exit 2) that lists the real names.
#[test]
fn unknown_check_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_echoloop-bench"))
        .args(["check", "--target", "127.0.0.1:9", "--only", "crosstalks"])
        .output()
        .expect("run echoloop-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("echoloop-bench: unknown check 'crosstalks'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("crosstalk,") || stderr.contains("crosstalk, "),
        "{stderr}"
    );
}
