//! Per-interval figures (`--interval`, and the live progress line): each worker hands over
//! what completed in each interval, the main thread adds the threads' shares up and turns
//! them into rows.
//!
//! Intervals are numbered from the start of the run (warm-up included, marked as such):
//! interval k covers `[start + k*every, start + (k+1)*every)`, the same boundaries on every
//! thread, so the main thread can add them without any clock of its own. A round trip
//! belongs to the interval in which it completed. The last interval of a run is usually
//! shorter; its rates use its real length.

use super::stats::{Stats, Window};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// One thread's share of one interval.
#[derive(Debug)]
pub(crate) struct Sample {
    index: u64,
    /// When the thread closed this interval (the boundary, or the end of its run).
    end: Instant,
    window: Window,
}

/// One row of the interval series, all threads added up.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalRow {
    /// Start of the interval, seconds from the start of the run.
    pub start_s: f64,
    /// Its length in seconds (the last one may be shorter).
    pub duration_s: f64,
    /// The interval began during the warm-up.
    pub warmup: bool,
    /// Round trips completed in the interval.
    pub requests: u64,
    /// Echoed payload bytes of those round trips.
    pub bytes: u64,
    /// Corrected latency percentiles, microseconds.
    pub p50_us: u64,
    /// 99th percentile, microseconds.
    pub p99_us: u64,
    /// Errors counted in the interval.
    pub errors: u64,
}

impl IntervalRow {
    /// Round trips per second.
    pub fn requests_per_s(&self) -> f64 {
        self.requests as f64 / self.duration_s.max(1e-9)
    }

    /// One line for people: time, rate, throughput, latency, errors.
    pub fn line(&self) -> String {
        format!(
            "[{:6.1}s] {:>10.0} req/s {:>9.2} MiB/s  p50 {:>6} us  p99 {:>7} us  errors {}{}",
            self.start_s + self.duration_s,
            self.requests_per_s(),
            self.bytes as f64 / self.duration_s.max(1e-9) / (1024.0 * 1024.0),
            self.p50_us,
            self.p99_us,
            self.errors,
            if self.warmup { "  (warm-up)" } else { "" },
        )
    }

    /// The row in the JSON report's `intervals` array.
    pub fn to_json(&self) -> Value {
        let r2 = |x: f64| (x * 100.0).round() / 100.0;
        json!({
            "start_s": r2(self.start_s),
            "duration_s": r2(self.duration_s),
            "warmup": self.warmup,
            "requests": self.requests,
            "requests_per_s": r2(self.requests_per_s()),
            "bytes_per_s": r2(self.bytes as f64 / self.duration_s.max(1e-9)),
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "errors": self.errors,
        })
    }
}

/// A worker's side: closes intervals as their boundaries pass and sends them on.
pub(crate) struct Ticker<'a> {
    start: Instant,
    every: Duration,
    index: u64,
    errors_before: u64,
    tx: &'a Sender<Sample>,
}

impl<'a> Ticker<'a> {
    pub(crate) fn new(start: Instant, every: Duration, tx: &'a Sender<Sample>) -> Ticker<'a> {
        Ticker {
            start,
            every,
            index: 0,
            errors_before: 0,
            tx,
        }
    }

    /// The next boundary: a worker's poll must not sleep past it.
    pub(crate) fn next_due(&self) -> Instant {
        self.start
            + self
                .every
                .saturating_mul(u32::try_from(self.index + 1).unwrap_or(u32::MAX))
    }

    /// Closes every interval whose boundary is at or before `now`.
    pub(crate) fn tick(&mut self, now: Instant, stats: &mut Stats) {
        while now >= self.next_due() {
            let end = self.next_due();
            self.send(end, stats);
        }
    }

    /// Closes the last, partial interval at `now` (the end of this thread's run).
    pub(crate) fn finish(&mut self, now: Instant, stats: &mut Stats) {
        self.tick(now, stats);
        self.send(now, stats);
    }

    fn send(&mut self, end: Instant, stats: &mut Stats) {
        let window = stats.take_window(self.errors_before);
        self.errors_before = stats.error_count();
        // The receiver lives until every worker is joined; a send can only fail after a
        // panic there, and then the figures have nowhere to go anyway.
        let _ = self.tx.send(Sample {
            index: self.index,
            end,
            window,
        });
        self.index += 1;
    }
}

/// The main thread's side: adds the threads' samples of each interval.
pub(crate) struct Collector {
    start: Instant,
    measure_start: Instant,
    every: Duration,
    threads: usize,
    pending: BTreeMap<u64, (usize, Instant, Window)>,
}

impl Collector {
    pub(crate) fn new(
        start: Instant,
        measure_start: Instant,
        every: Duration,
        threads: usize,
    ) -> Collector {
        Collector {
            start,
            measure_start,
            every,
            threads,
            pending: BTreeMap::new(),
        }
    }

