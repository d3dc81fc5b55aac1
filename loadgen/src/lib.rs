//! The echo load generator behind `echoloop-bench`: a client-side reactor that drives any
//! RFC 862 echo server (TCP or UDP), checks every echoed byte, and measures latency and
//! throughput.
//!
//! ```text
//!  run(options) --split--> thread 0: Poll + slab<conn>  --\
//!                          thread 1: Poll + slab<conn>  ----> merge Stats -> Report
//!                          ...                          --/
//!  per thread:  tick (phase, connects, rate timetable) -> poll -> read/verify/admit/write
//! ```
//!
//! Layout, in reading order:
//! - [`options`]: plain run options and the parsers for sizes, durations and rates.
//! - [`payload`]: the deterministic per-connection byte stream and its verifier (sans-IO).
//! - [`conn`]: one TCP connection's stream accounting: what to write, what is in flight,
//!   whether the echo is exact (sans-IO).
//! - [`schedule`]: the fixed-rate timetable for rate mode and the connect ramp (sans-IO).
//! - `pacer`: sub-millisecond waits for that timetable (timerfd in the poll set, short spin).
//! - [`stats`]: histograms and counters of one thread, merged at the end (sans-IO).
//! - [`interval`]: per-interval figures, handed from the workers to the main thread.
//! - `worker`: one thread's mio loop for the TCP modes.
//! - [`udp`]: sequence tracking (sans-IO) and the thread loop for UDP mode.
//! - [`report`]: the merged result, human and JSON output, exit codes.
//! - [`histogram`]: the latency histogram out (HdrHistogram formats) and back in.
//! - [`merge`]: several runs' JSON reports combined into one, exactly.
//! - [`knee`]: the search for the highest rate that meets a p99 target.
//! - [`sysinfo`]: CPU model, kernel, process CPU time, the start time.
//! - [`start_at`]: `--start-at`, a wall-clock start shared by several generators.
//! - [`check`]: `echoloop-bench check`, the conformance battery (not load: correctness).
//! - [`ping`], [`time_client`]: the tutorials' clients as tools (`ping`, `time`): one
//!   blocking socket each, not part of the load machinery.
//!
//! Timing of a run: with `--start-at`, nothing happens before that wall-clock time;
//! connections open at `start`; traffic before `start + warmup` is sent and
//! verified but not measured; at `start + warmup + duration` (or when the stop flag is
//! raised, e.g. by SIGINT) no new message is admitted, outstanding echoes are awaited
//! (bounded by `drain_timeout`, and by [`INTERRUPTED_DRAIN`] after a stop), then
//! connections close.

pub mod check;
pub mod conn;
pub mod histogram;
pub mod interval;
pub mod knee;
pub mod merge;
pub mod options;
mod pacer;
pub mod payload;
pub mod ping;
pub mod report;
pub mod schedule;
pub mod start_at;
pub mod stats;
pub mod sysinfo;
pub mod time_client;
pub mod udp;
mod worker;

pub use interval::IntervalRow;
pub use options::{Mode, OptionError, Options, SizeSpec};
pub use report::{Report, RunInfo};

use std::fmt;
use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use sysinfo::CpuTime;

/// After a stop (signal), how long in-flight echoes are awaited at most.
pub const INTERRUPTED_DRAIN: Duration = Duration::from_secs(1);
/// How often a worker looks at the stop flag while it would otherwise sleep.
pub(crate) const STOP_CHECK: Duration = Duration::from_millis(50);
/// The live progress line's interval when no `--interval` is given.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Why a run could not take place at all (a failed run still returns a [`Report`]).
#[derive(Debug)]
pub enum LoadgenError {
    /// The options are inconsistent.
    Options(OptionError),
    /// A worker could not set up its reactor (`Poll::new`), or its poll failed.
    Io(io::Error),
    /// A worker thread panicked (a bug).
    Panicked,
}

