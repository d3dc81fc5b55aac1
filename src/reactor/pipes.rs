//! Which connections echo with zero copy: bulk ones, while descriptors are spare.
//!
//! A pipe costs two descriptors, and descriptors belong to connections first: the default
//! `max_connections` is the open-file limit minus a small reserve, whatever the zero-copy
//! setting. So a pipe is made only while the open connections leave two descriptors spare
//! (and fewer than `Config::zero_copy_conns` pipes exist, across reactors: `shared`), and a
//! pipe is given back:
//! - when its connection goes idle: no byte moved for [`PIPE_IDLE`] (checked by a sweep that
//!   runs only while this reactor holds pipes), or
//! - when descriptors run short: a new connection would leave too few for the pipes, or
//!   `accept` failed with EMFILE. Then every pipe holding no bytes is given back at once.
//!
//! Only a connection that reads [`ZERO_COPY_MIN_READ`] bytes in one turn is offered a pipe.
//! Small messages stay on the copying fast path, which costs the same syscalls and no
//! descriptors. The pipe itself, once given, belongs to the connection's state machine (see
//! `connection`); it is taken back only while it holds no bytes, so nothing is reordered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;

use super::deadlines::{Deadlines, Timer};
use super::shared::SharedLimits;
use super::slot::{Slot, Stamp};
use crate::connection::Outcome;
use crate::stats::Stats;
use crate::zero_copy::Pipe;

/// A connection that reads this much in one turn carries bulk data and is offered a pipe.
const ZERO_COPY_MIN_READ: usize = 32 * 1024;

/// A pipe whose connection moved no byte for this long is given back.
pub(super) const PIPE_IDLE: Duration = Duration::from_secs(1);

/// This reactor's pipes; the count across reactors is in [`SharedLimits`]. The idle sweep is
/// `Timer::PipeSweep` in the reactor's registry, set only while this reactor holds pipes.
#[derive(Debug)]
pub(super) struct PipeBudget {
    shared: Arc<SharedLimits>,
    /// Slab keys of this reactor's connections holding a pipe (at most `zero_copy_conns`).
    holders: Vec<usize>,
}

impl PipeBudget {
    /// Pipes held by this reactor's connections now.
    pub(super) fn open(&self) -> usize {
        self.holders.len()
    }

    /// No pipe held yet; the limits are counted in `shared`.
    pub(super) fn new(shared: Arc<SharedLimits>) -> PipeBudget {
        PipeBudget {
            shared,
            holders: Vec::new(),
        }
    }

    /// True when a drive showed bulk traffic on a connection that could take a pipe now.
    pub(super) fn wants(&self, outcome: &Outcome, slot: &Slot) -> bool {
        outcome.bytes_read >= ZERO_COPY_MIN_READ && slot.conn.can_use_pipe()
    }

    /// Gives the connection a pipe if one is left to give and descriptors are spare (else it
    /// is offered again on its next bulk turn). A pipe that cannot be made (out of
    /// descriptors after all) leaves the connection copying for good.
    pub(super) fn offer(
        &mut self,
        key: usize,
        slot: &mut Slot,
        now: Instant,
        deadlines: &mut Deadlines,
        stats: &mut Stats,
    ) {
        if !self.shared.try_pipe() {
            return;
        }
        match Pipe::new() {
            Ok(pipe) => {
                if slot.conn.use_pipe(pipe).is_ok() {
                    self.holders.push(key);
                    if deadlines.get(Timer::PipeSweep).is_none() {
                        deadlines.set(Timer::PipeSweep, now.checked_add(PIPE_IDLE));
                    }
                    stats.zero_copy_conns += 1;
                    log::debug!("#{key} echoes with zero copy");
                } else {
                    self.shared.release_pipe();
                }
            }
            Err(e) => {
                self.shared.release_pipe();
                slot.conn.pipe_unavailable();
                stats.zero_copy_unavailable += 1;
                log::debug!("no zero-copy pipe for #{key}: {e}");
            }
        }
    }

    /// A connection is gone, and with it its pipe, if it had one.
    pub(super) fn release(&mut self, key: usize, slot: &Slot, deadlines: &mut Deadlines) {
        if slot.conn.uses_pipe() {
            self.forget(key, deadlines);
        }
    }

    /// The connection in slab entry `key` no longer holds a pipe.
    fn forget(&mut self, key: usize, deadlines: &mut Deadlines) {
        if let Some(i) = self.holders.iter().position(|&k| k == key) {
            self.holders.swap_remove(i);
            self.shared.release_pipe();
        }
        if self.holders.is_empty() {
            deadlines.cancel(Timer::PipeSweep);
        }
    }

    /// Takes back the pipes of connections that `give_back` picks, if they hold no bytes.
    /// Returns how many were given back.
    fn take_back(
        &mut self,
        slots: &mut Slab<Slot>,
        deadlines: &mut Deadlines,
        mut give_back: impl FnMut(&Slot) -> bool,
    ) -> usize {
        let mut taken = Vec::new();
        for &key in &self.holders {
            let Some(slot) = slots.get_mut(key) else {
                continue;
            };
            if give_back(slot) && slot.conn.take_pipe().is_some() {
                taken.push(key); // the pipe's descriptors close as it drops
            }
        }
        for &key in &taken {
            self.forget(key, deadlines);
        }
        taken.len()
    }

    /// Descriptors ran short: every pipe holding no bytes is given back, so connections keep
    /// their descriptors. Returns how many were.
    pub(super) fn give_way(
        &mut self,
        slots: &mut Slab<Slot>,
        deadlines: &mut Deadlines,
        stats: &mut Stats,
    ) -> usize {
        let given = self.take_back(slots, deadlines, |_| true);
        stats.zero_copy_reclaimed += given as u64;
        if given > 0 {
            log::debug!("gave back {given} zero-copy pipe(s): descriptors ran short");
        }
        given
    }

    /// Before admitting a connection: if it and the pipes would hold more descriptors than
    /// the limit leaves them, pipes give way.
    pub(super) fn reclaim_if_short(
        &mut self,
        slots: &mut Slab<Slot>,
        deadlines: &mut Deadlines,
        stats: &mut Stats,
    ) {
        if !self.holders.is_empty() && self.shared.descriptors_short() {
            self.give_way(slots, deadlines, stats);
        }
    }

    /// The idle sweep (`Timer::PipeSweep`, due at `now`, also a stamp): pipes whose
    /// connection moved no byte for [`PIPE_IDLE`] are given back; the next sweep is set while
    /// pipes are left.
    pub(super) fn sweep_idle(
        &mut self,
        slots: &mut Slab<Slot>,
        deadlines: &mut Deadlines,
        stats: &mut Stats,
        (now, stamp): (Instant, Stamp),
    ) {
        let given = self.take_back(slots, deadlines, |slot| slot.idle_for(stamp) >= PIPE_IDLE);
        stats.zero_copy_reclaimed += given as u64;
        if given > 0 {
            log::debug!("gave back {given} idle zero-copy pipe(s)");
        }
        if !self.holders.is_empty() {
            deadlines.set(Timer::PipeSweep, now.checked_add(PIPE_IDLE));
        }
    }
}
