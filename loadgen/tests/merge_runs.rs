//! `merge`: two runs' JSON reports combine exactly: the merged histogram is the sum of
//! both runs' histograms, counts add up, and the binary does the same from files.

mod support_loadgen;

use echoloop_bench::{self as loadgen, histogram, merge, Mode, Options};
use std::process::Command;
use std::time::Duration;
use support_loadgen::{Fault, TcpEcho};

#[test]
fn merged_histogram_is_the_sum_of_both_runs() {
    let server = TcpEcho::start(Fault::None);
    let run = |seed| {
        let mut o = Options::new(Mode::Rate { rate: 400.0 }, server.addr);
        o.connections = 2;
        o.duration = Duration::from_millis(500);
        o.seed = seed;
        loadgen::run(&o).expect("run")
    };
    let (a, b) = (run(1), run(2));
    let (ja, jb) = (a.to_json(), b.to_json());
    let m = merge::merge(&[("a".into(), ja.clone()), ("b".into(), jb.clone())]).unwrap();

    let mut both = a.stats.latency.clone();
    both.add(&b.stats.latency).unwrap();
    let merged = histogram::decode(m["histograms"]["latency_us"].as_str().unwrap()).unwrap();
    assert_eq!(merged, both, "histograms added exactly");
    assert_eq!(m["latency_us"]["p99"], both.value_at_quantile(0.99));
    assert_eq!(m["latency_us"]["max"], both.max());
    assert_eq!(m["requests"], a.stats.requests + b.stats.requests);
    assert_eq!(
        m["totals"]["bytes_sent"],
        a.stats.bytes_sent + b.stats.bytes_sent
    );
    assert_eq!(m["connections"], 4);
    assert_eq!(m["merged"]["runs"], 2);

    // The binary, from files.
    let dir = std::env::temp_dir().join(format!("echoloop-merge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (fa, fb) = (dir.join("a.json"), dir.join("b.json"));
    std::fs::write(&fa, ja.to_string()).unwrap();
    std::fs::write(&fb, jb.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_echoloop-bench"))
        .arg("merge")
        .arg(&fa)
        .arg(&fb)
        .arg("--json")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_files: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(from_files["histograms"], m["histograms"]);
    assert_eq!(from_files["requests"], m["requests"]);
}

/// Wall-clock seconds now.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `--start-at`: two generators launched 400 ms apart with one start time measure together:
/// neither measures before that time, both windows begin within a few ms of it, and `merge`
/// finds them overlapping (no warning) with totals that are the sum of the parts.
#[test]
fn generators_given_one_start_time_measure_together() {
    let server = TcpEcho::start(Fault::None);
    let start_at = unix_now() + 1.5;
    let launch = |seed: &str| {
        Command::new(env!("CARGO_BIN_EXE_echoloop-bench"))
            .args([
                "--target",
                &server.addr.to_string(),
                "-c",
                "2",
                "-d",
                "500ms",
            ])
            .args(["--start-at", &format!("{start_at:.3}"), "--seed", seed])
            .args(["--interval", "100ms"])
            .args(["--json", "pingpong"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn echoloop-bench")
    };
    let first = launch("1");
    std::thread::sleep(Duration::from_millis(400));
    let second = launch("2");
    let report = |child: std::process::Child| {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "exit {}", out.status);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let (a, b) = (report(first), report(second));
    let start_at = (start_at * 1000.0).round() / 1000.0;
    for r in [&a, &b] {
        let start = r["window"]["start_unix_s"].as_f64().unwrap();
        assert!(
            start >= start_at,
            "measured before --start-at: {start} < {start_at}"
        );
        // Connection set-up on a loaded machine; the two launches were 400 ms apart.
        assert!(
            start - start_at < 0.3,
            "started {} s late",
            start - start_at
        );
        assert!(r["requests"].as_u64().unwrap() > 0);
    }
    let m = merge::merge(&[("a".into(), a.clone()), ("b".into(), b.clone())]).unwrap();
    assert_eq!(m["merged"]["window"]["overlap"], true);
    assert_eq!(m["merged"]["warnings"], serde_json::json!([]));
    // The rows line up with the windows: counted inside the common window (almost all of
    // both), the rate is close to the sum of the runs' own.
    assert_eq!(m["merged"]["window"]["rates_from"], "intervals");
    let own = a["requests_per_s"].as_f64().unwrap() + b["requests_per_s"].as_f64().unwrap();
    let counted = m["requests_per_s"].as_f64().unwrap();
    assert!(
        (counted - own).abs() < 0.25 * own,
        "{counted}/s counted in the common window, {own}/s from the runs' own rates"
    );
    let sum =
        |p: &str| a.pointer(p).unwrap().as_u64().unwrap() + b.pointer(p).unwrap().as_u64().unwrap();
    assert_eq!(m["requests"], sum("/requests"));
    assert_eq!(m["totals"]["bytes_sent"], sum("/totals/bytes_sent"));
}

/// A start time already past begins at once, and a malformed one is a usage error.
#[test]
fn start_at_in_the_past_runs_at_once_and_nonsense_is_refused() {
    let server = TcpEcho::start(Fault::None);
    let run = |at: &str| {
        Command::new(env!("CARGO_BIN_EXE_echoloop-bench"))
            .args([
                "--target",
                &server.addr.to_string(),
                "-c",
                "1",
                "-d",
                "200ms",
            ])
            .args(["--start-at", at, "--json", "pingpong"])
            .output()
            .unwrap()
    };
    let begun = std::time::Instant::now();
    let out = run("2020-01-01T00:00:00Z");
    assert!(out.status.success());
    assert!(begun.elapsed() < Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("after --start-at"),
        "late start not reported: {stderr}"
    );
    let out = run("tomorrow");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("invalid --start-at 'tomorrow'"), "{stderr}");
}
