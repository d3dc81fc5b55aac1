//! The result of a run and its two renderings: a few aligned lines for people, one JSON
//! object for scripts (schema in [`Report::to_json`]), plus the exit-code policy.

use super::options::{Mode, Options};
use super::stats::Stats;
use super::sysinfo::{self, CpuTime};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::Duration;

/// Exit code for a clean run.
pub const EXIT_OK: i32 = 0;
/// Exit code when verification failed or no connection could be made.
pub const EXIT_FAILED: i32 = 1;
/// Exit code for usage errors (bad flags or target); clap uses it too.
pub const EXIT_USAGE: i32 = 2;

/// Where and how the run was made.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The command line as given.
    pub command_line: String,
    /// echoloop version.
    pub version: String,
    /// CPU model of the machine.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
}

impl RunInfo {
    /// Collects the facts for `command_line`.
    pub fn collect(command_line: &str) -> RunInfo {
        RunInfo {
            command_line: command_line.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            cpu_model: sysinfo::cpu_model(),
            kernel: sysinfo::kernel(),
        }
    }
}

/// Everything a run measured, merged over threads.
#[derive(Debug, Clone)]
pub struct Report {
    /// The options the run used.
    pub options: Options,
    /// Worker threads actually started (never more than the connections).
    pub threads: usize,
    /// Merged measurements.
    pub stats: Stats,
    /// Wall time from start to the end of the drain.
    pub elapsed: Duration,
    /// CPU time the generator process used during the run.
    pub cpu: CpuTime,
    /// Machine and command facts.
    pub run: RunInfo,
}

