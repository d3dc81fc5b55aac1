//! What one worker thread measured: latency histograms, counters and errors, merged across
//! threads at the end. Sans-IO: the worker passes the times in, nothing here reads a clock.
//!
//! Warm-up rule: a round trip is *measured* (counted in `requests` and the histograms) when
//! its intended send time falls at or after the end of the warm-up. Deciding by send time,
//! not by completion time, keeps rate mode honest: a request scheduled inside the window
//! counts even when the server answers it late, during the drain. Byte totals, in contrast,
//! cover the whole run including warm-up, because the server counts those bytes too.

use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

/// Highest latency we can record, in microseconds (one hour); larger values are clamped.
const MAX_US: u64 = 3_600_000_000;

/// A microsecond histogram with 3 significant digits (0.1% precision at every scale).
pub fn new_histogram() -> Histogram<u64> {
    // Constant bounds that satisfy hdrhistogram's rules (low >= 1, high >= 2 * low,
    // sigfig <= 5): this cannot fail at run time.
    Histogram::new_with_bounds(1, MAX_US, 3).expect("constant histogram bounds are valid")
}

/// Whole microseconds, at least 0, clamped to the histogram's range.
#[inline]
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).map_or(MAX_US, |us| us.min(MAX_US))
}

/// Error counters. `verify` is the sum of the three kinds of verification failure events;
/// the details say which and how many bytes, and `causes` says why, in words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Errors {
    /// Verification failures (mismatch, loss, extra bytes, UDP corruption): events.
    pub verify: u64,
    /// Failed or timed-out connects (TCP), refused datagrams (UDP).
    pub connect: u64,
    /// Other socket errors and unexpected closes by the server.
    pub io: u64,
    /// Echoed bytes that differ from what was sent at that offset (events).
    pub mismatches: u64,
    /// Bytes sent and never echoed (connection closed, or still missing after the drain).
    pub lost_bytes: u64,
    /// Bytes received beyond what was sent.
    pub extra_bytes: u64,
    /// Why, for the first [`MAX_CAUSES`] distinct causes: a count behind a number has no
    /// use for someone whose run failed.
    pub causes: Vec<Cause>,
}

/// The most distinct causes kept; later new ones count in the last entry.
pub const MAX_CAUSES: usize = 8;

/// The kind of error a cause counts under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Bytes or datagrams that are not the echo of what was sent (mismatch, loss, extra).
    Verify,
    /// A connection that could not be made.
    Connect,
    /// Any other socket error or unexpected close.
    Io,
}

impl ErrorClass {
    /// The name used in the JSON report and the human lines (`verify`, `connect`, `io`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Verify => "verify",
            ErrorClass::Connect => "connect",
            ErrorClass::Io => "io",
        }
    }
}

/// How many errors one cause made, and the first occurrence's particulars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub class: ErrorClass,
    /// What happened, the same text for every occurrence ("Connection reset by peer (os
    /// error 104)", "echoed bytes differ from those sent").
    pub what: String,
    /// The first occurrence's particulars ("at stream offset 4096"), if any.
    pub first: Option<String>,
    pub count: u64,
}

impl Cause {
    /// `what (first at ...)`, as printed.
    pub fn text(&self) -> String {
        match &self.first {
            Some(f) => format!("{} (first {f})", self.what),
            None => self.what.clone(),
        }
    }
}

impl Errors {
    /// Counts one occurrence of `what` (particulars `first`, kept for the first one only).
    /// Allocates only for a cause not seen before, at most [`MAX_CAUSES`] times.
    pub fn note(&mut self, class: ErrorClass, what: &str, first: impl FnOnce() -> Option<String>) {
        self.note_n(class, what, 1, first);
    }

    fn note_n(
        &mut self,
        class: ErrorClass,
        what: &str,
        n: u64,
        first: impl FnOnce() -> Option<String>,
    ) {
        if let Some(c) = self
            .causes
            .iter_mut()
            .find(|c| c.class == class && c.what == what)
        {
            c.count += n;
        } else if self.causes.len() < MAX_CAUSES {
            self.causes.push(Cause {
                class,
                what: what.to_string(),
                first: first(),
                count: n,
            });
        } else if let Some(last) = self.causes.last_mut() {
            // Out of room: counted, so the causes still add up to the errors.
            last.count += n;
            if !last.what.ends_with(" and other causes") {
                last.what.push_str(" and other causes");
            }
        }
    }

    /// Adds `other`'s causes into `self`'s.
    fn merge_causes(&mut self, other: &[Cause]) {
        for c in other {
            let first = c.first.clone();
            self.note_n(c.class, &c.what, c.count, || first);
        }
    }
}

/// UDP sequence accounting, summed over sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UdpCounts {
    /// Datagrams sent.
    pub sent: u64,
    /// Distinct datagrams echoed back (first copy of each).
    pub received: u64,
    /// Datagrams sent and never echoed (`sent - received` after the drain).
    pub lost: u64,
    /// Extra copies of a datagram already received.
    pub duplicates: u64,
    /// Datagrams that arrived after one with a higher sequence number.
    pub reordered: u64,
}

