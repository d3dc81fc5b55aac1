//! A TCP connection as the reactor holds it: the socket, beside the connection's state machine
//! (which owns the zero-copy pipe once it has one), plus what the reactor's policies need:
//! identity for stale timer entries, the ready-queue mark, the activity clocks the idle
//! and stall timeouts read, and the watchdog's mark.

use std::time::{Duration, Instant};

use mio::net::TcpStream;

use super::deadlines::{ConnectionTimer, Deadlines, Owner};
use super::memory::{Peer, STOPPED_READING_AFTER};
use crate::connection::{CloseReason, Connection, Outcome};
use crate::zero_copy::Pipe;

/// `Config::idle_timeout` and `Config::stall_timeout`, as every slot of a reactor reads them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// Close a connection that moved no byte for this long.
    pub(super) idle: Option<Duration>,
    /// Close a connection whose pending output made no write progress for this long.
    pub(super) stall: Option<Duration>,
}

impl Timeouts {
    /// The timeouts `idle` and `stall` ask for; longer than a stamp can measure (400 days)
    /// is as good as off.
    pub(super) fn new(idle: Option<Duration>, stall: Option<Duration>) -> Timeouts {
        Timeouts {
            idle: idle.filter(|&t| t <= Stamp::MAX_AGE),
            stall: stall.filter(|&t| t <= Stamp::MAX_AGE),
        }
    }
}

/// One slab entry: a connection and the reactor's bookkeeping for it. Kept small, because
/// it is what an idle connection costs (see `tests/idle_memory.rs` and the size test below):
/// no peer address (the admission policy keeps one aside only when `max_per_source` or debug
/// logging needs it), a 32-bit id, and coarse 32-bit timestamps instead of `Instant`s.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(super) socket: TcpStream,
    /// Unique among the connections a stale deadline entry could still name (it wraps after
    /// 2^32 connections; stale entries are swept long before, see `Server::sweep_deadlines`).
    pub(super) id: u32,
    /// Last time a byte moved either way (for the idle timeout).
    last_activity: Stamp,
    /// Since when it has owed the peer something without write progress (for the stall
    /// timeout); meaningful only while `stalling`.
    stalled_since: Stamp,
    /// Index of its service in `Server::services` (and `Stats::services`); 16 bits, as there
    /// are at most `MAX_LISTENERS` (4,096) listeners, so that the flags below fit beside it
    /// and the entry stays at 48 bytes.
    service: u16,
    /// In either run queue, `fresh` or `ready` (so it is queued once).
    pub(super) queued: bool,
    /// Has an entry among the connection deadlines of the registry (at most one).
    pub(super) timer_armed: bool,
    /// Has an entry among the registry's connection deadlines to wake it when its peer counts
    /// as having stopped reading (at most one).
    pub(super) allowance_armed: bool,
    /// It owes the peer output (or, a service finished, the peer's FIN) since `stalled_since`.
    stalling: bool,
    /// Where the watchdog is with it (one byte, in what was padding).
    pub(super) watch: Watch,
    pub(super) conn: Connection<Pipe>,
}

// A service index fits in `Slot::service`.
const _: () = assert!(crate::config::MAX_LISTENERS <= u16::MAX as usize);

/// Where the watchdog (`watchdog`) is with one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Watch {
    /// Not in the list: it owed nothing and moved nothing when last looked at.
    Unwatched,
    /// In the list.
    Watched,
    /// In the list, and found with work and no wake-up at the last look.
    Suspect,
}

/// A coarse timestamp: hundredths of a second since the reactor started, in 32 bits. It wraps
/// after 497 days, so ages are computed with wrapping arithmetic and are right for any age
/// below that; timeouts that long are treated as off (`Timeouts::new`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp(u32);

impl Stamp {
    /// The resolution.
    pub(super) const TICK: Duration = Duration::from_millis(10);
    /// The longest age a stamp measures correctly.
    pub(super) const MAX_AGE: Duration = Duration::from_secs(400 * 24 * 3600);

    /// The stamp of `now` for a reactor that started at `started`.
    pub(super) fn at(started: Instant, now: Instant) -> Stamp {
        let ticks = now.saturating_duration_since(started).as_millis() / Self::TICK.as_millis();
        Stamp(ticks as u32) // truncation is the wrap-around described above
    }

    /// How long before `now` this stamp was taken, rounded down to a tick.
    fn age(self, now: Stamp) -> Duration {
        Self::TICK * now.0.wrapping_sub(self.0)
    }
}

impl Slot {
    /// A fresh connection accepted at `now` (by a reactor that started at `started`), speaking
    /// `conn`'s protocol for `service`.
    pub(super) fn new(
        socket: TcpStream,
        (service, conn): (usize, Connection<Pipe>),
        id: u32,
        started: Instant,
        now: Instant,
    ) -> Slot {
        let stamp = Stamp::at(started, now);
        Slot {
            socket,
            id,
            last_activity: stamp,
            stalled_since: stamp,
            service: u16::try_from(service).unwrap_or(u16::MAX),
            queued: false,
            timer_armed: false,
            allowance_armed: false,
            stalling: false,
            watch: Watch::Unwatched,
            conn,
        }
    }

    /// Index of its service in `Server::services` (and `Stats::services`).
    pub(super) fn service(&self) -> usize {
        self.service as usize
    }

