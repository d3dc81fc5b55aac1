//! `echoloop-bench merge`: several runs' JSON reports combined into one, exactly.
//!
//! Percentiles cannot be averaged, but histograms can be added: each report embeds its
//! HdrHistograms (V2 compressed, base64), and the merged report's percentiles come from
//! their sum. Counts and bytes are summed, exactly.
//!
//! Rates need the runs to have been concurrent (K generator processes against one target,
//! on one machine or several, started together with `--start-at`). Each report carries its
//! measured window on the wall clock; the merge takes the *common window* (latest start to
//! earliest end), during which every run was measuring, so the target saw the sum of their
//! rates: the merged rates are that sum (each run's rate taken as steady over its own window,
//! which the warm-up is there to make true), and the merged `duration_s` is the common
//! window. With `--interval` rows in every report the rates are counted instead: what each
//! run did inside the common window, from its rows (`merged.window.rates_from` says which).
//! Windows that overlap for less than [`MIN_OVERLAP`] of the shortest run get a
//! warning; windows that do not overlap at all get a warning and rates over the whole span
//! (first start to last end) instead, since those runs never loaded the target together.
//! Warnings are in `merged.warnings` and on stderr. Per-interval rows are dropped: the
//! processes' clocks do not share interval boundaries.

use super::histogram;
use super::report::{connect_percentiles, percentiles, round2};
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

/// Counters added across runs (JSON pointers); absent ones are skipped.
const SUMMED: &[&str] = &[
    "/connections",
    "/threads",
    "/requests",
    "/requests_per_s",
    "/bytes_per_s",
    "/rate",
    "/sockets",
    "/connections_per_s",
    "/late_sends",
    "/errors/verify",
    "/errors/connect",
    "/errors/io",
    "/errors/mismatches",
    "/errors/lost_bytes",
    "/errors/extra_bytes",
    "/totals/bytes_sent",
    "/totals/bytes_received",
    "/totals/connections",
    "/udp/sent",
    "/udp/received",
    "/udp/lost",
    "/udp/duplicates",
    "/udp/reordered",
    "/cpu/user_s",
    "/cpu/sys_s",
];

/// Rates: summed when the runs were concurrent, re-derived from totals over the span when not.
const RATES: &[&str] = &["/requests_per_s", "/bytes_per_s", "/connections_per_s"];

/// The fraction of the shortest run's window that the common window must cover for the runs
/// to count as started together without a warning.
pub const MIN_OVERLAP: f64 = 0.9;

/// Embedded histograms and the percentile block each one becomes.
const HISTOGRAMS: &[(&str, &str)] = &[
    ("latency_us", "/latency_us"),
    ("latency_uncorrected_us", "/latency_uncorrected_us"),
    ("schedule_error_us", "/schedule_error_us"),
    ("connect_us", "/connect_us"),
];

/// The runs' `errors.causes`, one entry per (kind, cause), counts added, in order of first
/// appearance.
fn merged_causes(runs: &[(String, Value)]) -> Value {
    let mut out: Vec<Value> = Vec::new();
    let all = runs
        .iter()
        .filter_map(|(_, r)| r.pointer("/errors/causes").and_then(Value::as_array))
        .flatten();
    for c in all {
        let count = c["count"].as_u64().unwrap_or(0);
        match out
            .iter_mut()
            .find(|o| o["kind"] == c["kind"] && o["cause"] == c["cause"])
        {
            Some(o) => o["count"] = json!(o["count"].as_u64().unwrap_or(0) + count),
            None => out.push(c.clone()),
        }
    }
    Value::Array(out)
}