/// One thread's (or, after [`Stats::merge`], the whole run's) measurements.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency from the intended send time (coordinated-omission corrected), microseconds.
    pub latency: Histogram<u64>,
    /// Latency from the actual send time, microseconds.
    pub latency_uncorrected: Histogram<u64>,
    /// Open loop: the generator's own scheduling error, from the intended to the actual send
    /// time, microseconds. Large values mean the generator (not the server) fell behind.
    pub schedule_error: Histogram<u64>,
    /// Time from `connect()` to an established connection, microseconds.
    pub connect: Histogram<u64>,
    /// Round trips measured (after warm-up).
    pub requests: u64,
    /// Echoed payload bytes of measured round trips.
    pub measured_bytes: u64,
    /// Bytes written to sockets, whole run.
    pub bytes_sent: u64,
    /// Bytes read from sockets, whole run.
    pub bytes_received: u64,
    /// Connections established (TCP) or sockets opened (UDP), whole run.
    pub connections_opened: u64,
    /// Errors.
    pub errors: Errors,
    /// UDP sequence accounting.
    pub udp: UdpCounts,
    /// Rate mode: sends that went out later than 1 ms after their intended time (the
    /// generator or the connections could not keep up).
    pub late_sends: u64,
    /// The first connect error seen, for the "no connection could be made" message.
    pub first_connect_error: Option<String>,
    /// When the run was stopped early (a signal), if it was; the earliest over threads.
    pub stopped_at: Option<Instant>,
    /// Round trips completed since the last interval sample, warm-up included (by
    /// completion time): the per-interval figures.
    pub window: Window,
    measure_start: Instant,
}

/// What completed during the current interval (see [`Stats::take_window`]).
#[derive(Debug, Clone)]
pub struct Window {
    /// Latency from the intended send time, microseconds.
    pub latency: Histogram<u64>,
    /// Round trips completed.
    pub requests: u64,
    /// Echoed payload bytes of those round trips.
    pub bytes: u64,
    /// Errors (verify + connect + io) counted during the interval.
    pub errors: u64,
}

impl Window {
    /// An empty window.
    pub fn empty() -> Window {
        Window {
            latency: new_histogram(),
            requests: 0,
            bytes: 0,
            errors: 0,
        }
    }

    /// Adds another thread's window for the same interval.
    pub fn add(&mut self, other: &Window) {
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.latency.add(&other.latency);
        self.requests += other.requests;
        self.bytes += other.bytes;
        self.errors += other.errors;
    }
}

impl Stats {
    /// Empty statistics; round trips intended before `measure_start` are not measured.
    pub fn new(measure_start: Instant) -> Stats {
        Stats {
            latency: new_histogram(),
            latency_uncorrected: new_histogram(),
            connect: new_histogram(),
            requests: 0,
            measured_bytes: 0,
            bytes_sent: 0,
            bytes_received: 0,
            connections_opened: 0,
            errors: Errors::default(),
            udp: UdpCounts::default(),
            late_sends: 0,
            first_connect_error: None,
            stopped_at: None,
            window: Window::empty(),
            measure_start,
            schedule_error: new_histogram(),
        }
    }

    /// Errors of every kind so far.
    pub fn error_count(&self) -> u64 {
        let e = &self.errors;
        e.verify + e.connect + e.io
    }

    /// Hands out what completed since the previous call and starts a new interval.
    /// `errors_before` is the [`error_count`](Self::error_count) at the previous call.
    pub fn take_window(&mut self, errors_before: u64) -> Window {
        let mut w = std::mem::replace(&mut self.window, Window::empty());
        w.errors = self.error_count().saturating_sub(errors_before);
        w
    }

    /// Records one completed round trip of `bytes` bytes.
    #[inline]
    pub fn round_trip(&mut self, intended: Instant, sent: Instant, done: Instant, bytes: u64) {
        let corrected = micros(done.saturating_duration_since(intended));
        self.window.latency.saturating_record(corrected);
        self.window.requests += 1;
        self.window.bytes += bytes;
        if intended < self.measure_start {
            return;
        }
        self.requests += 1;
        self.measured_bytes += bytes;
        self.latency.saturating_record(corrected);
        self.latency_uncorrected
            .saturating_record(micros(done.saturating_duration_since(sent)));
        // Rounded to the nearest microsecond: a precise generator is off by fractions of one,
        // and truncating would report 1.9 µs as 1.
        let lag = sent.saturating_duration_since(intended);
        self.schedule_error
            .saturating_record(((lag.as_nanos() + 500) / 1000).min(MAX_US as u128) as u64);
    }

    /// Records an established connection.
    pub fn connected(&mut self, took: Duration) {
        self.connections_opened += 1;
        self.connect.saturating_record(micros(took));
    }