impl fmt::Display for LoadgenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadgenError::Options(e) => e.fmt(f),
            LoadgenError::Io(e) => write!(f, "reactor error: {e}"),
            LoadgenError::Panicked => f.write_str("a worker thread panicked"),
        }
    }
}

impl std::error::Error for LoadgenError {}

impl From<OptionError> for LoadgenError {
    fn from(e: OptionError) -> Self {
        LoadgenError::Options(e)
    }
}

/// One thread's share of the work.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Connections (or UDP sockets) this thread drives.
    pub connections: usize,
    /// Global number of its first connection, so payload keys are unique across threads.
    pub first_id: u64,
    /// This thread's share of the total rate, if open loop.
    pub rate: Option<f64>,
    /// This thread's share of the connect rate.
    pub connect_rate: Option<f64>,
    pub start: Instant,
    pub measure_start: Instant,
    pub end: Instant,
}

/// What the workers share with the main thread: the stop flag, and where interval samples go.
pub(crate) struct Shared<'a> {
    pub stop: &'a AtomicBool,
    samples: Option<(Duration, mpsc::Sender<interval::Sample>)>,
}

impl Shared<'_> {
    /// A ticker for a worker, when intervals are collected.
    pub(crate) fn ticker(&self, start: Instant) -> Option<interval::Ticker<'_>> {
        self.samples
            .as_ref()
            .map(|(every, tx)| interval::Ticker::new(start, *every, tx))
    }
}

/// Splits the work over threads: connections as evenly as possible (never a thread without
/// connections), rates in proportion to connections.
pub(crate) fn plans(opts: &Options, start: Instant) -> Vec<Plan> {
    let threads = opts.threads.min(opts.connections).max(1);
    let rate = match opts.mode {
        Mode::Rate { rate } => Some(rate),
        Mode::Udp { rate, .. } => rate,
        _ => None,
    };
    let measure_start = start + opts.warmup;
    let end = measure_start + opts.duration;
    let mut first_id = 0u64;
    (0..threads)
        .map(|i| {
            let n = opts.connections / threads + usize::from(i < opts.connections % threads);
            let share = n as f64 / opts.connections as f64;
            let plan = Plan {
                connections: n,
                first_id,
                rate: rate.map(|r| r * share),
                connect_rate: opts.connect_rate.map(|r| r / threads as f64),
                start,
                measure_start,
                end,
            };
            first_id += n as u64;
            plan
        })
        .collect()
}

/// Runs the load described by `opts` and returns what it measured.
///
/// Blocks for warm-up + duration + drain. Verification failures do not make this an
/// `Err`: they are in the report ([`Report::failure`], [`Report::exit_code`]).
pub fn run(opts: &Options) -> Result<Report, LoadgenError> {
    run_until(opts, &AtomicBool::new(false), &mut |_| {})
}