/// Combines `runs` (each a parsed JSON report, with a name for messages) into one report of
/// the same shape, plus a `merged {runs, sources, command_lines}` block.
pub fn merge(runs: &[(String, Value)]) -> Result<Value, String> {
    let Some((_, first)) = runs.first() else {
        return Err("merge needs at least one report".into());
    };
    let mode = first.get("mode").and_then(Value::as_str).unwrap_or("");
    for (name, run) in runs {
        let m = run.get("mode").and_then(Value::as_str);
        if m != Some(mode) {
            return Err(format!(
                "{name}: mode {} differs from {mode} (only runs of one mode merge)",
                m.unwrap_or("(none)")
            ));
        }
    }
    let mut out = first.clone();
    for path in SUMMED {
        let values: Vec<&Value> = runs.iter().filter_map(|(_, r)| r.pointer(path)).collect();
        if values.len() != runs.len() || values.iter().any(|v| !v.is_number()) {
            continue;
        }
        let sum = if values.iter().all(|v| v.is_u64()) {
            json!(values.iter().filter_map(|v| v.as_u64()).sum::<u64>())
        } else {
            json!(round2(
                values.iter().filter_map(|v| v.as_f64()).sum::<f64>()
            ))
        };
        if let Some(slot) = out.pointer_mut(path) {
            *slot = sum;
        }
    }
    if out.pointer("/errors/causes").is_some() {
        out["errors"]["causes"] = merged_causes(runs);
    }
    let longest = runs
        .iter()
        .filter_map(|(_, r)| r.get("elapsed_s").and_then(Value::as_f64))
        .fold(0.0, f64::max);
    out["elapsed_s"] = json!(longest);
    let mut warnings = Vec::new();
    let window = match windows(runs) {
        Err(name) => {
            warnings.push(format!(
                "{name}: no measured window (made by an older echoloop-bench?): rates are \
                 summed as if the runs were concurrent, which merge cannot check"
            ));
            let longest = runs
                .iter()
                .filter_map(|(_, r)| r.get("duration_s").and_then(Value::as_f64))
                .fold(0.0, f64::max);
            out["duration_s"] = json!(longest);
            Value::Null
        }
        Ok(w) => {
            let common = w.common_s();
            let mut rates_from = "steady";
            if common > 0.0 {
                out["duration_s"] = json!(round6(common));
                if let Some((requests, bytes)) = interval_rates(runs, w.last_start, w.first_end) {
                    rates_from = "intervals";
                    out["requests_per_s"] = json!(round2(requests));
                    out["bytes_per_s"] = json!(round2(bytes));
                    if out.get("connections_per_s").is_some() {
                        out["connections_per_s"] = json!(round2(requests));
                    }
                }
                if common < MIN_OVERLAP * w.shortest_s {
                    warnings.push(format!(
                        "the runs' windows overlap for {common:.3} s only, {:.0}% of the \
                         shortest run ({:.3} s): rates assume every run was steady; start \
                         them together with --start-at",
                        100.0 * common / w.shortest_s,
                        w.shortest_s
                    ));
                }
            } else {
                let span = w.span_s();
                warnings.push(format!(
                    "the runs' windows do not overlap (a gap of {:.3} s): they never loaded \
                     the target together; rates are over the {span:.3} s from the first \
                     start to the last end, not concurrent load; start them together with \
                     --start-at",
                    -common
                ));
                out["duration_s"] = json!(round6(span));
                rates_from = "span";
                for path in RATES {
                    let done: Option<f64> = runs
                        .iter()
                        .map(|(_, r)| {
                            let rate = r.pointer(path).and_then(Value::as_f64)?;
                            Some(rate * r.get("duration_s").and_then(Value::as_f64)?)
                        })
                        .sum();
                    if let (Some(done), Some(slot)) = (done, out.pointer_mut(path)) {
                        *slot = json!(round2(if span > 0.0 { done / span } else { 0.0 }));
                    }
                }
            }
            let mut block = w.to_json();
            block["rates_from"] = json!(rates_from);
            block
        }
    };
    let interrupted = runs.iter().any(|(_, r)| r["interrupted"] == json!(true));
    out["interrupted"] = json!(interrupted);
    let exit = runs
        .iter()
        .filter_map(|(_, r)| r.get("exit_code").and_then(Value::as_i64))
        .find(|&c| c != 0)
        .unwrap_or(0);
    out["exit_code"] = json!(exit);
    if let (Some(lost), Some(sent)) = (
        out.pointer("/udp/lost").and_then(Value::as_u64),
        out.pointer("/udp/sent").and_then(Value::as_u64),
    ) {
        out["loss_percent"] = json!(if sent == 0 {
            0.0
        } else {
            lost as f64 * 100.0 / sent as f64
        });
    }
    let mut merged_hists = Map::new();
    for (key, block) in HISTOGRAMS {
        let pointer = format!("/histograms/{key}");
        // Optional ones (schedule error: open loop only) may be absent from every run.
        if *key != "latency_us" && runs.iter().all(|(_, r)| r.pointer(&pointer).is_none()) {
            continue;
        }
        let mut sum: Option<Histogram<u64>> = None;
        for (name, run) in runs {
            let Some(text) = run.pointer(&pointer).and_then(Value::as_str) else {
                return Err(format!(
                    "{name}: no embedded histogram '{key}' (made by an older echoloop-bench?)"
                ));
            };
            let h = histogram::decode(text).map_err(|e| format!("{name}: {key}: {e}"))?;
            match &mut sum {
                None => sum = Some(h),
                Some(s) => s.add(&h).map_err(|e| format!("{name}: {key}: {e:?}"))?,
            }
        }
        let Some(sum) = sum else { continue };
        if out.pointer(block).is_some() {
            let figures = if *key == "connect_us" {
                connect_percentiles(&sum)
            } else {
                percentiles(&sum)
            };
            if let Some(slot) = out.pointer_mut(block) {
                *slot = figures;
            }
        }
        merged_hists.insert((*key).to_string(), json!(histogram::encode(&sum)));
    }
    out["histograms"] = Value::Object(merged_hists);
    if let Some(map) = out.as_object_mut() {
        map.remove("intervals");
        map.remove("window");
    }
    let targets: Vec<Value> = runs.iter().map(|(_, r)| r["target"].clone()).collect();
    out["merged"] = json!({
        "runs": runs.len(),
        "window": window,
        "warnings": warnings,
        "sources": runs.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        "targets": targets,
        "command_lines": runs.iter().map(|(_, r)| r.pointer("/run/command_line").cloned().unwrap_or(Value::Null)).collect::<Vec<_>>(),
    });
    Ok(out)
}

