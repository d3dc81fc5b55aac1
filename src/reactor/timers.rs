//! Time in the loop: idle and stall deadlines of connections, the moment a paused connection's
//! peer counts as having stopped reading (`memory`), the periodic stats line, and
//! the poll timeout that wakes the loop for whichever comes first (or for the accept retry and
//! the drain deadline, which their own policies keep).
//!
//! Every check here uses the turn's `now`, read once after `poll` returns, and so do the
//! activity clocks of the connections a turn drives: a timeout can fire up to one turn early,
//! and a turn's work is bounded (`turn`: 2 ms, plus whatever time the machine takes the CPU
//! away). A new connection is stamped when accepted (`admission`). The other clock read here
//! is in `poll_timeout`, before `poll`: see there why.

use std::time::{Duration, Instant};

use slab::Slab;

use super::deadlines::Deadlines;
use super::slot::{Slot, Stamp};
use super::Server;
use crate::config::Config;

/// `Config::idle_timeout` and `Config::stall_timeout`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// Close a connection that moved no byte for this long.
    pub(super) idle: Option<Duration>,
    /// Close a connection whose pending output made no write progress for this long.
    pub(super) stall: Option<Duration>,
}

/// The connections' deadlines and the stats tick.
#[derive(Debug)]
pub(super) struct Timers {
    timeouts: Timeouts,
    /// Idle and stall deadlines, one entry per connection at most (see `deadlines`).
    deadlines: Deadlines,
    /// Connections paused at the small bound for a reading peer, woken when their peer counts
    /// as having stopped reading (one entry per connection at most): no event would come for
    /// them, since their peer neither reads nor can write more.
    stopped_readers: Deadlines,
    stats_interval: Option<Duration>,
    next_stats_at: Option<Instant>,
    /// When the loop started: connections keep coarse stamps relative to it (`slot::Stamp`).
    started: Instant,
}

impl Timers {
    /// The timers `config` asks for; nothing scheduled until [`Timers::start`].
    pub(super) fn new(config: &Config) -> Timers {
        Timers {
            // Longer than a stamp can measure (400 days) is as good as off.
            timeouts: Timeouts {
                idle: config.idle_timeout.filter(|&t| t <= Stamp::MAX_AGE),
                stall: config.stall_timeout.filter(|&t| t <= Stamp::MAX_AGE),
            },
            deadlines: Deadlines::default(),
            stopped_readers: Deadlines::default(),
            stats_interval: config.stats_interval,
            next_stats_at: None,
            started: Instant::now(),
        }
    }

    /// The loop starts at `now`: schedules the first stats line.
    pub(super) fn start(&mut self, now: Instant) {
        self.started = now;
        self.next_stats_at = self.stats_interval.and_then(|every| now.checked_add(every));
    }

    /// Gives the connection in slab entry `key` a deadline entry, unless it has one or is
    /// heading for no timeout.
    pub(super) fn arm(&mut self, key: usize, slot: &mut Slot, now: Instant) {
        if slot.timer_armed {
            return;
        }
        let stamp = Stamp::at(self.started, now);
        if let Some((at, _)) = slot.next_timeout(&self.timeouts, now, stamp) {
            slot.timer_armed = true;
            self.deadlines.push(at, slot.owner(key));
        }
    }

    /// The connection in slab entry `key` paused at the small bound while its peer read:
    /// wakes it when the peer will count as having stopped reading, to read on under the
    /// configured allowance (unless write progress comes first; then it is paused as before).
    pub(super) fn wake_if_peer_stops(&mut self, key: usize, slot: &mut Slot, now: Instant) {
        if slot.allowance_armed {
            return;
        }
        let stamp = Stamp::at(self.started, now);
        if let Some(at) = slot.stops_reading_at(now, stamp) {
            slot.allowance_armed = true;
            self.stopped_readers.push(at, slot.owner(key));
        }
    }

    /// Stale entries of closed connections wait for their deadline; under heavy churn this
    /// sweeps them out, so the heaps stay proportional to the open connections.
    pub(super) fn sweep(&mut self, slots: &Slab<Slot>) {
        for heap in [&mut self.deadlines, &mut self.stopped_readers] {
            if heap.len() > 2 * slots.len() + 1024 {
                heap.retain(|owner| slots.get(owner.key).is_some_and(|s| s.id == owner.id));
            }
        }
    }

