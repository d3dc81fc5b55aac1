//! The deadline registry: everything timed in the reactor, in one place. The loop asks it
//! "when is the next thing due?" (the poll timeout) and, after each turn, "what is due now?";
//! it answers by kind ([`Due`]). Adding a timer is a variant of [`Timer`] and an arm of the
//! loop's `on_timer`, nothing else.
//!
//! Two shapes of deadline live here:
//! - **One per kind** ([`Timer`]): the accept retry, the idle-pipe sweep, the free list's
//!   decay, the watchdog's look, the group post, the stats line, the metrics scrape expiry,
//!   the drain deadline (declared, and fired, in that order). Each is set, moved or cleared
//!   by its policy and fires once when due; a periodic one is set again by its handler.
//!   They sit in a small array, so setting one costs a store.
//! - **Per connection** ([`ConnectionTimer`]: idle and stall timeouts; the moment a paused
//!   connection's peer counts as having stopped reading), in a min-heap with lazy re-arming.
//!   Each connection has at most one entry of each kind. Its activity timestamps only move
//!   forward, so an entry
//!   can only fire early, never late: when it fires, the reactor recomputes the real deadline
//!   from the connection and either closes it or pushes the later deadline. Cost: O(1) per
//!   event (a timestamp store), O(log n) per timeout period per connection, and nothing at
//!   all for connections with no deadline. An idle connection is never polled. Entries name a
//!   connection by slab key *and* a unique id, because a slab key is reused after the
//!   connection that held it closes.
//!
//! This module knows nothing of the reactor: it stores instants and hands them back.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// The kinds of deadline a reactor keeps one of, in the order they fire when due together
/// (connection deadlines fire before all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// Accepting, paused for lack of descriptors, is tried again (`admission`).
    AcceptRetry,
    /// Zero-copy pipes of connections gone idle are given back (`pipes`).
    PipeSweep,
    /// The free list of output blocks decays, so memory goes back after a burst (`memory`).
    FreeListDecay,
    /// The watchdog looks for connections with work and no wake-up (`watchdog`).
    WatchdogLook,
    /// One reactor of a group posts its counters for the `/metrics` page (`group`).
    GroupPost,
    /// The periodic stats line (`report`).
    StatsLine,
    /// Scrape connections of the `/metrics` endpoint past their deadline are closed (`metrics`).
    ScrapeExpiry,
    /// The shutdown drain gives up on what is left (`shutdown`).
    DrainEnd,
}

impl Timer {
    /// Every kind, in firing order.
    const ALL: [Timer; 8] = [
        Timer::AcceptRetry,
        Timer::PipeSweep,
        Timer::FreeListDecay,
        Timer::WatchdogLook,
        Timer::GroupPost,
        Timer::StatsLine,
        Timer::ScrapeExpiry,
        Timer::DrainEnd,
    ];
}

/// What a connection's deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ConnectionTimer {
    /// Its idle or stall timeout (`slot::Timeouts`).
    Timeouts,
    /// Paused at the small bound for a reading peer: the moment its peer counts as having
    /// stopped reading, when it reads on under the configured allowance (`memory`).
    PeerStopsReading,
}

/// Which connection a deadline belongs to: its slab key and its unique id.
///
/// The key is kept in 32 bits so that a heap entry (deadline, owner, kind) is 32 bytes, not
/// 40: with the default stall timeout every idle connection has one, so this is part of what
/// an idle connection costs. A slab key always fits: each entry holds a descriptor, and Linux
/// caps a process's descriptors (`nr_open`) below 2^31.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Owner {
    /// The slab key (and token) at the time the entry was pushed.
    key: u32,
    /// The connection's unique id, so a reused key is recognised.
    pub(super) id: u32,
}

impl Owner {
    /// The owner of slab entry `key` holding connection `id`.
    pub(super) fn new(key: usize, id: u32) -> Owner {
        debug_assert!(u32::try_from(key).is_ok(), "slab key {key} beyond 32 bits");
        Owner {
            key: key as u32,
            id,
        }
    }

    /// The slab key (and token) at the time the entry was pushed.
    pub(super) fn key(self) -> usize {
        self.key as usize
    }
}

/// What is due, as [`Deadlines::pop_due`] hands it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    /// A connection's deadline (possibly early: see the module doc), and what it is for.
    Connection(Owner, ConnectionTimer),
    /// One of the reactor's own timers, and the instant it was set for.
    Timer(Timer, Instant),
}

/// The registry: one slot per [`Timer`] kind and a min-heap of connection deadlines.
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    timers: [Option<Instant>; Timer::ALL.len()],
    connections: BinaryHeap<Reverse<(Instant, Owner, ConnectionTimer)>>,
}

impl Deadlines {
    /// Sets `timer` to fire at `at`, replacing its previous deadline; `None` clears it.
    pub(super) fn set(&mut self, timer: Timer, at: Option<Instant>) {
        self.timers[timer as usize] = at;
    }

    /// Clears `timer`; true if it was set.
    pub(super) fn cancel(&mut self, timer: Timer) -> bool {
        self.timers[timer as usize].take().is_some()
    }

    /// When `timer` fires, if it is set.
    pub(super) fn get(&self, timer: Timer) -> Option<Instant> {
        self.timers[timer as usize]
    }

    /// Adds a deadline of kind `timer` for the connection `owner`.
    pub(super) fn push(&mut self, at: Instant, owner: Owner, timer: ConnectionTimer) {
        self.connections.push(Reverse((at, owner, timer)));
    }

