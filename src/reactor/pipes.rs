//! Which connections echo with zero copy: bulk ones, while pipes are left to give.
//!
//! A pipe costs two descriptors, so only a connection that reads [`ZERO_COPY_MIN_READ`] bytes
//! in one turn gets one, and at most `Config::zero_copy_conns` hold one at a time. Small
//! messages stay on the copying fast path, which costs the same syscalls and no descriptors.
//! The pipe itself, once given, belongs to the connection's state machine (see `connection`).

use super::slot::Slot;
use crate::connection::Outcome;
use crate::stats::Stats;
use crate::zero_copy::Pipe;

/// A connection that reads this much in one turn carries bulk data and is offered a pipe.
const ZERO_COPY_MIN_READ: usize = 32 * 1024;

/// How many pipes may be open, and how many are.
#[derive(Debug)]
pub(super) struct PipeBudget {
    /// `Config::zero_copy_conns`.
    max: usize,
    /// Connections holding a pipe now.
    open: usize,
}

impl PipeBudget {
    /// Pipes held by connections now.
    pub(super) fn open(&self) -> usize {
        self.open
    }

    /// No pipe open yet; at most `max` at once.
    pub(super) fn new(max: usize) -> PipeBudget {
        PipeBudget { max, open: 0 }
    }

    /// True when a drive showed bulk traffic on a connection that could take a pipe now.
    pub(super) fn wants(&self, outcome: &Outcome, slot: &Slot) -> bool {
        outcome.bytes_read >= ZERO_COPY_MIN_READ && slot.conn.can_use_pipe()
    }

    /// Gives the connection a pipe if one is left to give (else it is offered again on its
    /// next bulk turn). A pipe that cannot be made (out of descriptors) leaves the connection
    /// copying for good.
    pub(super) fn offer(&mut self, key: usize, slot: &mut Slot, stats: &mut Stats) {
        if self.open >= self.max {
            return;
        }
        match Pipe::new() {
            Ok(pipe) => {
                if slot.conn.use_pipe(pipe).is_ok() {
                    self.open += 1;
                    stats.zero_copy_conns += 1;
                    log::debug!("{} (#{key}) echoes with zero copy", slot.peer);
                }
            }
            Err(e) => {
                slot.conn.pipe_unavailable();
                stats.zero_copy_unavailable += 1;
                log::debug!("no zero-copy pipe for {} (#{key}): {e}", slot.peer);
            }
        }
    }

    /// A connection is gone, and with it its pipe, if it had one.
    pub(super) fn release(&mut self, slot: &Slot) {
        self.open -= usize::from(slot.conn.uses_pipe());
    }
}