    /// Moves the activity clocks after a drive: any byte moved is activity; owing the peer
    /// something with no write progress keeps (or starts) the stall clock, and owing nothing
    /// stops it.
    pub(super) fn record_progress(&mut self, outcome: &Outcome, now: Stamp) {
        if outcome.bytes_read + outcome.bytes_written > 0 {
            self.last_activity = now;
        }
        // Waiting for the peer's FIN after a service finished counts as owing it something: a
        // peer that never closes is closed by the stall timeout, as one that never reads.
        let owes = self.conn.pending() + usize::from(self.conn.awaits_peer_close());
        if owes == 0 {
            self.stalling = false;
        } else if !self.stalling || outcome.bytes_written > 0 {
            self.stalling = true;
            self.stalled_since = now;
        }
    }

    /// Whether its peer reads its output, at `now`: it does unless output it owes made no
    /// write progress for `STOPPED_READING_AFTER`.
    pub(super) fn peer(&self, now: Stamp) -> Peer {
        match self.stalling && self.stalled_since.age(now) >= STOPPED_READING_AFTER {
            true => Peer::StoppedReading,
            false => Peer::Reading,
        }
    }

    /// When its peer will count as having stopped reading if no write progress comes first;
    /// `None` while it owes nothing. `now` as in [`Slot::next_timeout`].
    pub(super) fn stops_reading_at(&self, now: Instant, stamp: Stamp) -> Option<Instant> {
        if !self.stalling {
            return None;
        }
        now.checked_sub(self.stalled_since.age(stamp))?
            .checked_add(STOPPED_READING_AFTER)?
            .checked_add(Stamp::TICK)
    }

    /// Paused at the small bound while its peer read: wakes it (`deadlines`) when the peer
    /// will count as having stopped reading, to read on under the configured allowance
    /// (unless write progress comes first; then it is paused as before).
    pub(super) fn wake_if_peer_stops(
        &mut self,
        key: usize,
        (now, stamp): (Instant, Stamp),
        deadlines: &mut Deadlines,
    ) {
        if self.allowance_armed {
            return;
        }
        if let Some(at) = self.stops_reading_at(now, stamp) {
            self.allowance_armed = true;
            deadlines.push(at, self.owner(key), ConnectionTimer::PeerStopsReading);
        }
    }

    /// How long no byte moved either way, at `now`.
    pub(super) fn idle_for(&self, now: Stamp) -> Duration {
        self.last_activity.age(now)
    }

    /// The earliest timeout this connection is heading for, and what it would close it as;
    /// `now` is the same moment as an `Instant` and as a stamp. A deadline is never early: a
    /// stamp is rounded down, so one tick is added.
    pub(super) fn next_timeout(
        &self,
        timeouts: &Timeouts,
        now: Instant,
        stamp: Stamp,
    ) -> Option<(Instant, CloseReason)> {
        let deadline = |since: Stamp, after: Duration| {
            // `checked_*`: a timeout too long for the clock never fires.
            (now.checked_sub(since.age(stamp))?)
                .checked_add(after)?
                .checked_add(Stamp::TICK)
        };
        let idle = timeouts
            .idle
            .and_then(|after| deadline(self.last_activity, after))
            .map(|at| (at, CloseReason::IdleTimeout));
        let stall = timeouts
            .stall
            .filter(|_| self.stalling)
            .and_then(|after| deadline(self.stalled_since, after))
            .map(|at| (at, CloseReason::StallTimeout));
        match (idle, stall) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// How this connection's deadline entries name it.
    pub(super) fn owner(&self, key: usize) -> Owner {
        Owner::new(key, self.id)
    }

    /// Gives this connection, in slab entry `key`, an entry in `deadlines` unless it has one
    /// or is heading for no timeout. `now` is the same moment as an `Instant` and a stamp.
    pub(super) fn arm(
        &mut self,
        key: usize,
        timeouts: &Timeouts,
        (now, stamp): (Instant, Stamp),
        deadlines: &mut Deadlines,
    ) {
        if self.timer_armed {
            return;
        }
        if let Some((at, _)) = self.next_timeout(timeouts, now, stamp) {
            self.timer_armed = true;
            deadlines.push(at, self.owner(key), ConnectionTimer::Timeouts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory per idle connection is a headline figure (at most 64 bytes at 19,000
    /// connections, measured as RSS by `scripts/idle-memory.sh`): the slab entry is most of it. This bound fails the build
    /// of the tests when a field makes it grow.
    #[test]
    fn a_slab_entry_stays_small() {
        // The Slot is 48 bytes in release builds. mio's sockets carry a selector id in debug
        // builds (what this test runs as), which the bound allows for, rounded to alignment.
        let debug_extra = (std::mem::size_of::<TcpStream>() - 4).next_multiple_of(8);
        let slot = std::mem::size_of::<Slot>();
        assert!(slot <= 48 + debug_extra, "Slot is {slot} bytes");
        // `Slab<T>` stores `enum Entry<T> { Vacant(usize), Occupied(T) }`: at most a word more,
        // so an idle connection's entry stays within 56 bytes (the target: 64 per connection).
        assert!(std::mem::size_of::<Connection<Pipe>>() <= 24);
    }

    #[test]
    fn stamps_measure_ages_across_the_wrap() {
        let started = Instant::now();
        let later = started + Duration::from_millis(1234);
        assert_eq!(
            Stamp::at(started, started).age(Stamp::at(started, later)),
            Duration::from_millis(1230)
        );
        let before_wrap = Stamp(u32::MAX - 5);
        let after_wrap = Stamp(4);
        assert_eq!(before_wrap.age(after_wrap), Stamp::TICK * 10);
    }
}