    /// The earliest deadline of any kind, if any (for the poll timeout).
    pub(super) fn next(&self) -> Option<Instant> {
        let connection = self.connections.peek().map(|Reverse((at, ..))| *at);
        self.timers
            .iter()
            .copied()
            .chain([connection])
            .flatten()
            .min()
    }

    /// Removes and returns one thing due at `now`: connection deadlines first, then the timers
    /// in [`Timer`] order. A timer fires once; a handler that sets it again for later than
    /// `now` is not handed back in the same round.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Due> {
        match self.connections.peek() {
            Some(Reverse((at, ..))) if *at <= now => {
                return (self.connections.pop())
                    .map(|Reverse((_, owner, timer))| Due::Connection(owner, timer))
            }
            _ => {}
        }
        Timer::ALL.into_iter().find_map(|timer| {
            let slot = &mut self.timers[timer as usize];
            let at = slot.filter(|&at| at <= now)?;
            *slot = None;
            Some(Due::Timer(timer, at))
        })
    }

    /// Connection entries, stale ones included.
    pub(super) fn connections(&self) -> usize {
        self.connections.len()
    }

    /// Drops the connection entries of connections that are gone, so churn cannot grow the
    /// heap.
    pub(super) fn retain(&mut self, mut alive: impl FnMut(Owner) -> bool) {
        self.connections
            .retain(|Reverse((_, owner, _))| alive(*owner));
    }
}

/// The next deadline of a periodic timer (the stats line) set for `at` that fired at `now`: one
/// `every` later, catching up after a long turn but never scheduling a burst, and never at or
/// before `now` (so it does not fire twice in one round of [`Deadlines::pop_due`]).
pub(super) fn next_period(at: Instant, now: Instant, every: Duration) -> Option<Instant> {
    let base = now.checked_sub(every).map_or(at, |floor| at.max(floor));
    let next = base.checked_add(every)?;
    if next > now {
        Some(next)
    } else {
        now.checked_add(every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: ConnectionTimer = ConnectionTimer::Timeouts;

    fn owner(key: usize) -> Owner {
        Owner::new(key, key as u32)
    }

    /// Every idle connection has an entry (the stall timeout is on by default), so its size is
    /// part of the idle-memory figure: 32 bytes with the key in 32 bits (40 with a `usize`).
    #[test]
    #[cfg(target_os = "linux")]
    fn a_connection_entry_is_32_bytes() {
        assert_eq!(
            std::mem::size_of::<Reverse<(Instant, Owner, ConnectionTimer)>>(),
            32
        );
    }

    #[test]
    fn pops_only_expired_connection_entries_in_deadline_order() {
        let start = Instant::now();
        let mut deadlines = Deadlines::default();
        deadlines.push(start + Duration::from_secs(3), owner(3), T);
        deadlines.push(start + Duration::from_secs(1), owner(1), T);
        deadlines.push(start + Duration::from_secs(2), owner(2), T);
        assert_eq!(deadlines.next(), Some(start + Duration::from_secs(1)));
        let now = start + Duration::from_secs(2);
        assert_eq!(deadlines.pop_due(now), Some(Due::Connection(owner(1), T)));
        assert_eq!(deadlines.pop_due(now), Some(Due::Connection(owner(2), T)));
        assert_eq!(deadlines.pop_due(now), None);
        deadlines.retain(|o| o.key() != 3);
        assert_eq!(deadlines.connections(), 0);
    }

    #[test]
    fn timers_fire_once_after_connections_in_kind_order() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut deadlines = Deadlines::default();
        deadlines.set(Timer::DrainEnd, Some(at(1)));
        deadlines.set(Timer::StatsLine, Some(at(2)));
        deadlines.set(Timer::AcceptRetry, Some(at(9)));
        deadlines.push(at(2), owner(7), T);
        assert_eq!(deadlines.next(), Some(at(1)));
        assert_eq!(deadlines.pop_due(at(0)), None);
        let now = at(2);
        assert_eq!(deadlines.pop_due(now), Some(Due::Connection(owner(7), T)));
        assert_eq!(
            deadlines.pop_due(now),
            Some(Due::Timer(Timer::StatsLine, at(2)))
        );
        // Set again by its handler for later: not due in this round.
        deadlines.set(Timer::StatsLine, Some(at(3)));
        assert_eq!(
            deadlines.pop_due(now),
            Some(Due::Timer(Timer::DrainEnd, at(1)))
        );
        assert_eq!(deadlines.pop_due(now), None);
        assert_eq!(deadlines.next(), Some(at(3)));
        assert!(deadlines.cancel(Timer::StatsLine));
        assert!(!deadlines.cancel(Timer::StatsLine));
        assert_eq!(deadlines.get(Timer::AcceptRetry), Some(at(9)));
        deadlines.set(Timer::AcceptRetry, None);
        assert_eq!(deadlines.next(), None);
    }

    #[test]
    fn periods_keep_their_rhythm_and_never_burst() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // On time: one interval after the tick that fired.
        assert_eq!(next_period(t0, t0 + s(0), s(10)), Some(t0 + s(10)));
        // A little late: the rhythm holds.
        assert_eq!(next_period(t0, t0 + s(3), s(10)), Some(t0 + s(10)));
        // Ticks missed: the next one is one interval from now, not a burst of catch-ups.
        assert_eq!(next_period(t0, t0 + s(35), s(10)), Some(t0 + s(45)));
        assert_eq!(next_period(t0, t0 + s(10), s(10)), Some(t0 + s(20)));
    }
}
