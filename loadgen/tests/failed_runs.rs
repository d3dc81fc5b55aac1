//! When a target is wrong, the results say so, in words: the generator's JSON names the
//! causes of its errors (a reset, a connect that never completed, echoes that never came),
//! and `scripts/loadtest.sh` against a target that fails `check` either refuses it, leaving
//! a folder that says why, or (`--measure-anyway`) opens its summary and its report with the
//! failed checks and marks every figure of that target.
//!
//! The script runs the real generator (`--no-build`, `ECHOLOOP_BENCH_BIN`) against a broken
//! server from the harness, on loopback, with one tiny matrix point: a few seconds each.

mod support_loadgen;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support_loadgen::bench;
use support_loadgen::broken::{Broken, BrokenTcp};

/// The generator's JSON for a short run of `args` against `target`.
#[track_caller]
fn json_run(target: &str, args: &[&str]) -> Value {
    let mut all = vec!["--target", target, "--json", "--warmup", "0.1s"];
    all.extend_from_slice(args);
    let out = bench(&all);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the run must fail: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

/// The causes of a run's errors, as `kind: cause` lines.
fn causes(v: &Value) -> Vec<String> {
    v["errors"]["causes"]
        .as_array()
        .expect("errors.causes is a list")
        .iter()
        .map(|c| format!("{}: {} x{}", c["kind"], c["cause"], c["count"]))
        .collect()
}

/// A server that resets its connections (it closes with input unread): the causes name the
/// reset as an I/O error and the echoes it destroyed as lost bytes, and the counts of the
/// causes add up to the counters.
#[test]
fn a_resetting_server_is_named_as_such() {
    let server = BrokenTcp::start(Broken::ClosesWithUnreadInput);
    let v = json_run(
        &server.addr.to_string(),
        &[
            "stream",
            "--connections",
            "2",
            "--size",
            "64K",
            "--duration",
            "1s",
        ],
    );
    let list = causes(&v);
    let text = list.join("\n");
    // RST when input was still unread at the close (nearly always here), else a FIN.
    assert!(
        list.iter()
            .any(|c| c.starts_with("\"io\"") && c.contains("reset the connection (RST"))
            || list
                .iter()
                .any(|c| c.contains("the server closed (FIN) before echoing everything")),
        "no reset (or early close) among the causes:\n{text}"
    );
    assert!(
        list.iter().any(|c| c.starts_with("\"verify\"")),
        "no lost echoes among the causes:\n{text}"
    );
    for kind in ["io", "verify", "connect"] {
        let counted: u64 = v["errors"]["causes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["kind"] == kind)
            .map(|c| c["count"].as_u64().unwrap())
            .sum();
        assert_eq!(
            counted, v["errors"][kind],
            "causes of kind {kind} add up to the counter:\n{text}"
        );
    }
}

/// A server that never accepts (connections sit in its backlog, or never complete): the run
/// fails, and the causes say the echoes never came or the connects never completed, rather
/// than a bare count.
#[test]
fn a_server_that_never_accepts_is_named_as_such() {
    let server = BrokenTcp::start(Broken::Hangs);
    let v = json_run(
        &server.addr.to_string(),
        &[
            "pingpong",
            "--connections",
            "4",
            "--size",
            "64",
            "--duration",
            "0.5s",
            "--drain-timeout",
            "0.5s",
        ],
    );
    let text = causes(&v).join("\n");
    assert!(
        text.contains("not echoed when the drain ended") || text.contains("still in progress"),
        "the causes do not say that nothing answered:\n{text}"
    );
}

/// A results folder under the system temp dir, removed on drop.
struct Results(PathBuf);

impl Results {
    fn new(test: &str) -> Results {
        let dir = std::env::temp_dir().join(format!(
            "echoloop-failed-runs-{test}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Results(dir)
    }

    #[track_caller]
    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.0.join(name))
            .unwrap_or_else(|e| panic!("cannot read {name} in {}: {e}", self.0.display()))
    }
}

impl Drop for Results {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `scripts/loadtest.sh` against `target` with a one-point matrix (stream, 2 connections,
/// 64 KiB, so a server that resets after 512 KiB does it during the run).
#[track_caller]
fn loadtest(target: &str, out: &Path, extra: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/loadtest.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .args(["--no-build", "--target", target, "--out"])
        .arg(out)
        .args([
            "--modes",
            "stream",
            "--connections",
            "2",
            "--sizes",
            "64K",
            "--repeats",
            "1",
            "--duration",
            "0.5s",
            "--warmup",
            "0.1s",
        ])
        .args(extra)
        .env("ECHOLOOP_BENCH_BIN", env!("CARGO_BIN_EXE_echoloop-bench"))
        .env("RUST_LOG", "off");
    let out = cmd.output().expect("run bash scripts/loadtest.sh");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The text of the first `<h2>` of `doc` up to the next one: the report's first section.
fn first_html_section(doc: &str) -> &str {
    let start = doc.find("<h2>").expect("report.html has sections");
    let rest = &doc[start + 4..];
    &doc[start..start + 4 + rest.find("<h2>").unwrap_or(rest.len())]
}

/// The first `## ` section of a Markdown document.
fn first_md_section(doc: &str) -> &str {
    let start = doc.find("\n## ").expect("summary.md has sections") + 1;
    let rest = &doc[start + 3..];
    &doc[start..start + 3 + rest.find("\n## ").unwrap_or(rest.len())]
}

/// `--measure-anyway` against a server that fails `check`: the summary and the report open
/// with the failed checks and their causes, every figure of the server is marked, the failed
/// run says why in the generator's words, and the JSON and CSV carry the verdict.
#[test]
fn measured_anyway_a_failing_target_is_flagged_first() {
    let server = BrokenTcp::start(Broken::ClosesWithUnreadInput);
    let results = Results::new("anyway");
    let out = loadtest(&server.addr.to_string(), &results.0, &["--measure-anyway"]);
    assert_eq!(out.status.code(), Some(1), "a failed run fails the script");

    let md = results.read("summary.md");
    let first = first_md_section(&md);
    assert!(
        first.starts_with("## external FAILED the conformance check"),
        "the summary does not open with the verdict:\n{md}"
    );
    assert!(
        first.contains("**integrity-sizes** failed: size 1 MiB:"),
        "the first section does not name the failed check with its cause:\n{md}"
    );
    assert!(
        md.contains("| external ✗ | stream | 2 | 64K |"),
        "the target's row is not marked:\n{md}"
    );
    // Whether the kernel sends RST or FIN depends on whether unread input was left at the
    // close: either way the run names what the server did.
    assert!(
        md.contains("- external stream c=2 s=64K repeat 1: verification failed:")
            && (md.contains("I/O: the server reset the connection (RST")
                || md.contains("verification: the server closed (FIN) before echoing everything")),
        "the failed run does not say why:\n{md}"
    );

    let html = results.read("report.html");
    let first = first_html_section(&html);
    assert!(
        first.contains("external FAILED the conformance check")
            && first.contains("<b>integrity-sizes</b> failed"),
        "report.html does not open with the failed checks:\n{first}"
    );
    assert!(
        html.contains("failed check"),
        "the charts' labels do not mark the target"
    );

    let raw = results.read("raw.jsonl");
    let run = raw
        .lines()
        .find(|l| l.contains("\"kind\": \"run\""))
        .expect("a run record");
    let v: Value = serde_json::from_str(run).unwrap();
    assert_eq!(v["target_check"]["verdict"], "FAIL", "{run}");
    assert!(
        v["target_check"]["failed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "integrity-sizes"),
        "{run}"
    );
    let csv = results.read("runs.csv");
    assert!(
        csv.lines().next().unwrap().ends_with(",target_check")
            && csv.lines().nth(1).unwrap().ends_with(",FAIL"),
        "runs.csv lacks the verdict:\n{csv}"
    );
}

/// Without `--measure-anyway` the script refuses the target, and the folder it leaves says
/// so: a summary naming the failed checks, raw data packed, no half-written `raw/`.
#[test]
fn a_refused_target_leaves_a_folder_that_says_why() {
    let server = BrokenTcp::start(Broken::ClosesWithUnreadInput);
    let results = Results::new("refused");
    let out = loadtest(&server.addr.to_string(), &results.0, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a refused target fails the script"
    );
    let md = results.read("summary.md");
    assert!(
        md.contains("## This load test did not complete") && md.contains("Refused: external"),
        "the summary does not say the target was refused:\n{md}"
    );
    assert!(
        md.contains("**integrity-sizes** failed"),
        "the summary does not name the failed checks:\n{md}"
    );
    assert!(
        md.contains("It was not measured."),
        "the summary does not say nothing was measured:\n{md}"
    );
    assert!(!results.0.join("raw").exists(), "raw/ is left half-written");
    assert!(results.read("report.html").contains("Refused: external"));
    assert!(results.read("raw.jsonl").contains("\"kind\": \"check\""));
}

/// Ephemeral ports used up (EADDRNOTAVAIL), made on purpose in a private network namespace
/// (`unshare -n`, root) whose port range holds 4 ports: the generator's failure says what it
/// means and what to change. Skips where no namespace can be made.
#[test]
fn running_out_of_ports_says_what_to_change() {
    // Inside the namespace: loopback up, 4 ephemeral ports, an echo server (python3) on
    // 127.0.0.1:7007 for at most 20 s, then 20 connections to it.
    let script = format!(
        "ip link set lo up || exit 77
         sysctl -qw net.ipv4.ip_local_port_range='40000 40003' || exit 77
         python3 -c '
import socket, threading, time
l = socket.socket(); l.bind((\"127.0.0.1\", 7007)); l.listen(64)
def echo(c):
    c.settimeout(20)
    try:
        while (d := c.recv(65536)):
            c.sendall(d)
    except OSError:
        pass
def serve():
    while True:
        threading.Thread(target=echo, args=(l.accept()[0],), daemon=True).start()
threading.Thread(target=serve, daemon=True).start()
time.sleep(20)' >/dev/null 2>&1 &
         server=$!
         for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/7007) 2>/dev/null && break; sleep 0.1; done
         {} pingpong --target 127.0.0.1:7007 --connections 20 --duration 0.5s --warmup 0s
         rc=$?; kill $server; exit $rc",
        env!("CARGO_BIN_EXE_echoloop-bench")
    );
    let out = match Command::new("unshare")
        .args(["-n", "bash", "-c", &script])
        .env("RUST_LOG", "off")
        .output()
    {
        Ok(o) => o,
        Err(e) => return eprintln!("skipped: cannot run unshare: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    if out.status.code() == Some(77) || stderr.contains("unshare:") {
        return eprintln!("skipped: no private network namespace here: {stderr}");
    }
    assert_ne!(out.status.code(), Some(0), "the run must fail:\n{stderr}");
    for what in [
        "os error 99",
        "hint: EADDRNOTAVAIL",
        "ip_local_port_range",
        "tcp_tw_reuse",
    ] {
        assert!(stderr.contains(what), "{what} missing:\n{stderr}");
    }
}
