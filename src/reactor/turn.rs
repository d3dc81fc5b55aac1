//! The bound on one turn of the loop as a whole: how much I/O it does across all connections
//! before it polls again.
//!
//! Each connection has a budget per drive (`Config::read_budget`, `write_budget`: 256 KiB),
//! but that alone lets a turn grow with the number of busy connections: 100 clients pushing
//! at once would make turns of 25 MiB and tens of milliseconds, and every other client would
//! wait that long for its echo (`tests/mass_ingest.rs` measures it).
//!
//! So a turn stops driving connections once they have moved [`TURN_BYTES`] (read plus
//! written) or it has lasted [`TURN_TIME`] (a backstop for slow page faults or a debug build).
//! The connections it did not reach stay queued, in order, and run next turn after a poll
//! with a zero timeout, exactly as a connection cut short by its own budget does.
//!
//! Order decides who waits. Connections with new readiness run first: they had nothing left to
//! do before this event (a connection with work left is already queued, and new readiness
//! does not queue it twice), so they are the interactive ones, and each waits at most for the
//! turn in progress. Then the work carried over, oldest first, round-robin. So that a stream
//! of new readiness can never starve the carried-over work, every turn runs at least one
//! carried-over connection.

use std::time::{Duration, Instant};

/// Bytes read and written across all connections in one turn: four connections' full
/// per-drive budgets, about a millisecond of copying.
pub(super) const TURN_BYTES: usize = 1 << 20;

/// After this long, a turn drives no more connections and polls again.
pub(super) const TURN_TIME: Duration = Duration::from_millis(2);

/// One turn's budget, from the moment `poll` returned.
#[derive(Debug)]
pub(super) struct Turn {
    started: Instant,
    bytes_left: usize,
}

impl Turn {
    /// A turn that began at `now`, when `poll` returned.
    pub(super) fn begin(now: Instant) -> Turn {
        Turn {
            started: now,
            bytes_left: TURN_BYTES,
        }
    }

    /// When the turn began (the clock read the loop takes once per turn).
    pub(super) fn now(&self) -> Instant {
        self.started
    }

    /// True once the turn has moved its bytes or used its time.
    pub(super) fn is_spent(&self) -> bool {
        self.bytes_left == 0 || self.started.elapsed() >= TURN_TIME
    }

    /// One connection moved `bytes` (read plus written).
    pub(super) fn record(&mut self, bytes: usize) {
        self.bytes_left = self.bytes_left.saturating_sub(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_is_spent_by_bytes() {
        let mut turn = Turn::begin(Instant::now());
        assert!(!turn.is_spent());
        turn.record(TURN_BYTES - 1);
        assert!(!turn.is_spent());
        turn.record(2);
        assert!(turn.is_spent());
    }

    #[test]
    fn a_turn_is_spent_by_time() {
        let long_ago = Instant::now().checked_sub(2 * TURN_TIME).expect("uptime");
        assert!(Turn::begin(long_ago).is_spent());
    }
}
