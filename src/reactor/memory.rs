//! Bounds on pending output: per connection, whether its peer is reading, and the memory
//! budget summed over all connections.
//!
//! A peer that reads while it writes (a flood that also drains its echo) gets a small bound,
//! `Config::max_pending_reading` (256 KiB by default), a few socket buffers: once that much waits, the connection stops
//! reading until it drains, so backpressure reaches the writer as it would through a plain copy
//! loop, and the server adds no queue (no memory, no latency) of its own. The configured
//! allowance (`Config::max_pending`, 32 MiB by default) is for a peer that has *stopped*
//! reading: output that made no write progress for [`STOPPED_READING_AFTER`]. That is the
//! client that writes megabytes before it reads anything; it must be held, or client and server
//! would wait for each other forever. A connection paused at the small bound with no progress
//! is woken when that time has passed (a `PeerStopsReading` deadline), and reads on under the allowance; the first
//! byte its peer reads brings the small bound back.
//!
//! Each connection has its own high-water mark (`Config::max_pending`); this adds a global
//! one, `Config::memory_budget` (a reactor's share of it in a group). Under the budget, a
//! connection may grow only into what is left of it, so the total never passes the budget by
//! more than the floor below. Over it (clients that stopped reading, or a budget lowered by the
//! split), nobody grows, and connections above a fair share (the budget divided among the
//! connections holding output) stay paused until they are back under a quarter of it, so the
//! budget is handed out evenly again as clients read. Nobody is dropped for it.
//!
//! The floor: every connection may always hold [`MIN_FAIR_SHARE`], so that each one makes
//! progress however many share the budget; the total is therefore at most the budget plus
//! that floor per connection.
//!
//! After a burst, the memory goes back to the operating system ([`Recycling`]): the blocks
//! pending output was held in stay on this thread's free list for reuse while they are needed,
//! and are unmapped a few per turn once they are not (see `connection::blocks` for how and
//! why that way).

use std::time::{Duration, Instant};

use super::deadlines::{Deadlines, Timer};
use crate::connection::blocks;
use crate::connection::Limits;
use crate::stats::Stats;

/// The memory budget never squeezes a connection below this much pending output.
const MIN_FAIR_SHARE: usize = 64 * 1024;

/// Output that made no write progress for this long means the peer stopped reading: the
/// connection gets the configured allowance. Long enough that a reading peer that is merely
/// slow, or descheduled for a moment, is not mistaken for one that stopped; short enough that a
/// write-before-read client waits for it once, unnoticed.
pub(super) const STOPPED_READING_AFTER: Duration = Duration::from_millis(200);

/// What a connection's peer does with its output, as far as the server can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Peer {
    /// Output makes progress (or nothing is owed): the small bound applies.
    Reading,
    /// Output made no progress for [`STOPPED_READING_AFTER`]: the configured allowance applies.
    StoppedReading,
}

/// Pending output across connections, and the limits that follow from it.
#[derive(Debug)]
pub(super) struct MemoryBudget {
    /// The configured per-connection limits (for a peer that stopped reading).
    limits: Limits,
    /// `Config::max_pending_reading`: the high-water mark while the peer reads.
    reading_high_water: usize,
    /// `Config::memory_budget`.
    budget: usize,
    /// Pending output summed over connections.
    pending_total: usize,
    /// Connections holding some pending output.
    buffering_conns: usize,
}

impl MemoryBudget {
    /// No output pending yet.
    pub(super) fn new(limits: Limits, reading_high_water: usize, budget: usize) -> MemoryBudget {
        MemoryBudget {
            limits,
            reading_high_water,
            budget,
            pending_total: 0,
            buffering_conns: 0,
        }
    }

    /// The limits for the next drive of a connection holding `own_pending` bytes whose `peer`
    /// reads or not: the small bound or the configured one, lowered so that it grows at most
    /// into what is left of the budget (and, over the budget, not at all, and no higher than a
    /// fair share).
    pub(super) fn limits_for(&self, own_pending: usize, peer: Peer) -> Limits {
        let bound = self.bound(peer);
        let cap = match self.budget.checked_sub(self.pending_total) {
            Some(left) => own_pending.saturating_add(left),
            None => own_pending.min(self.budget / self.buffering_conns.max(1)),
        };
        let high_water = cap.max(MIN_FAIR_SHARE).min(bound);
        if high_water == self.limits.high_water {
            return self.limits;
        }
        Limits {
            high_water,
            low_water: self.limits.low_water.min(high_water / 4),
            ..self.limits
        }
    }

    /// The high-water mark for a connection whose `peer` reads or not, before the budget.
    fn bound(&self, peer: Peer) -> usize {
        match peer {
            Peer::Reading => self.limits.high_water.min(self.reading_high_water),
            Peer::StoppedReading => self.limits.high_water,
        }
    }

    /// Accounts one drive: a connection's pending output went from `before` to `after`, and it
    /// paused `pauses` times under `limits`, given for a `peer` reading or not (counted as a
    /// budget pause if the budget had lowered them).
    pub(super) fn record(
        &mut self,
        (before, after): (usize, usize),
        pauses: usize,
        limits: &Limits,
        peer: Peer,
        stats: &mut Stats,
    ) {
        self.pending_total = self.pending_total + after - before;
        self.buffering_conns =
            self.buffering_conns + usize::from(after > 0) - usize::from(before > 0);
        if pauses > 0 && limits.high_water < self.bound(peer) {
            stats.memory_budget_pauses += 1;
        }
    }

    /// A connection holding `pending` bytes is gone.
    pub(super) fn release(&mut self, pending: usize) {
        self.pending_total -= pending;
        self.buffering_conns -= usize::from(pending > 0);
    }

