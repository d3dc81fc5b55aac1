//! Tests for the pure-report half of the load-test script: `scripts/report.py` run on the
//! hand-made results in `tests/fixtures/loadtest/` (copied to a temporary directory, since the
//! report writes next to its input), and on a sweep's per-run files, which it packs into one
//! `raw.jsonl`. No server or generator is started here.
//!
//! The fixture's numbers are round on purpose (see `raw.jsonl`, one run per line): for example
//! echoloop pingpong c=1 s=64 ran at 10k, 20k and 30k req/s, so its median is 20k with a spread
//! of 10k–30k, and tokio at the same point has a median of 10k, a 2.00× throughput ratio.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A copy of the fixture directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    #[track_caller]
    fn new(test: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("echoloop-scripts-{}-{}", test, std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/loadtest");
        copy_dir(&fixture, &dir);
        Scratch(dir)
    }

    #[track_caller]
    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.0.join(name))
            .unwrap_or_else(|e| panic!("cannot read {name} in {}: {e}", self.0.display()))
    }

    /// Applies `edit` to the one line of `raw.jsonl` that contains `marker`; fails the test if
    /// the edit changes nothing (the fixture's layout changed under the test).
    #[track_caller]
    fn doctor_raw(&self, marker: &str, edit: impl Fn(&str) -> String) {
        let path = self.0.join("raw.jsonl");
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let hits: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].contains(marker))
            .collect();
        assert_eq!(hits.len(), 1, "one line of raw.jsonl holds {marker:?}");
        let doctored = edit(lines[hits[0]]);
        assert_ne!(lines[hits[0]], doctored, "fixture layout changed");
        let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        out[hits[0]] = doctored;
        fs::write(&path, out.join("\n") + "\n").unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[track_caller]
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Runs `python3 scripts/report.py DIR`; python 3.11 is on every machine we build on.
#[track_caller]
fn report(dir: &Path) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/report.py");
    Command::new("python3")
        .arg(script)
        .arg(dir)
        .output()
        .expect("python3 must be installed to run scripts/report.py")
}

/// The fixture as recorded: every output file is written, the medians and spreads are the
/// ones built into the data, the ratios are computed from medians, and the cross-check agrees.
#[test]
fn report_on_fixture_writes_expected_medians() {
    let scratch = Scratch::new("ok");
    let out = report(&scratch.0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "report.py failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let csv = scratch.read("runs.csv");
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with(
            "server,mode,connections,size,repeat,requests,requests_per_s,bytes_per_s,\
             p50,p90,p99,p999,max,errors,server_cpu_s,server_cpu_us_per_msg,gen_cpu_s"
        ),
        "unexpected CSV header: {header}"
    );
    assert_eq!(lines.count(), 13, "one CSV row per run");
    // echoloop pingpong c=1 s=64 repeat 2: 20000 requests, 0.2 s of server CPU -> 10 µs/msg.
    assert!(
        csv.contains(
            "\necholoop,pingpong,1,64,2,20000,20000,1280000,60,120,240,480,1200,0,0.2,10,0.75,"
        ),
        "repeat-2 row not as expected:\n{csv}"
    );

    let md = scratch.read("summary.md");
    for expected in [
        "| echoloop | pingpong | 1 | 64 | 3 | 20k (10k–30k) | 1.28 | 60 | 240 | 480 | 10 | 0 |",
        "| echoloop | pingpong | 10 | 64 | 3 | 50k (40k–60k) |",
        "| tokio | pingpong | 1 | 64 | 3 | 10k (5k–15k) |",
        // Ratios per pair of runs (same repeat), their median and spread; a spread that
        // includes 1 would be marked.
        "| pingpong | 1 | 64 | tokio | 3 | 20k | 10k | 2.00× (2.00–2.00) | 0.50× (0.25–0.75) | 0.75× (0.62–0.88) |",
        "| pingpong | 10 | 64 | tokio | 3 | 50k | 25k | 2.00× (2.00–2.00) |",
        "**echoloop**: AGREE exactly",
        "**tokio**: not applicable",
        "echoloop stream c=10000 s=64K: connections*size",
    ] {
        assert!(
            md.contains(expected),
            "summary.md lacks {expected:?}:\n{md}"
        );
    }

    let html = scratch.read("report.html");
    assert!(html.contains("<svg"), "report.html has no inline SVG chart");
    assert!(html.contains("pingpong: requests/s vs connections"));
    assert!(html.contains("pingpong 64: latency percentiles"));
    assert!(
        !html.contains("<script") && !html.contains("src=\"http"),
        "report.html must be self-contained"
    );
}

/// A run with verification errors makes the report exit 1 and list the run as failed.
#[test]
fn report_fails_on_verification_errors() {
    let scratch = Scratch::new("verify");
    scratch.doctor_raw("\"name\": \"echoloop-pingpong-c10-s64-r2\"", |line| {
        line.replace("\"verify\": 0", "\"verify\": 3")
    });

    let out = report(&scratch.0);
    assert_eq!(
        out.status.code(),
        Some(1),
        "verification errors must fail the report"
    );
    let md = scratch.read("summary.md");
    assert!(
        md.contains("echoloop pingpong c=10 s=64 repeat 2: verification failed: 3 verification"),
        "{md}"
    );
}