    /// Records a failed connect.
    pub fn connect_failed(&mut self, why: &dyn std::fmt::Display) {
        self.errors.connect += 1;
        let text = why.to_string();
        self.errors.note(ErrorClass::Connect, &text, || None);
        if self.first_connect_error.is_none() {
            self.first_connect_error = Some(text);
        }
    }

    /// Records an unexpected close or another event that is not an OS error (`what`).
    pub fn io_error(&mut self, what: &str) {
        self.errors.io += 1;
        self.errors.note(ErrorClass::Io, what, || None);
    }

    /// Records a socket error. A reset reads as ECONNRESET or, on the next write, EPIPE:
    /// both are one cause, named for what the server did.
    pub fn io_failed(&mut self, e: &std::io::Error) {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        self.errors.io += 1;
        if matches!(e.kind(), ConnectionReset | BrokenPipe | ConnectionAborted) {
            self.errors.note(
                ErrorClass::Io,
                "the server reset the connection (RST: it closed with input unread, or died)",
                || Some(format!("seen as: {e}")),
            );
        } else {
            self.errors.note(ErrorClass::Io, &e.to_string(), || None);
        }
    }

    /// Records echoed bytes that differ from the stream, first at stream `offset` (TCP).
    pub fn mismatch_at(&mut self, offset: u64) {
        self.errors.verify += 1;
        self.errors.mismatches += 1;
        self.errors.note(
            ErrorClass::Verify,
            "echoed bytes differ from those sent",
            || Some(format!("at stream offset {offset}")),
        );
    }

    /// Records a datagram that is not the echo of one sent (UDP).
    pub fn mismatch(&mut self) {
        self.errors.verify += 1;
        self.errors.mismatches += 1;
        self.errors.note(
            ErrorClass::Verify,
            "a datagram came back corrupted or was never sent",
            || None,
        );
    }

    /// Records `n` bytes that were sent and will never come back, and why (`why`: "the
    /// connection failed", "still not echoed after the drain"...).
    pub fn lost(&mut self, n: u64, why: &str) {
        if n > 0 {
            self.errors.verify += 1;
            self.errors.lost_bytes += n;
            self.errors.note(ErrorClass::Verify, why, || {
                Some(format!("{n} bytes on one connection"))
            });
        }
    }

    /// Records `n` bytes received beyond what was sent.
    pub fn extra(&mut self, n: u64) {
        self.errors.verify += 1;
        self.errors.extra_bytes += n;
        self.errors.note(
            ErrorClass::Verify,
            "bytes came back beyond those sent",
            || Some(format!("{n} bytes on one connection")),
        );
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.latency_uncorrected.add(&other.latency_uncorrected);
        let _ = self.connect.add(&other.connect);
        let _ = self.schedule_error.add(&other.schedule_error);
        self.stopped_at = match (self.stopped_at, other.stopped_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.requests += other.requests;
        self.measured_bytes += other.measured_bytes;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.connections_opened += other.connections_opened;
        let (e, o) = (&mut self.errors, &other.errors);
        e.verify += o.verify;
        e.connect += o.connect;
        e.io += o.io;
        e.mismatches += o.mismatches;
        e.lost_bytes += o.lost_bytes;
        e.extra_bytes += o.extra_bytes;
        e.merge_causes(&o.causes);
        let (u, o) = (&mut self.udp, &other.udp);
        u.sent += o.sent;
        u.received += o.received;
        u.lost += o.lost;
        u.duplicates += o.duplicates;
        u.reordered += o.reordered;
        self.late_sends += other.late_sends;
        if self.first_connect_error.is_none() {
            self.first_connect_error
                .clone_from(&other.first_connect_error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_round_trips_are_not_measured() {
        let t0 = Instant::now();
        let start = t0 + Duration::from_millis(10);
        let mut s = Stats::new(start);
        s.round_trip(t0, t0, start + Duration::from_millis(1), 64);
        assert_eq!(s.requests, 0);
        let late = start + Duration::from_millis(1);
        s.round_trip(start, late, start + Duration::from_millis(3), 64);
        assert_eq!((s.requests, s.measured_bytes), (1, 64));
        // Corrected latency counts from the intended time, uncorrected from the send.
        assert!((2990..=3010).contains(&s.latency.max()));
        assert!((1990..=2010).contains(&s.latency_uncorrected.max()));
    }

    #[test]
    fn merge_adds_everything() {
        let t0 = Instant::now();
        let mut a = Stats::new(t0);
        let mut b = Stats::new(t0);
        a.round_trip(t0, t0, t0 + Duration::from_micros(100), 10);
        b.round_trip(t0, t0, t0 + Duration::from_micros(200), 10);
        b.lost(5, "test");
        b.connect_failed(&"refused");
        a.merge(&b);
        assert_eq!(a.requests, 2);
        assert_eq!(a.latency.len(), 2);
        assert_eq!(a.errors.verify, 1);
        assert_eq!(a.errors.lost_bytes, 5);
        assert_eq!(a.first_connect_error.as_deref(), Some("refused"));
    }
}