    /// Adds one sample; returns the row once every thread has sent its share. Threads send
    /// their intervals in order, so rows complete in order.
    pub(crate) fn add(&mut self, s: Sample) -> Option<IntervalRow> {
        let entry = self
            .pending
            .entry(s.index)
            .or_insert_with(|| (0, s.end, Window::empty()));
        entry.0 += 1;
        entry.1 = entry.1.max(s.end);
        entry.2.add(&s.window);
        if entry.0 < self.threads {
            return None;
        }
        let (index, (_, end, w)) = self.pending.pop_first()?;
        Some(self.row(index, end, &w))
    }

    /// Rows for intervals some thread never closed (it failed): what there is.
    pub(crate) fn rest(&mut self) -> Vec<IntervalRow> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(index, (_, end, w))| self.row(index, end, &w))
            .collect()
    }

    fn row(&self, index: u64, end: Instant, w: &Window) -> IntervalRow {
        let begin = self.start
            + self
                .every
                .saturating_mul(u32::try_from(index).unwrap_or(u32::MAX));
        IntervalRow {
            start_s: (begin - self.start).as_secs_f64(),
            duration_s: end.saturating_duration_since(begin).as_secs_f64(),
            warmup: begin < self.measure_start,
            requests: w.requests,
            bytes: w.bytes,
            p50_us: w.latency.value_at_quantile(0.5),
            p99_us: w.latency.value_at_quantile(0.99),
            errors: w.errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    /// Two threads' samples of the same intervals add up into one row each, in order, and
    /// the short last interval keeps its real length.
    #[test]
    fn threads_add_up_per_interval() {
        let t0 = Instant::now();
        let every = Duration::from_millis(100);
        let (tx, rx) = channel();
        let mut stats = [Stats::new(t0), Stats::new(t0)];
        let mut tickers = [Ticker::new(t0, every, &tx), Ticker::new(t0, every, &tx)];
        for (i, (s, t)) in stats.iter_mut().zip(&mut tickers).enumerate() {
            let us = 100 * (i as u64 + 1);
            s.round_trip(t0, t0, t0 + Duration::from_micros(us), 64);
            t.tick(t0 + every, s);
            s.round_trip(t0, t0, t0 + Duration::from_micros(us), 64);
            s.errors.io += 1;
            t.finish(t0 + every + every / 2, s);
        }
        let mut c = Collector::new(t0, t0, every, 2);
        let rows: Vec<IntervalRow> = rx.try_iter().filter_map(|s| c.add(s)).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].requests, rows[0].errors, rows[0].bytes),
            (2, 0, 128)
        );
        assert!((99..=101).contains(&rows[0].p50_us) && (199..=201).contains(&rows[0].p99_us));
        assert_eq!((rows[1].requests, rows[1].errors), (2, 2));
        assert!((rows[1].duration_s - 0.05).abs() < 1e-6, "{:?}", rows[1]);
        assert!((rows[1].requests_per_s() - 40.0).abs() < 1e-6);
        assert!(c.rest().is_empty());
    }
}
