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
