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
//! - [`stats`]: histograms and counters of one thread, merged at the end (sans-IO).
//! - `worker`: one thread's mio loop for the TCP modes.
//! - [`udp`]: sequence tracking (sans-IO) and the thread loop for UDP mode.
//! - [`report`]: the merged result, human and JSON output, exit codes.
//! - [`sysinfo`]: CPU model, kernel, process CPU time.
//! - [`ping`], [`time_client`]: the tutorials' clients as tools (`ping`, `time`): one
//!   blocking socket each, not part of the load machinery.
//!
//! Timing of a run: connections open at `start`; traffic before `start + warmup` is sent and
//! verified but not measured; at `start + warmup + duration` no new message is admitted,
//! outstanding echoes are awaited (bounded by `drain_timeout`), then connections close.

pub mod conn;
pub mod options;
pub mod payload;
pub mod ping;
pub mod report;
pub mod schedule;
pub mod stats;
pub mod sysinfo;
pub mod time_client;
pub mod udp;
mod worker;

pub use options::{Mode, OptionError, Options, SizeSpec};
pub use report::{Report, RunInfo};
pub use stats::Progress;

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};
use sysinfo::CpuTime;

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
    opts.validate()?;
    let cpu_before = CpuTime::now();
    let start = Instant::now();
    let plans = plans(opts, start);
    let progress: Vec<Progress> = plans.iter().map(|_| Progress::default()).collect();
    let results: Vec<std::thread::Result<io::Result<stats::Stats>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = plans
            .iter()
            .zip(&progress)
            .enumerate()
            .map(|(i, (plan, progress))| {
                std::thread::Builder::new()
                    .name(format!("bench-{i}"))
                    .spawn_scoped(scope, move || match opts.mode {
                        Mode::Udp { window, .. } => udp::run(opts, plan, window, progress),
                        _ => worker::run(opts, plan, progress),
                    })
            })
            .collect();
        if opts.progress {
            show_progress(opts, start, &handles, &progress);
        }
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join(),
                Err(e) => Ok(Err(e)),
            })
            .collect()
    });
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
    Ok(Report {
        options: opts.clone(),
        threads: plans.len(),
        stats: merged,
        elapsed,
        cpu,
        run: RunInfo::collect(&opts.command_line),
    })
}

/// Prints a progress line on stderr once a second while the workers run, only when stderr
/// is a terminal (so logs and pipes stay clean).
fn show_progress<T>(
    opts: &Options,
    start: Instant,
    handles: &[io::Result<std::thread::ScopedJoinHandle<'_, T>>],
    progress: &[Progress],
) {
    use std::sync::atomic::Ordering::Relaxed;
    if !io::stderr().is_terminal() {
        return;
    }
    let running = || {
        handles
            .iter()
            .any(|h| h.as_ref().is_ok_and(|h| !h.is_finished()))
    };
    let (mut last_rt, mut last_bytes, mut next) = (0u64, 0u64, start + Duration::from_secs(1));
    // Bounded by the workers, which stop by themselves; we only watch.
    while running() {
        std::thread::sleep(Duration::from_millis(50));
        let now = Instant::now();
        if now < next {
            continue;
        }
        next += Duration::from_secs(1);
        let rt: u64 = progress.iter().map(|p| p.round_trips.load(Relaxed)).sum();
        let bytes: u64 = progress
            .iter()
            .map(|p| p.bytes_received.load(Relaxed))
            .sum();
        let errors: u64 = progress.iter().map(|p| p.errors.load(Relaxed)).sum();
        let t = (now - start).as_secs_f64();
        let phase = if now < start + opts.warmup {
            " (warm-up)"
        } else {
            ""
        };
        let mut err = io::stderr().lock();
        let _ = write!(
            err,
            "\r[{t:5.1}s] {:>10} rt/s  {:>8.2} MiB/s  errors {errors}{phase}   ",
            rt - last_rt,
            (bytes - last_bytes) as f64 / (1024.0 * 1024.0)
        );
        let _ = err.flush();
        (last_rt, last_bytes) = (rt, bytes);
    }
    let _ = writeln!(io::stderr());
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