/// [`run`], stopped early when `stop` becomes true (the report then covers the time it ran
/// and says it was interrupted), calling `on_interval` with each interval's row as it
/// completes (every `opts.interval`, or every second when `opts.progress` is set).
pub fn run_until(
    opts: &Options,
    stop: &AtomicBool,
    on_interval: &mut dyn FnMut(&IntervalRow),
) -> Result<Report, LoadgenError> {
    opts.validate()?;
    if let Some(at) = opts.start_at {
        let late = start_at::wait_until(at, stop, STOP_CHECK);
        if late > start_at::LATE_WARNING {
            log::warn!(
                "started {:.1} s after --start-at: runs meant to start with this one have \
                 been measuring for that long (merge will say how much the windows overlap)",
                late.as_secs_f64()
            );
        }
    }
    let cpu_before = CpuTime::now();
    let started_at = std::time::SystemTime::now();
    let start = Instant::now();
    let plans = plans(opts, start);
    let every = opts.interval.or(opts.progress.then_some(PROGRESS_EVERY));
    let (tx, rx) = mpsc::channel();
    let shared = Shared {
        stop,
        samples: every.map(|e| (e, tx.clone())),
    };
    // `tx` stays alive to the end: without intervals the channel is then never
    // disconnected, so `recv_timeout` below waits instead of returning at once.
    let mut collector =
        every.map(|e| interval::Collector::new(start, start + opts.warmup, e, plans.len()));
    let mut rows = Vec::new();
    let results: Vec<std::thread::Result<io::Result<stats::Stats>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = plans
            .iter()
            .enumerate()
            .map(|(i, plan)| {
                let shared = &shared;
                std::thread::Builder::new()
                    .name(format!("bench-{i}"))
                    .spawn_scoped(scope, move || match opts.mode {
                        Mode::Udp { window, .. } => udp::run(opts, plan, window, shared),
                        _ => worker::run(opts, plan, shared),
                    })
            })
            .collect();
        // Bounded by the workers, which stop by themselves; the main thread only collects.
        let running = || {
            handles
                .iter()
                .any(|h| h.as_ref().is_ok_and(|h| !h.is_finished()))
        };
        let mut take = |sample, rows: &mut Vec<IntervalRow>| {
            if let Some(row) = collector.as_mut().and_then(|c| c.add(sample)) {
                // Every interval is whole but the last, which holds the few milliseconds of
                // the drain after the measured window: a rate over those is noise, so a last
                // interval under a quarter of the others is not shown (unless it has errors);
                // the JSON keeps it.
                let whole = every.map_or(true, |e| row.duration_s >= e.as_secs_f64() / 4.0);
                if whole || row.errors > 0 {
                    on_interval(&row);
                }
                rows.push(row);
            }
        };
        while running() {
            if let Ok(sample) = rx.recv_timeout(STOP_CHECK) {
                take(sample, &mut rows);
            }
        }
        while let Ok(sample) = rx.try_recv() {
            take(sample, &mut rows);
        }
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join(),
                Err(e) => Ok(Err(e)),
            })
            .collect()
    });
    if let Some(c) = &mut collector {
        rows.extend(c.rest());
    }
    let elapsed = start.elapsed();
    let cpu = CpuTime::now().since(&cpu_before);

    let mut merged = stats::Stats::new(start + opts.warmup);
    for r in results {
        match r {
            Ok(Ok(s)) => merged.merge(&s),
            Ok(Err(e)) => return Err(LoadgenError::Io(e)),
            Err(_) => return Err(LoadgenError::Panicked),
        }
    }
    // The measured window: the whole duration, or up to the stop.
    let measure_start = start + opts.warmup;
    let measured = match merged.stopped_at {
        Some(at) => at
            .saturating_duration_since(measure_start)
            .min(opts.duration),
        None => opts.duration,
    };
    Ok(Report {
        options: opts.clone(),
        threads: plans.len(),
        interrupted: merged.stopped_at.is_some(),
        stats: merged,
        measured,
        elapsed,
        cpu,
        intervals: if opts.interval.is_some() {
            rows
        } else {
            Vec::new()
        },
        run: RunInfo::collect(&opts.command_line, started_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_is_split_evenly_and_completely() {
        let addr = "127.0.0.1:7".parse().unwrap();
        let mut o = Options::new(Mode::Rate { rate: 1000.0 }, addr);
        o.connections = 10;
        o.threads = 3;
        let p = plans(&o, Instant::now());
        let counts: Vec<usize> = p.iter().map(|p| p.connections).collect();
        assert_eq!(counts, [4, 3, 3]);
        assert_eq!(p.iter().map(|p| p.first_id).collect::<Vec<_>>(), [0, 4, 7]);
        let total: f64 = p.iter().map(|p| p.rate.unwrap()).sum();
        assert!((total - 1000.0).abs() < 1e-6);
        // More threads than connections: no idle threads.
        o.threads = 16;
        o.connections = 2;
        assert_eq!(plans(&o, Instant::now()).len(), 2);
    }
}