/// The runs' measured windows on the wall clock (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Windows {
    /// The earliest start and the latest start.
    pub first_start: f64,
    /// The latest start: the common window begins here.
    pub last_start: f64,
    /// The earliest end: the common window ends here.
    pub first_end: f64,
    /// The latest end.
    pub last_end: f64,
    /// The shortest run's window length, in seconds.
    pub shortest_s: f64,
}

impl Windows {
    /// Length of the common window in seconds; negative: the gap between windows that do not
    /// overlap.
    pub fn common_s(&self) -> f64 {
        self.first_end - self.last_start
    }

    /// From the first start to the last end, in seconds.
    pub fn span_s(&self) -> f64 {
        self.last_end - self.first_start
    }

    fn to_json(self) -> Value {
        let common = self.common_s();
        json!({
            "common_start_unix_s": (common > 0.0).then_some(self.last_start),
            "common_end_unix_s": (common > 0.0).then_some(self.first_end),
            "common_s": round6(common.max(0.0)),
            "span_s": round6(self.span_s()),
            "start_spread_s": round6(self.last_start - self.first_start),
            "overlap": common > 0.0,
        })
    }
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Requests and bytes per second over the common window `[from, to]` (Unix seconds), summed
/// over the runs, from their per-interval rows (`--interval`): each measured row counts in
/// proportion to its overlap with the window, so a run that was not steady (a ramp, a stall)
/// is counted for what it did in the window only. `None` unless every run has rows.
fn interval_rates(runs: &[(String, Value)], from: f64, to: f64) -> Option<(f64, f64)> {
    let (mut requests, mut bytes) = (0.0, 0.0);
    for (_, run) in runs {
        let rows = run
            .get("intervals")?
            .as_array()
            .filter(|rows| !rows.is_empty())?;
        // Rows are timed from the start of the run: the window's start less the warm-up.
        let origin =
            run.pointer("/window/start_unix_s")?.as_f64()? - run.get("warmup_s")?.as_f64()?;
        for row in rows {
            if row.get("warmup").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let start = origin + row.get("start_s")?.as_f64()?;
            let length = row.get("duration_s")?.as_f64()?;
            let inside = (start + length).min(to) - start.max(from);
            if length > 0.0 && inside > 0.0 {
                let share = inside / length;
                requests += share * row.get("requests")?.as_f64()?;
                bytes += share * length * row.get("bytes_per_s")?.as_f64()?;
            }
        }
    }
    let common = to - from;
    (common > 0.0).then(|| (requests / common, bytes / common))
}

/// The runs' windows, or the name of the first run without one.
pub fn windows(runs: &[(String, Value)]) -> Result<Windows, String> {
    let mut w = Windows {
        first_start: f64::INFINITY,
        last_start: f64::NEG_INFINITY,
        first_end: f64::INFINITY,
        last_end: f64::NEG_INFINITY,
        shortest_s: f64::INFINITY,
    };
    for (name, run) in runs {
        let at = |key: &str| {
            run.pointer(&format!("/window/{key}"))
                .and_then(Value::as_f64)
        };
        let (Some(start), Some(end)) = (at("start_unix_s"), at("end_unix_s")) else {
            return Err(name.clone());
        };
        w.first_start = w.first_start.min(start);
        w.last_start = w.last_start.max(start);
        w.first_end = w.first_end.min(end);
        w.last_end = w.last_end.max(end);
        w.shortest_s = w.shortest_s.min(end - start);
    }
    Ok(w)
}

/// A few lines for people about a merged report.
pub fn human(merged: &Value) -> String {
    let g = |p: &str| merged.pointer(p).cloned().unwrap_or(Value::Null);
    format!(
        "merged {} runs of {} -> {}: {} connections, {} s\n  \
         requests     {}  ({}/s)\n  \
         latency us   p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n  \
         errors       verify {}  connect {}  io {}\n",
        g("/merged/runs"),
        g("/mode").as_str().unwrap_or("?"),
        g("/target").as_str().unwrap_or("?"),
        g("/connections"),
        g("/duration_s"),
        g("/requests"),
        g("/requests_per_s"),
        g("/latency_us/p50"),
        g("/latency_us/p90"),
        g("/latency_us/p99"),
        g("/latency_us/p999"),
        g("/latency_us/max"),
        g("/errors/verify"),
        g("/errors/connect"),
        g("/errors/io"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    fn run(values: &[u64], requests: u64) -> Value {
        let mut h = new_histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        json!({
            "mode": "rate", "target": "127.0.0.1:7", "requests": requests,
            "duration_s": 2.0, "requests_per_s": 1.5, "latency_us": percentiles(&h),
            "errors": {"verify": 0, "connect": 1, "io": 0},
            "histograms": {"latency_us": histogram::encode(&h)},
        })
    }

    /// The causes of the processes' errors add up by cause, none lost.
    #[test]
    fn causes_add_up_by_cause() {
        let run = |n: u64, extra: Option<&str>| {
            let mut causes = vec![json!({"kind": "io", "cause": "reset", "count": n})];
            if let Some(c) = extra {
                causes.push(json!({"kind": "connect", "cause": c, "count": 1}));
            }
            json!({"errors": {"causes": causes}})
        };
        let runs = vec![
            ("a".to_string(), run(2, None)),
            ("b".to_string(), run(3, Some("refused"))),
        ];
        assert_eq!(
            merged_causes(&runs),
            json!([
                {"kind": "io", "cause": "reset", "count": 5},
                {"kind": "connect", "cause": "refused", "count": 1},
            ])
        );
    }

    #[test]
    fn sums_counts_and_adds_histograms() {
        let a = run(&[10, 20, 30], 3);
        let b = run(&[1000, 2000], 2);
        let m = merge(&[("a".into(), a), ("b".into(), b)]).unwrap();
        assert_eq!(m["requests"], json!(5));
        assert_eq!(m["requests_per_s"], json!(3.0));
        assert_eq!(m["errors"]["connect"], json!(2));
        assert_eq!(m["latency_us"]["max"], json!(2000));
        let h = histogram::decode(m["histograms"]["latency_us"].as_str().unwrap()).unwrap();
        assert_eq!(h.len(), 5);
        assert_eq!(m["merged"]["runs"], json!(2));
    }

    fn windowed(requests: u64, start: f64, end: f64) -> Value {
        let mut r = run(&[10; 4], requests);
        r["duration_s"] = json!(end - start);
        r["requests_per_s"] = json!(requests as f64 / (end - start));
        r["window"] = json!({"start_unix_s": start, "end_unix_s": end});
        r
    }

    fn warnings(m: &Value) -> Vec<String> {
        serde_json::from_value(m["merged"]["warnings"].clone()).unwrap()
    }

    /// Runs started together: rates add up over the common window, no warning, totals exact.
    #[test]
    fn overlapping_windows_sum_rates_over_the_common_window() {
        let t = 1_796_526_000.0;
        let a = windowed(1000, t, t + 10.0);
        let b = windowed(3000, t + 0.25, t + 10.25);
        let m = merge(&[("a".into(), a), ("b".into(), b)]).unwrap();
        assert_eq!(m["requests"], json!(4000));
        assert_eq!(m["requests_per_s"], json!(400.0));
        assert_eq!(m["duration_s"], json!(9.75));
        assert_eq!(m["merged"]["window"]["overlap"], json!(true));
        assert_eq!(m["merged"]["window"]["common_s"], json!(9.75));
        assert_eq!(m["merged"]["window"]["start_spread_s"], json!(0.25));
        assert!(warnings(&m).is_empty(), "{:?}", warnings(&m));
        assert!(
            m.get("window").is_none(),
            "no single run's window stands for all"
        );
    }

    /// With per-interval rows, the rate is what the runs did inside the common window: a run
    /// that only ramped up there counts for that, not for its average over its own window.
    #[test]
    fn interval_rows_count_what_happened_in_the_common_window() {
        let t = 1_796_526_000.0;
        let row = |start_s: f64, requests: u64| {
            json!({"start_s": start_s, "duration_s": 1.0, "warmup": false,
                   "requests": requests, "bytes_per_s": requests as f64 * 64.0})
        };
        // a: 4 s at 100/s. b starts 2 s later (after 1 s of warm-up) and does all of its
        // 1000 requests in its first 2 s, inside the common window, then nothing.
        let mut a = windowed(400, t, t + 4.0);
        a["warmup_s"] = json!(0.0);
        a["intervals"] = json!([row(0.0, 100), row(1.0, 100), row(2.0, 100), row(3.0, 100)]);
        let mut b = windowed(1000, t + 2.0, t + 6.0);
        b["warmup_s"] = json!(1.0);
        b["intervals"] = json!([
            {"start_s": 0.0, "duration_s": 1.0, "warmup": true, "requests": 0, "bytes_per_s": 0.0},
            row(1.0, 500), row(2.0, 500), row(3.0, 0), row(4.0, 0)
        ]);
        let m = merge(&[("a".into(), a), ("b".into(), b)]).unwrap();
        assert_eq!(m["duration_s"], json!(2.0));
        assert_eq!(m["merged"]["window"]["rates_from"], json!("intervals"));
        // In [t+2, t+4]: a did 200, b did 1000: 600/s, where the runs' averages sum to 350/s.
        assert_eq!(m["requests_per_s"], json!(600.0));
        assert_eq!(m["bytes_per_s"], json!(600.0 * 64.0));
        assert_eq!(m["requests"], json!(1400), "totals stay the sum");
    }

    /// Runs that only partly overlap are merged with a warning that names the overlap.
    #[test]
    fn partly_overlapping_windows_warn() {
        let t = 1_796_526_000.0;
        let a = windowed(1000, t, t + 10.0);
        let b = windowed(1000, t + 5.0, t + 15.0);
        let m = merge(&[("a".into(), a), ("b".into(), b)]).unwrap();
        assert_eq!(m["duration_s"], json!(5.0));
        assert_eq!(m["requests_per_s"], json!(200.0));
        let w = warnings(&m);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("overlap for 5.000 s only, 50%"), "{}", w[0]);
    }

    /// Runs one after the other never loaded the target together: warned, and the rate is
    /// the total over the whole span, not the sum of the runs' rates.
    #[test]
    fn disjoint_windows_warn_and_rate_over_the_span() {
        let t = 1_796_526_000.0;
        let a = windowed(1000, t, t + 10.0);
        let b = windowed(3000, t + 30.0, t + 40.0);
        let m = merge(&[("a".into(), a), ("b".into(), b)]).unwrap();
        assert_eq!(m["requests"], json!(4000), "totals stay exact");
        assert_eq!(
            m["requests_per_s"],
            json!(100.0),
            "4000 over 40 s, not 100 + 300"
        );
        assert_eq!(m["duration_s"], json!(40.0));
        assert_eq!(m["merged"]["window"]["overlap"], json!(false));
        assert_eq!(m["merged"]["window"]["common_s"], json!(0.0));
        let w = warnings(&m);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("do not overlap (a gap of 20.000 s)"),
            "{}",
            w[0]
        );
        let h = histogram::decode(m["histograms"]["latency_us"].as_str().unwrap()).unwrap();
        assert_eq!(h.len(), 8, "histograms stay exact");
    }

    /// Reports without a window (older versions) still merge, with a warning.
    #[test]
    fn reports_without_windows_merge_with_a_warning() {
        let m = merge(&[("a".into(), run(&[1], 1)), ("b".into(), run(&[2], 1))]).unwrap();
        assert_eq!(m["duration_s"], json!(2.0));
        assert!(warnings(&m)[0].starts_with("a: no measured window"));
    }

    #[test]
    fn refuses_mixed_modes_and_missing_histograms() {
        let mut other = run(&[1], 1);
        other["mode"] = json!("pingpong");
        assert!(merge(&[("a".into(), run(&[1], 1)), ("b".into(), other)]).is_err());
        let mut bare = run(&[1], 1);
        bare.as_object_mut().unwrap().remove("histograms");
        assert!(merge(&[("a".into(), run(&[1], 1)), ("b".into(), bare.clone())]).is_err());
        assert!(merge(&[("a".into(), bare)]).is_err());
        assert!(merge(&[]).is_err());
    }
}