fn percentiles(h: &Histogram<u64>) -> Value {
    json!({
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
        "mean": (h.mean() * 10.0).round() / 10.0,
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Report {
    /// The measured window in seconds (the warm-up excluded).
    pub fn duration_s(&self) -> f64 {
        self.options.duration.as_secs_f64()
    }

    /// Round trips measured per second.
    pub fn requests_per_s(&self) -> f64 {
        self.stats.requests as f64 / self.duration_s()
    }

    /// Echoed payload bytes of measured round trips per second (one direction).
    pub fn bytes_per_s(&self) -> f64 {
        self.stats.measured_bytes as f64 / self.duration_s()
    }

    /// Rate modes report both latencies: from the intended and from the actual send time.
    fn is_open_loop(&self) -> bool {
        matches!(
            self.options.mode,
            Mode::Rate { .. } | Mode::Udp { rate: Some(_), .. }
        )
    }

    /// Why the run failed, if it did: verification errors, or nothing got through at all.
    pub fn failure(&self) -> Option<String> {
        let s = &self.stats;
        let target = self.options.target;
        if s.connections_opened == 0 {
            let why = s
                .first_connect_error
                .as_deref()
                .unwrap_or("no connect attempt completed");
            return Some(format!("no connection could be made to {target}: {why}"));
        }
        if let Mode::Udp { .. } = self.options.mode {
            if s.udp.sent > 0 && s.udp.received == 0 {
                let why = s
                    .first_connect_error
                    .as_deref()
                    .unwrap_or("is an echo server listening there?");
                return Some(format!("no datagram came back from {target}: {why}"));
            }
        }
        if s.errors.verify > 0 {
            let e = &s.errors;
            return Some(format!(
                "verification failed: {} mismatches, {} bytes lost, {} extra bytes",
                e.mismatches, e.lost_bytes, e.extra_bytes
            ));
        }
        None
    }

    /// The process exit code for this result.
    pub fn exit_code(&self) -> i32 {
        if self.failure().is_some() {
            EXIT_FAILED
        } else {
            EXIT_OK
        }
    }

    /// The JSON report: one object. Latencies in microseconds.
    ///
    /// Always present: `mode`, `target`, `connections`, `threads`, `size`, `duration_s`,
    /// `warmup_s`, `elapsed_s`, `requests`, `requests_per_s`, `bytes_per_s`,
    /// `latency_us {p50,p90,p99,p999,max,mean}`, `connect_us {p50,p99,max}`,
    /// `errors {verify,connect,io,mismatches,lost_bytes,extra_bytes}`,
    /// `totals {bytes_sent,bytes_received,connections}`, `cpu {user_s,sys_s}`,
    /// `run {command_line,version,cpu_model,kernel}`.
    /// Per mode: `depth` (pipeline), `window` (stream, udp without rate), `rate`,
    /// `late_sends` and `latency_uncorrected_us` (rate, udp with rate), `connections_per_s`
    /// (churn), `udp {sent,received,lost,duplicates,reordered}` (udp).
    pub fn to_json(&self) -> Value {
        let s = &self.stats;
        let o = &self.options;
        let mut v = json!({
            "mode": o.mode.name(),
            "target": o.target.to_string(),
            "connections": o.connections,
            "threads": self.threads,
            "size": o.size_text,
            "duration_s": self.duration_s(),
            "warmup_s": o.warmup.as_secs_f64(),
            "elapsed_s": round2(self.elapsed.as_secs_f64()),
            "requests": s.requests,
            "requests_per_s": round2(self.requests_per_s()),
            "bytes_per_s": round2(self.bytes_per_s()),
            "latency_us": percentiles(&s.latency),
            "connect_us": {
                "p50": s.connect.value_at_quantile(0.50),
                "p99": s.connect.value_at_quantile(0.99),
                "max": s.connect.max(),
            },
            "errors": {
                "verify": s.errors.verify,
                "connect": s.errors.connect,
                "io": s.errors.io,
                "mismatches": s.errors.mismatches,
                "lost_bytes": s.errors.lost_bytes,
                "extra_bytes": s.errors.extra_bytes,
            },
            "totals": {
                "bytes_sent": s.bytes_sent,
                "bytes_received": s.bytes_received,
                "connections": s.connections_opened,
            },
            "cpu": {
                "user_s": round2(self.cpu.user.as_secs_f64()),
                "sys_s": round2(self.cpu.sys.as_secs_f64()),
            },
            "run": {
                "command_line": self.run.command_line,
                "version": self.run.version,
                "cpu_model": self.run.cpu_model,
                "kernel": self.run.kernel,
            },
        });
        let extra = match o.mode {
            Mode::PingPong => json!({}),
            Mode::Pipeline { depth } => json!({ "depth": depth }),
            Mode::Stream { window } => json!({ "window": window }),
            Mode::Rate { rate } => json!({ "rate": rate }),
            Mode::Churn => json!({ "connections_per_s": round2(self.requests_per_s()) }),
            Mode::Udp { window, rate } => json!({
                "window": if rate.is_some() { Value::Null } else { json!(window) },
                "rate": rate,
                "udp": {
                    "sent": s.udp.sent,
                    "received": s.udp.received,
                    "lost": s.udp.lost,
                    "duplicates": s.udp.duplicates,
                    "reordered": s.udp.reordered,
                },
            }),
        };
        if let (Value::Object(map), Value::Object(more)) = (&mut v, extra) {
            map.extend(more);
            if self.is_open_loop() {
                map.insert("late_sends".into(), json!(s.late_sends));
                map.insert(
                    "latency_uncorrected_us".into(),
                    percentiles(&s.latency_uncorrected),
                );
            }
        }
        v
    }

    /// A few aligned lines for a terminal.
    pub fn human(&self) -> String {
        let s = &self.stats;
        let o = &self.options;
        let mut out = String::new();
        let lat = |h: &Histogram<u64>| {
            format!(
                "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.9),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max()
            )
        };
        let detail = match o.mode {
            Mode::Pipeline { depth } => format!(", depth {depth}"),
            Mode::Stream { window } => format!(", window {window} B"),
            Mode::Rate { rate } => format!(", rate {rate}/s"),
            Mode::Udp { rate: Some(r), .. } => format!(", rate {r}/s"),
            Mode::Udp { window, .. } => format!(", window {window}"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{} -> {}: {} connections, {} thread(s), size {}{}, {:.2} s (+{:.2} s warm-up)",
            o.mode.name(),
            o.target,
            o.connections,
            self.threads,
            o.size_text,
            detail,
            self.duration_s(),
            o.warmup.as_secs_f64()
        );
        let what = if let Mode::Churn = o.mode {
            "conns"
        } else {
            "requests"
        };
        let _ = writeln!(
            out,
            "  {:<12} {}  ({:.1}/s, {:.2} MiB/s echoed)",
            what,
            s.requests,
            self.requests_per_s(),
            self.bytes_per_s() / (1024.0 * 1024.0)
        );
        let _ = writeln!(out, "  {:<12} {}", "latency us", lat(&s.latency));
        if self.is_open_loop() {
            let _ = writeln!(
                out,
                "  {:<12} {}",
                "uncorrected",
                lat(&s.latency_uncorrected)
            );
            let _ = writeln!(out, "  {:<12} {}", "late sends", s.late_sends);
        }
        let _ = writeln!(
            out,
            "  {:<12} p50 {}  p99 {}  max {}",
            "connect us",
            s.connect.value_at_quantile(0.5),
            s.connect.value_at_quantile(0.99),
            s.connect.max()
        );
        if let Mode::Udp { .. } = o.mode {
            let u = &s.udp;
            let _ = writeln!(
                out,
                "  {:<12} sent {}  received {}  lost {}  duplicates {}  reordered {}",
                "datagrams", u.sent, u.received, u.lost, u.duplicates, u.reordered
            );
        }
        let _ = writeln!(
            out,
            "  {:<12} sent {} B  received {} B  connections {}",
            "totals", s.bytes_sent, s.bytes_received, s.connections_opened
        );
        let e = &s.errors;
        let _ = writeln!(
            out,
            "  {:<12} verify {}  connect {}  io {}  (mismatches {}, lost {} B, extra {} B)",
            "errors", e.verify, e.connect, e.io, e.mismatches, e.lost_bytes, e.extra_bytes
        );
        let _ = writeln!(
            out,
            "  {:<12} user {:.2} s  sys {:.2} s  (wall {:.2} s)",
            "cpu",
            self.cpu.user.as_secs_f64(),
            self.cpu.sys.as_secs_f64(),
            self.elapsed.as_secs_f64()
        );
        out
    }
}