    /// True when the stats line is due at `now`; schedules the next one.
    fn stats_due(&mut self, now: Instant) -> bool {
        let Some(at) = self.next_stats_at.filter(|&at| now >= at) else {
            return false;
        };
        let every = self.stats_interval.unwrap_or(Duration::from_secs(1));
        // Catch up after a long turn, but never schedule a burst of lines.
        let base = now.checked_sub(every).map_or(at, |floor| at.max(floor));
        self.next_stats_at = base.checked_add(every);
        true
    }
}

impl Server {
    /// Fires everything due at `now`: connection timeouts, the accept retry, the idle-pipe
    /// sweep, the free list's decay (and unmapping of its surplus), the watchdog, the stats
    /// line, the drain deadline.
    pub(super) fn check_timers(&mut self, now: Instant) {
        self.expire_connections(now);
        self.wake_stopped_readers(now);
        if self.admission.retry_due(now) {
            self.queues.accept_ready = true;
        }
        self.sweep_idle_pipes(now);
        self.recycling.tick(now);
        self.watch_connections(now);
        self.post_if_due(now);
        if self.timers.stats_due(now) {
            self.log_report();
        }
        #[cfg(feature = "metrics")]
        if let Some(metrics) = self.metrics.as_mut() {
            metrics.expire(now);
        }
        if self.shutdown.deadline_passed(now) {
            self.abort_remaining();
        }
    }

    /// Closes connections whose idle or stall deadline passed; re-arms the ones whose deadline
    /// moved on since their entry was pushed.
    fn expire_connections(&mut self, now: Instant) {
        let timers = &mut self.timers;
        let stamp = Stamp::at(timers.started, now);
        while let Some(owner) = timers.deadlines.pop_expired(now) {
            let Some(slot) = self.slots.get_mut(owner.key).filter(|s| s.id == owner.id) else {
                continue; // closed since; the key may belong to someone else now
            };
            slot.timer_armed = false;
            match slot.next_timeout(&timers.timeouts, now, stamp) {
                // A connection already closed in this batch is in `finished` already.
                Some((at, reason)) if at <= now && slot.conn.close_reason().is_none() => {
                    log::debug!("closing #{}: {reason:?}", owner.key);
                    slot.conn.abort(reason);
                    self.queues.finished.push(owner.key);
                }
                Some((at, _)) if at <= now => {}
                Some((at, _)) => {
                    slot.timer_armed = true;
                    timers.deadlines.push(at, owner);
                }
                None => {}
            }
        }
        self.remove_finished();
    }

    /// Queues the connections whose peer now counts as having stopped reading: their next
    /// drive reads on under the configured allowance. A connection that made progress since
    /// its entry was pushed is driven all the same; its drive pauses it again, and re-arms.
    fn wake_stopped_readers(&mut self, now: Instant) {
        while let Some(owner) = self.timers.stopped_readers.pop_expired(now) {
            let Some(slot) = self.slots.get_mut(owner.key).filter(|s| s.id == owner.id) else {
                continue; // closed since; the key may belong to someone else now
            };
            slot.allowance_armed = false;
            if !slot.queued {
                slot.queued = true;
                self.queues.ready.push(owner.key);
            }
        }
    }

    /// How long `poll` may sleep: zero when work is queued; otherwise until the next timer, or
    /// forever.
    pub(super) fn poll_timeout(&self) -> Option<Duration> {
        let queues = &self.queues;
        let work_queued = !queues.fresh.is_empty() || !queues.ready.is_empty();
        if queues.accept_ready || queues.udp_ready || work_queued || self.recycling.has_work() {
            return Some(Duration::ZERO);
        }
        let next = [
            self.admission.retry_at(),
            self.timers.next_stats_at,
            self.shutdown.deadline(),
            self.timers.deadlines.next(),
            self.timers.stopped_readers.next(),
            self.recycling.next(),
            self.pipes.next_sweep(),
            self.watchdog.next_look(),
            self.group.as_ref().and_then(|member| member.next_post()),
            self.metrics_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()?;
        // A fresh clock read, not the turn's `now`: that one is as old as the turn's work, and
        // a timeout measured from it would sleep past the deadline by that much.
        Some(next.saturating_duration_since(Instant::now()))
    }
}
