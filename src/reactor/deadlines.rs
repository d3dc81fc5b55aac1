//! Per-connection deadlines (idle and stall timeouts) in a min-heap with lazy re-arming.
//!
//! Each connection has at most one entry. Its activity timestamps only move forward, so an
//! entry can only fire early, never late: when it fires, the reactor recomputes the real
//! deadline from the connection and either closes it or pushes the later deadline. Cost: O(1)
//! per event (a timestamp store), O(log n) per timeout period per connection, and nothing at
//! all for connections with no deadline. An idle connection is never polled.
//!
//! Entries name a connection by slab key *and* a unique id, because a slab key is reused after
//! the connection that held it closes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Which connection an entry belongs to: its slab key and its unique id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Owner {
    /// The slab key (and token) at the time the entry was pushed.
    pub(super) key: usize,
    /// The connection's unique id, so a reused key is recognised.
    pub(super) id: u64,
}

/// A min-heap of (deadline, owner).
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    heap: BinaryHeap<Reverse<(Instant, Owner)>>,
}

impl Deadlines {
    /// Adds a deadline for `owner`.
    pub(super) fn push(&mut self, at: Instant, owner: Owner) {
        self.heap.push(Reverse((at, owner)));
    }

    /// The earliest deadline, if any (for the poll timeout).
    pub(super) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns one entry whose deadline is at or before `now`.
    pub(super) fn pop_expired(&mut self, now: Instant) -> Option<Owner> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, o))| o),
            _ => None,
        }
    }

    /// Entries, stale ones included.
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when no deadline is pending.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Drops the entries of connections that are gone, so churn cannot grow the heap.
    pub(super) fn retain(&mut self, mut alive: impl FnMut(Owner) -> bool) {
        self.heap.retain(|Reverse((_, owner))| alive(*owner));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_only_expired_entries_in_deadline_order() {
        let start = Instant::now();
        let mut deadlines = Deadlines::default();
        let owner = |key| Owner {
            key,
            id: key as u64,
        };
        deadlines.push(start + Duration::from_secs(3), owner(3));
        deadlines.push(start + Duration::from_secs(1), owner(1));
        deadlines.push(start + Duration::from_secs(2), owner(2));
        assert_eq!(deadlines.next(), Some(start + Duration::from_secs(1)));
        let now = start + Duration::from_secs(2);
        assert_eq!(deadlines.pop_expired(now), Some(owner(1)));
        assert_eq!(deadlines.pop_expired(now), Some(owner(2)));
        assert_eq!(deadlines.pop_expired(now), None);
        deadlines.retain(|o| o.key != 3);
        assert!(deadlines.is_empty());
    }
}
