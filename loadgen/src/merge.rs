//! `echoloop-bench merge`: several runs' JSON reports combined into one, exactly.
//!
//! Percentiles cannot be averaged, but histograms can be added: each report embeds its
//! HdrHistograms (V2 compressed, base64), and the merged report's percentiles come from
//! their sum. Counts and bytes are summed. The runs are taken to be concurrent (K generator
//! processes against one target, on one machine or several), so rates add up and the
//! merged duration is the longest one. Per-interval rows are dropped: the processes'
//! clocks do not share interval boundaries.

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
    for key in ["duration_s", "elapsed_s"] {
        let longest = runs
            .iter()
            .filter_map(|(_, r)| r.get(key).and_then(Value::as_f64))
            .fold(0.0, f64::max);
        out[key] = json!(longest);
    }
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
    }
    let targets: Vec<Value> = runs.iter().map(|(_, r)| r["target"].clone()).collect();
    out["merged"] = json!({
        "runs": runs.len(),
        "sources": runs.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        "targets": targets,
        "command_lines": runs.iter().map(|(_, r)| r.pointer("/run/command_line").cloned().unwrap_or(Value::Null)).collect::<Vec<_>>(),
    });
    Ok(out)
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
