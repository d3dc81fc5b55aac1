//! The result of a run and its two renderings: a few aligned lines for people, one JSON
//! object for scripts (schema in [`Report::to_json`]), plus the exit-code policy.

use super::histogram;
use super::interval::IntervalRow;
use super::options::{Mode, Options, SizeSpec};
use super::stats::{Cause, Stats};
use super::sysinfo::{self, CpuTime};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// Exit code for a clean run.
pub const EXIT_OK: i32 = 0;
/// Exit code when verification failed (a corrupted, lost or extra byte or datagram) or no
/// connection could be made at all.
pub const EXIT_FAILED: i32 = 1;
/// Exit code for usage errors (bad flags or target); clap uses it too.
pub const EXIT_USAGE: i32 = 2;
/// Exit code when UDP loss exceeded `--max-loss`.
pub const EXIT_LOSS: i32 = 3;
/// Exit code when more connects failed than `--max-connect-errors` allows.
pub const EXIT_CONNECT: i32 = 4;
/// Exit code of `knee` when not even the lowest rate tried met the target.
pub const EXIT_NO_KNEE: i32 = 5;
/// Exit code base for a run stopped by a signal (plus the signal number: 130 for SIGINT,
/// 143 for SIGTERM), when nothing worse happened.
pub const EXIT_SIGNAL_BASE: i32 = 128;

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
    /// When the run started.
    pub started_at: SystemTime,
}

impl RunInfo {
    /// Collects the facts for `command_line`, for a run that started at `started_at`.
    pub fn collect(command_line: &str, started_at: SystemTime) -> RunInfo {
        RunInfo {
            command_line: command_line.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            cpu_model: sysinfo::cpu_model(),
            kernel: sysinfo::kernel(),
            started_at,
        }
    }

    /// The `run` block of the JSON reports.
    pub fn to_json(&self) -> Value {
        json!({
            "tool": "echoloop-bench",
            "version": self.version,
            "command_line": self.command_line,
            "started_at": iso8601(self.started_at),
            "cpu_model": self.cpu_model,
            "kernel": self.kernel,
        })
    }
}