/// A comparison whose pairs disagree (one pair says the peer was faster) shows the spread
/// and marks the ratio as showing no difference, instead of a bare ratio of medians.
#[test]
fn report_marks_a_ratio_whose_spread_includes_one() {
    let scratch = Scratch::new("spread");
    scratch.doctor_raw("\"name\": \"tokio-pingpong-c1-s64-r3\"", |line| {
        line.replace("\"requests_per_s\": 15000.0", "\"requests_per_s\": 40000.0")
    });
    let out = report(&scratch.0);
    assert!(out.status.success(), "report.py failed");
    let md = scratch.read("summary.md");
    assert!(
        md.contains("| pingpong | 1 | 64 | tokio | 3 | 20k | 10k | 2.00× (0.75–2.00) **=** |"),
        "{md}"
    );
    assert!(
        md.contains("| pingpong | 10 | 64 | tokio | 3 | 50k | 25k | 2.00× (2.00–2.00) |"),
        "the other point is unchanged:\n{md}"
    );
}

/// The server claiming to have echoed more than the generator could ever have sent fails the
/// cross-check, and the summary says by how much.
#[test]
fn report_fails_when_server_counters_disagree() {
    let scratch = Scratch::new("xcheck");
    scratch.doctor_raw("\"kind\": \"server\", \"server\": \"echoloop\"", |line| {
        line.replace("tcp_bytes_in=144800000", "tcp_bytes_in=154800000")
    });

    let out = report(&scratch.0);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a cross-check failure must fail the report"
    );
    let md = scratch.read("summary.md");
    assert!(
        md.contains("FAILED: server read 10000000 bytes more than the generator sent"),
        "{md}"
    );
}

/// A sweep as `scripts/loadtest.sh` leaves it, one file per run under `raw/`: the report packs
/// them into one `raw.jsonl` (generator JSON, stderr, server output, skipped points all kept),
/// removes `raw/`, and a second report from `raw.jsonl` alone says exactly the same.
#[test]
fn report_packs_per_run_files_into_one_raw_jsonl() {
    let scratch = Scratch::new("pack");
    fs::remove_file(scratch.0.join("raw.jsonl")).unwrap();
    let raw = scratch.0.join("raw");
    fs::create_dir(&raw).unwrap();
    let run = |name: &str, rps: u32| {
        let meta = format!(
            "{{\"server\": \"echoloop\", \"mode\": \"pingpong\", \"connections\": 2, \
             \"size\": \"64\", \"repeat\": {}, \"gen_exit\": 0, \"clk_tck\": 100, \
             \"server_ticks_before\": 0, \"server_ticks_after\": 10}}\n",
            &name[name.len() - 1..]
        );
        let generator = format!(
            "{{\"requests\": {rps}, \"requests_per_s\": {rps}.0, \"bytes_per_s\": 1.0, \
             \"errors\": {{\"verify\": 0, \"connect\": 0, \"io\": 0}}, \
             \"totals\": {{\"bytes_sent\": 640, \"bytes_received\": 640}}}}\n"
        );
        fs::write(raw.join(format!("{name}.meta.json")), meta).unwrap();
        fs::write(raw.join(format!("{name}.json")), generator).unwrap();
        fs::write(
            raw.join(format!("{name}.stderr")),
            format!("stderr of {name}\n"),
        )
        .unwrap();
    };
    run("echoloop-pingpong-c2-s64-r1", 1000);
    run("echoloop-pingpong-c2-s64-r2", 3000);
    fs::write(
        raw.join("server-echoloop.stdout"),
        "listening tcp=127.0.0.1:1 udp=off\nsummary tcp_bytes_in=1280 tcp_bytes_out=1280\n",
    )
    .unwrap();
    fs::write(
        raw.join("server-echoloop.info.json"),
        "{\"server\": \"echoloop\", \"has_summary\": true, \"exit_status\": 0}\n",
    )
    .unwrap();
    fs::write(
        raw.join("skipped.tsv"),
        "server\tmode\tconnections\tsize\treason\necholoop\tstream\t9\t64K\ttoo big\n",
    )
    .unwrap();

    let out = report(&scratch.0);
    assert!(
        out.status.success(),
        "report.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!raw.exists(), "raw/ is removed once packed");
    let packed = scratch.read("raw.jsonl");
    assert_eq!(
        packed.lines().count(),
        4,
        "server, two runs, one skipped point:\n{packed}"
    );
    for kept in [
        "\"kind\": \"run\", \"name\": \"echoloop-pingpong-c2-s64-r2\"",
        "\"requests_per_s\": 3000.0",
        "stderr of echoloop-pingpong-c2-s64-r1",
        "summary tcp_bytes_in=1280",
        "\"reason\": \"too big\"",
    ] {
        assert!(packed.contains(kept), "raw.jsonl lacks {kept:?}:\n{packed}");
    }
    let summary = scratch.read("summary.md");
    for expected in [
        "| echoloop | pingpong | 2 | 64 | 2 | 2k (1k–3k) |",
        "**echoloop**: AGREE exactly",
        "echoloop stream c=9 s=64K: too big",
    ] {
        assert!(
            summary.contains(expected),
            "summary.md lacks {expected:?}:\n{summary}"
        );
    }

    let again = report(&scratch.0);
    assert!(again.status.success(), "second report failed");
    assert_eq!(
        scratch.read("summary.md"),
        summary,
        "same summary from raw.jsonl alone"
    );
    assert_eq!(
        scratch.read("raw.jsonl"),
        packed,
        "raw.jsonl is left as it was"
    );
}
