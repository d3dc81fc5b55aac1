//! The memory budget: a soft bound on pending output summed over all connections.
//!
//! Each connection has its own high-water mark (`Config::max_pending`); this adds a global
//! one. While the total is over `Config::memory_budget`, every connection's limits are lowered
//! to a fair share (the budget divided among the connections holding output), so the ones
//! above it stop reading until the total comes down. Nobody is dropped for it.

use crate::connection::Limits;
use crate::stats::Stats;

/// The memory budget never squeezes a connection below this much pending output.
const MIN_FAIR_SHARE: usize = 64 * 1024;

/// Pending output across connections, and the limits that follow from it.
#[derive(Debug)]
pub(super) struct MemoryBudget {
    /// The configured per-connection limits.
    limits: Limits,
    /// `Config::memory_budget`.
    budget: usize,
    /// Pending output summed over connections.
    pending_total: usize,
    /// Connections holding some pending output.
    buffering_conns: usize,
}

impl MemoryBudget {
    /// No output pending yet.
    pub(super) fn new(limits: Limits, budget: usize) -> MemoryBudget {
        MemoryBudget {
            limits,
            budget,
            pending_total: 0,
            buffering_conns: 0,
        }
    }

    /// The per-connection limits for the next drive: as configured, or lowered to a fair share
    /// while the budget is exceeded.
    pub(super) fn limits(&self) -> Limits {
        if self.pending_total <= self.budget {
            return self.limits;
        }
        let fair_share = (self.budget / self.buffering_conns.max(1))
            .clamp(MIN_FAIR_SHARE, self.limits.high_water);
        Limits {
            high_water: fair_share,
            low_water: self.limits.low_water.min(fair_share / 4),
            ..self.limits
        }
    }

    /// Accounts one drive: a connection's pending output went from `before` to `after`, and it
    /// paused `pauses` times under `limits` (counted as a budget pause if the budget had
    /// lowered them).
    pub(super) fn record(
        &mut self,
        before: usize,
        after: usize,
        pauses: usize,
        limits: &Limits,
        stats: &mut Stats,
    ) {
        self.pending_total = self.pending_total + after - before;
        self.buffering_conns =
            self.buffering_conns + usize::from(after > 0) - usize::from(before > 0);
        if pauses > 0 && limits.high_water < self.limits.high_water {
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