    /// Pending output summed over connections, now.
    pub(super) fn pending_total(&self) -> usize {
        self.pending_total
    }
}

/// Gives the blocks of pending output back once nobody needs them: a decay of the free list
/// (`Timer::FreeListDecay` in the registry, set while the list holds blocks) and, each turn,
/// a few of its surplus blocks unmapped.
#[derive(Debug, Default)]
pub(super) struct Recycling;

impl Recycling {
    /// Once per turn, at `now`: sets the decay while the free list holds blocks, and unmaps
    /// some of its surplus.
    pub(super) fn tick(&mut self, now: Instant, deadlines: &mut Deadlines) {
        if deadlines.get(Timer::FreeListDecay).is_none() && blocks::free_blocks() > 0 {
            deadlines.set(
                Timer::FreeListDecay,
                now.checked_add(blocks::DECAY_INTERVAL),
            );
        }
        blocks::release();
    }

    /// The decay is due (`Timer::FreeListDecay`).
    pub(super) fn decay(&mut self) {
        blocks::decay();
    }

    /// True while surplus blocks wait to be unmapped: the loop should come round again soon.
    pub(super) fn has_work(&self) -> bool {
        blocks::has_surplus()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;
    const READING: usize = 256 * 1024;

    fn budget(total: usize) -> MemoryBudget {
        let limits = Limits {
            high_water: 4 * MIB,
            low_water: MIB,
            read_budget: 256 * 1024,
            write_budget: 256 * 1024,
        };
        MemoryBudget::new(limits, READING, total)
    }

    /// Moves one connection's pending output from `before` to `after`.
    fn account(memory: &mut MemoryBudget, before: usize, after: usize) {
        let limits = memory.limits_for(before, Peer::StoppedReading);
        let peer = Peer::StoppedReading;
        memory.record((before, after), 0, &limits, peer, &mut Stats::default());
    }

    #[test]
    fn far_under_the_budget_the_configured_limits_hold() {
        let mut memory = budget(64 * MIB);
        account(&mut memory, 0, 10 * MIB);
        assert_eq!(
            memory.limits_for(0, Peer::StoppedReading).high_water,
            4 * MIB
        );
        assert_eq!(memory.limits_for(0, Peer::StoppedReading).low_water, MIB);
    }

    #[test]
    fn a_connection_grows_only_into_what_is_left() {
        let mut memory = budget(8 * MIB);
        account(&mut memory, 0, 3 * MIB);
        account(&mut memory, 0, 3 * MIB);
        // 2 MiB left: a newcomer may take it, one holding 1 MiB may reach 3 MiB.
        assert_eq!(
            memory.limits_for(0, Peer::StoppedReading).high_water,
            2 * MIB
        );
        assert_eq!(
            memory.limits_for(MIB, Peer::StoppedReading).high_water,
            3 * MIB
        );
        assert_eq!(
            memory.limits_for(0, Peer::StoppedReading).low_water,
            MIB / 2
        );
    }

    #[test]
    fn over_the_budget_nobody_grows_past_the_floor_and_big_holders_wait_for_a_fair_share() {
        let mut memory = budget(4 * MIB);
        account(&mut memory, 0, 4 * MIB);
        account(&mut memory, 0, MIB / 2); // over by half a MiB: two hold output
        assert_eq!(
            memory.limits_for(0, Peer::StoppedReading).high_water,
            MIN_FAIR_SHARE
        );
        assert_eq!(
            memory.limits_for(MIB / 2, Peer::StoppedReading).high_water,
            MIB / 2
        );
        // The fair share is 2 MiB: the 4 MiB holder is paused until it is down to 512 KiB.
        let big = memory.limits_for(4 * MIB, Peer::StoppedReading);
        assert_eq!(big.high_water, 2 * MIB);
        assert_eq!(big.low_water, MIB / 2);
    }

    #[test]
    fn the_total_stays_within_the_budget_plus_the_floor_per_connection() {
        // Twenty connections that never drain, each taking all the room it is given.
        let mut memory = budget(3 * MIB);
        let mut held = [0usize; 20];
        for _round in 0..5 {
            for own in held.iter_mut() {
                let room = memory
                    .limits_for(*own, Peer::StoppedReading)
                    .high_water
                    .saturating_sub(*own);
                account(&mut memory, *own, *own + room);
                *own += room;
            }
        }
        let total: usize = held.iter().sum();
        assert_eq!(total, memory.pending_total());
        assert!(total <= 3 * MIB + 20 * MIN_FAIR_SHARE, "{total}");
        assert!(total >= 3 * MIB, "the budget was not used: {total}");
    }

    #[test]
    fn a_reading_peer_gets_the_small_bound_and_one_that_stopped_the_allowance() {
        let mut memory = budget(64 * MIB);
        let reading = memory.limits_for(0, Peer::Reading);
        assert_eq!(reading.high_water, READING);
        assert!(reading.low_water < reading.high_water);
        assert_eq!(
            memory.limits_for(0, Peer::StoppedReading).high_water,
            4 * MIB
        );
        // A pause at the small bound is not the budget's doing.
        let mut stats = Stats::default();
        let peer = Peer::Reading;
        memory.record((0, READING), 1, &reading, peer, &mut stats);
        assert_eq!(stats.memory_budget_pauses, 0);
        // Under a budget smaller than the small bound, the budget still rules.
        let mut tight = budget(MIB);
        account(&mut tight, 0, MIB - MIN_FAIR_SHARE);
        let squeezed = tight.limits_for(0, Peer::Reading);
        assert_eq!(squeezed.high_water, MIN_FAIR_SHARE);
        tight.record((0, MIN_FAIR_SHARE), 1, &squeezed, peer, &mut stats);
        assert_eq!(stats.memory_budget_pauses, 1);
    }
}