/// `2026-11-26T01:56:59.123Z`: UTC, millisecond precision (no time-zone database needed).
pub fn iso8601(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The `window` block: when measuring began and ended on the wall clock, as timestamps for
/// people and Unix seconds (microsecond precision) for `merge`.
pub fn window_json(start: SystemTime, length: Duration) -> Value {
    let end = start + length;
    let unix = |t: SystemTime| {
        let s = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        (s.as_secs_f64() * 1e6).round() / 1e6
    };
    json!({
        "start": iso8601(start),
        "end": iso8601(end),
        "start_unix_s": unix(start),
        "end_unix_s": unix(end),
    })
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
    /// The run was stopped early (a signal): the figures cover `measured` only.
    pub interrupted: bool,
    /// The measured window: `options.duration`, or less when interrupted.
    pub measured: Duration,
    /// Wall time from start to the end of the drain.
    pub elapsed: Duration,
    /// Per-interval rows, when `--interval` was given.
    pub intervals: Vec<IntervalRow>,
    /// CPU time the generator process used during the run.
    pub cpu: CpuTime,
    /// Machine and command facts.
    pub run: RunInfo,
}

/// The percentile block used for every latency in the JSON reports.
pub fn percentiles(h: &Histogram<u64>) -> Value {
    json!({
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
        "mean": (h.mean() * 10.0).round() / 10.0,
    })
}

/// The connect-time block of the JSON reports.
pub fn connect_percentiles(h: &Histogram<u64>) -> Value {
    json!({
        "p50": h.value_at_quantile(0.50),
        "p99": h.value_at_quantile(0.99),
        "max": h.max(),
    })
}

/// `--size` in the JSON: a number, or `{min, max}` for a range.
pub fn size_json(size: SizeSpec) -> Value {
    match size {
        SizeSpec::Fixed(n) => json!(n),
        SizeSpec::Range { min, max } => json!({ "min": min, "max": max }),
    }
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Report {
    /// The measured window in seconds (the warm-up excluded; shorter when interrupted).
    pub fn duration_s(&self) -> f64 {
        self.measured.as_secs_f64()
    }

    /// Round trips measured per second (0 when nothing was measured).
    pub fn requests_per_s(&self) -> f64 {
        per_second(self.stats.requests, self.measured)
    }

    /// Echoed payload bytes of measured round trips per second (one direction).
    pub fn bytes_per_s(&self) -> f64 {
        per_second(self.stats.measured_bytes, self.measured)
    }

    /// UDP loss in percent of the datagrams sent.
    pub fn loss_percent(&self) -> f64 {
        let u = &self.stats.udp;
        if u.sent == 0 {
            0.0
        } else {
            u.lost as f64 * 100.0 / u.sent as f64
        }
    }

    /// Rate modes report both latencies: from the intended and from the actual send time.
    fn is_open_loop(&self) -> bool {
        matches!(
            self.options.mode,
            Mode::Rate { .. } | Mode::Udp { rate: Some(_), .. }
        )
    }

    /// Why the run failed, if it did, with the exit code that says so: verification errors
    /// or nothing got through at all (1), UDP loss above the limit (3), more failed connects
    /// than allowed (4). The first that applies wins.
    pub fn verdict(&self) -> Option<(i32, String)> {
        let s = &self.stats;
        let o = &self.options;
        let target = o.target;
        if s.connections_opened == 0 {
            let why = s
                .first_connect_error
                .as_deref()
                .unwrap_or("no connect attempt completed");
            return Some((
                EXIT_FAILED,
                format!(
                    "no connection could be made to {target}: {why}{}",
                    hint_for(why)
                ),
            ));
        }
        let udp = matches!(o.mode, Mode::Udp { .. });
        if udp && s.udp.sent > 0 && s.udp.received == 0 {
            let why = s
                .first_connect_error
                .as_deref()
                .unwrap_or("is an echo server listening there?");
            return Some((
                EXIT_FAILED,
                format!("no datagram came back from {target}: {why}"),
            ));
        }
        if s.errors.verify > 0 {
            let e = &s.errors;
            return Some((
                EXIT_FAILED,
                format!(
                    "verification failed: {} mismatches, {} bytes lost, {} extra bytes; {}",
                    e.mismatches,
                    e.lost_bytes,
                    e.extra_bytes,
                    causes_text(&e.causes)
                ),
            ));
        }
        if udp && self.loss_percent() > o.loss_limit() {
            return Some((
                EXIT_LOSS,
                format!(
                    "datagram loss {:.3}% ({} of {}) is above --max-loss {}%",
                    self.loss_percent(),
                    s.udp.lost,
                    s.udp.sent,
                    o.loss_limit()
                ),
            ));
        }
        if s.errors.connect > o.max_connect_errors {
            return Some((
                EXIT_CONNECT,
                format!(
                    "{} connects failed (--max-connect-errors {}): {}{}",
                    s.errors.connect,
                    o.max_connect_errors,
                    causes_text(&s.errors.causes),
                    hint_for(s.first_connect_error.as_deref().unwrap_or(""))
                ),
            ));
        }
        None
    }

    /// Why the run failed, if it did (see [`verdict`](Self::verdict)).
    pub fn failure(&self) -> Option<String> {
        self.verdict().map(|(_, why)| why)
    }

    /// The process exit code for this result (an interrupted run's code is the binary's
    /// business: it knows the signal).
    pub fn exit_code(&self) -> i32 {
        self.verdict().map_or(EXIT_OK, |(code, _)| code)
    }

    /// The JSON report: one object. Latencies in microseconds.
    ///
    /// Always present: `mode`, `target`, `connections`, `threads`, `size` (a number, or
    /// `{min,max}`), `duration_s` (measured; shorter when interrupted), `warmup_s`,
    /// `elapsed_s`, `interrupted`, `requests`, `requests_per_s`, `bytes_per_s`,
    /// `latency_us {p50,p90,p99,p999,max,mean}`, `connect_us {p50,p99,max}`,
    /// `errors {verify,connect,io,mismatches,lost_bytes,extra_bytes}`,
    /// `totals {bytes_sent,bytes_received,connections}`, `cpu {user_s,sys_s}`,
    /// `histograms {latency_us,latency_uncorrected_us,schedule_error_us,connect_us}`
    /// (base64 V2 compressed HdrHistograms, for `merge`), `exit_code`,
    /// `run {tool,version,command_line,started_at,cpu_model,kernel}`,
    /// `window {start,end,start_unix_s,end_unix_s}` (the measured window on the wall clock,
    /// which `merge` lines up across runs).
    /// Per mode: `depth` (pipeline), `window` (stream, udp without rate), `rate`,
    /// `late_sends`, `latency_uncorrected_us` and `schedule_error_us` (rate, udp with rate),
    /// `connections_per_s` (churn), `sockets`, `loss_percent`, `max_loss_percent` and
    /// `udp {sent,received,lost,duplicates,reordered}` (udp); `intervals` with `--interval`.
    pub fn to_json(&self) -> Value {
        let s = &self.stats;
        let o = &self.options;
        let mut v = json!({
            "mode": o.mode.name(),
            "target": o.target.to_string(),
            "connections": o.connections,
            "threads": self.threads,
            "size": size_json(o.size),
            "duration_s": self.duration_s(),
            "interrupted": self.interrupted,
            "warmup_s": o.warmup.as_secs_f64(),
            "elapsed_s": round2(self.elapsed.as_secs_f64()),
            "requests": s.requests,
            "requests_per_s": round2(self.requests_per_s()),
            "bytes_per_s": round2(self.bytes_per_s()),
            "latency_us": percentiles(&s.latency),
            "connect_us": connect_percentiles(&s.connect),
            "errors": {
                "verify": s.errors.verify,
                "connect": s.errors.connect,
                "io": s.errors.io,
                "mismatches": s.errors.mismatches,
                "lost_bytes": s.errors.lost_bytes,
                "extra_bytes": s.errors.extra_bytes,
                "causes": s.errors.causes.iter().map(|c| json!({
                    "kind": c.class.name(),
                    "cause": c.text(),
                    "count": c.count,
                })).collect::<Vec<_>>(),
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
            "histograms": {
                "latency_us": histogram::encode(&s.latency),
                "latency_uncorrected_us": histogram::encode(&s.latency_uncorrected),
                "schedule_error_us": histogram::encode(&s.schedule_error),
                "connect_us": histogram::encode(&s.connect),
            },
            "exit_code": self.exit_code(),
            "run": self.run.to_json(),
            "window": window_json(self.run.started_at + o.warmup, self.measured),
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
                "sockets": o.connections,
                "loss_percent": self.loss_percent(),
                "max_loss_percent": o.loss_limit(),
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
                map.insert("schedule_error_us".into(), percentiles(&s.schedule_error));
            }
            if o.interval.is_some() {
                let rows = self.intervals.iter().map(IntervalRow::to_json).collect();
                map.insert("intervals".into(), Value::Array(rows));
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
        let udp = matches!(o.mode, Mode::Udp { .. });
        let _ = writeln!(
            out,
            "{} -> {}: {} {}, {} thread(s), size {}{}, {:.2} s (+{:.2} s warm-up){}",
            o.mode.name(),
            o.target,
            o.connections,
            if udp { "sockets" } else { "connections" },
            self.threads,
            o.size_text,
            detail,
            self.duration_s(),
            o.warmup.as_secs_f64(),
            if self.interrupted {
                "  INTERRUPTED: figures cover the time it ran"
            } else {
                ""
            }
        );
        let what = match o.mode {
            Mode::Churn => "conns",
            Mode::Udp { .. } => "datagrams",
            _ => "requests",
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
            let _ = writeln!(
                out,
                "  {:<12} {}  (the generator's own delay, intended to actual send time)",
                "sched err us",
                lat(&s.schedule_error)
            );
            let _ = writeln!(out, "  {:<12} {} (over 1 ms)", "late sends", s.late_sends);
        }
        let _ = writeln!(
            out,
            "  {:<12} p50 {}  p99 {}  max {}",
            if udp { "socket us" } else { "connect us" },
            s.connect.value_at_quantile(0.5),
            s.connect.value_at_quantile(0.99),
            s.connect.max()
        );
        if let Mode::Udp { .. } = o.mode {
            let u = &s.udp;
            let _ = writeln!(
                out,
                "  {:<12} sent {}  received {}  lost {} ({:.3}%)  duplicates {}  reordered {}",
                "udp",
                u.sent,
                u.received,
                u.lost,
                self.loss_percent(),
                u.duplicates,
                u.reordered
            );
        }
        let _ = writeln!(
            out,
            "  {:<12} sent {} B  received {} B  {} {}",
            "totals",
            s.bytes_sent,
            s.bytes_received,
            if udp { "sockets" } else { "connections" },
            s.connections_opened
        );
        let e = &s.errors;
        let _ = writeln!(
            out,
            "  {:<12} verify {}  {} {}  io {}  (mismatches {}, lost {} B, extra {} B)",
            "errors",
            e.verify,
            if udp { "refused" } else { "connect" },
            e.connect,
            e.io,
            e.mismatches,
            e.lost_bytes,
            e.extra_bytes
        );
        for c in &e.causes {
            let _ = writeln!(
                out,
                "  {:<12} {} x{}: {}",
                "",
                c.class.name(),
                c.count,
                c.text()
            );
        }
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

/// The causes as one phrase: `causes: io: Connection reset by peer (os error 104) x3; ...`.
pub fn causes_text(causes: &[Cause]) -> String {
    if causes.is_empty() {
        return "no cause recorded".into();
    }
    let parts: Vec<String> = causes
        .iter()
        .map(|c| format!("{} x{}: {}", c.class.name(), c.count, c.text()))
        .collect();
    format!("causes: {}", parts.join("; "))
}

/// What to change, for the errors a user can fix on the client's side; empty otherwise.
/// EADDRNOTAVAIL is what a generator meets first at tens of thousands of connections.
pub fn hint_for(error: &str) -> &'static str {
    if error.contains("os error 99") {
        "\n  hint: EADDRNOTAVAIL: no local port was free for another connection to this address: \
         the ephemeral ports (net.ipv4.ip_local_port_range) are used up, many of them held in \
         TIME_WAIT by connections closed in the last minute. Widen the range (sysctl \
         net.ipv4.ip_local_port_range=\"1024 65535\"), let new connections reuse TIME_WAIT ports \
         (sysctl net.ipv4.tcp_tw_reuse=1), connect from more source addresses (each has its own \
         ports; or use more target addresses), open fewer connections, or wait a minute"
    } else if error.contains("os error 24") {
        "\n  hint: EMFILE: out of file descriptors (one per connection): raise `ulimit -n`"
    } else {
        ""
    }
}

fn per_second(count: u64, window: Duration) -> f64 {
    if window.is_zero() {
        0.0
    } else {
        count as f64 / window.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The errors a user fixes on the client's side come with what to change.
    #[test]
    fn eaddrnotavail_says_what_to_change() {
        let hint = hint_for("Cannot assign requested address (os error 99)");
        for what in [
            "ip_local_port_range",
            "TIME_WAIT",
            "tcp_tw_reuse",
            "source addresses",
            "fewer connections",
        ] {
            assert!(hint.contains(what), "{what} missing from {hint}");
        }
        assert_eq!(hint_for("Connection refused (os error 111)"), "");
    }

    #[test]
    fn iso8601_dates() {
        let at = |s: u64| iso8601(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_795_657_019), "2026-11-26T01:36:59.000Z");
    }
}
