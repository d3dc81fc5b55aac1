//! A fixed-rate timetable: the k-th event is due at `start + k / rate`.
//!
//! Rate mode uses it for intended send times, the connect ramp for connect times. The due
//! time of event k is computed from k rather than by adding a period again and again, so
//! rounding never accumulates, and a generator that falls behind keeps the original
//! timetable: the late events are sent as soon as possible but keep their intended times,
//! which is what makes the latency measurement coordinated-omission corrected (Gil Tene,
//! "How NOT to measure latency"). Sans-IO: the caller passes the clock in.

use std::time::{Duration, Instant};

/// The timetable of a fixed-rate event stream.
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    nanos_per_event: f64,
    k: u64,
    next: Instant,
}

impl Schedule {
    /// Events at `rate` per second, the first one due at `start`.
    pub fn new(start: Instant, rate: f64) -> Schedule {
        Schedule {
            start,
            nanos_per_event: 1e9 / rate,
            k: 0,
            next: start,
        }
    }

    /// When the next event is due.
    #[inline]
    pub fn next_due(&self) -> Instant {
        self.next
    }

    /// Marks the next event as done.
    #[inline]
    pub fn advance(&mut self) {
        self.k += 1;
        let offset = (self.k as f64 * self.nanos_per_event) as u64;
        self.next = self.start + Duration::from_nanos(offset);
    }

    /// True when the next event is due at or before `now`.
    #[inline]
    pub fn is_due(&self, now: Instant) -> bool {
        self.next <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timetable_does_not_drift() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 3.0);
        assert_eq!(s.next_due(), t0);
        for _ in 0..3000 {
            s.advance();
        }
        // 3000 events at 3/s: exactly 1000 s later, to the microsecond.
        let d = s.next_due() - t0;
        assert!((d.as_secs_f64() - 1000.0).abs() < 1e-6, "{d:?}");
    }

    #[test]
    fn due_only_when_time_has_come() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 1000.0);
        assert!(s.is_due(t0));
        s.advance();
        assert!(!s.is_due(t0));
        assert!(s.is_due(t0 + Duration::from_millis(1)));
    }
}
