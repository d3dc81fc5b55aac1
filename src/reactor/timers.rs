//! Time in the loop: what the reactor does when a deadline of its registry (`deadlines`) comes
//! due, and the poll timeout that wakes the loop for the first of them. Every timed thing goes
//! through that one registry: the idle and stall deadlines of connections, the accept retry
//! (`admission`), the idle-pipe sweep (`pipes`), the group post and the stats line (`report`),
//! the metrics scrape expiry (`scrape`) and the drain deadline (`shutdown`).
//!
//! Every check here uses the turn's `now`, read once after `poll` returns, and so do the
//! activity clocks of the connections a turn drives: a timeout can fire up to one turn early,
//! and a turn's work is bounded (`turn`: 2 ms, plus whatever time the machine takes the CPU
//! away). A new connection is stamped when accepted (`admission`). The other clock read here
//! is in `poll_timeout`, before `poll`: see there why.

use std::time::{Duration, Instant};

use super::deadlines::{Due, Owner, Timer};
use super::slot::Stamp;
use super::Server;

impl Server {
    /// The loop starts at `now`: uptime counts from here, and the periodic timers start.
    pub(super) fn start(&mut self, now: Instant) {
        self.started = now;
        let first_line = self.stats_every.and_then(|every| now.checked_add(every));
        self.deadlines.set(Timer::StatsLine, first_line);
        // A group member posts at once, then every `post_every`.
        if self.group.as_ref().and_then(|g| g.post_every()).is_some() {
            self.deadlines.set(Timer::GroupPost, Some(now));
        }
    }

    /// Fires everything due at `now`, in the registry's order: connection timeouts first (and
    /// their teardown), then the accept retry, the idle-pipe sweep, the group post, the stats
    /// line, the metrics scrape expiry, the drain deadline.
    pub(super) fn check_timers(&mut self, now: Instant) {
        let stamp = Stamp::at(self.started, now);
        while let Some(due) = self.deadlines.pop_due(now) {
            match due {
                Due::Connection(owner) => self.expire_connection(owner, now, stamp),
                Due::Timer(timer, at) => {
                    // Connections closed by their timeouts go before any other timer runs.
                    self.remove_finished();
                    self.on_timer(timer, at, now);
                }
            }
        }
        self.remove_finished();
    }

    /// One of the reactor's timers, set for `at`, is due at `now`. A periodic one is set again
    /// here, always for later than `now`.
    fn on_timer(&mut self, timer: Timer, at: Instant, now: Instant) {
        match timer {
            Timer::AcceptRetry => self.queues.accept_ready = true,
            Timer::PipeSweep => self.sweep_idle_pipes(now),
            Timer::GroupPost => self.post_to_group(now),
            Timer::StatsLine => {
                self.log_report();
                let every = self.stats_every.unwrap_or(Duration::from_secs(1));
                self.deadlines
                    .set(Timer::StatsLine, next_tick(at, now, every));
            }
            Timer::ScrapeExpiry => self.expire_scrapes(now),
            Timer::DrainEnd => self.abort_remaining(),
        }
    }

    /// Closes the connection `owner` if its idle or stall deadline passed; re-arms it if its
    /// deadline moved on since its entry was pushed.
    fn expire_connection(&mut self, owner: Owner, now: Instant, stamp: Stamp) {
        let Some(slot) = self.slots.get_mut(owner.key).filter(|s| s.id == owner.id) else {
            return; // closed since; the key may belong to someone else now
        };
        slot.timer_armed = false;
        match slot.next_timeout(&self.timeouts, now, stamp) {
            // A connection already closed in this batch is in `finished` already.
            Some((at, reason)) if at <= now && slot.conn.close_reason().is_none() => {
                log::debug!("closing #{}: {reason:?}", owner.key);
                slot.conn.abort(reason);
                self.queues.finished.push(owner.key);
            }
            Some((at, _)) if at <= now => {}
            Some((at, _)) => {
                slot.timer_armed = true;
                self.deadlines.push(at, owner);
            }
            None => {}
        }
    }

    /// Stale entries of closed connections wait for their deadline; under heavy churn this
    /// sweeps them out, so the heap stays proportional to the open connections.
    pub(super) fn sweep_deadlines(&mut self) {
        if self.deadlines.connections() > 2 * self.slots.len() + 1024 {
            let slots = &self.slots;
            self.deadlines
                .retain(|owner| slots.get(owner.key).is_some_and(|s| s.id == owner.id));
        }
    }

    /// How long `poll` may sleep: zero when work is queued; otherwise until the next deadline
    /// in the registry, or forever.
    pub(super) fn poll_timeout(&self) -> Option<Duration> {
        let queues = &self.queues;
        let work_queued = !queues.fresh.is_empty() || !queues.ready.is_empty();
        if queues.accept_ready || queues.udp_ready || work_queued {
            return Some(Duration::ZERO);
        }
        let next = self.deadlines.next()?;
        // A fresh clock read, not the turn's `now`: that one is as old as the turn's work, and
        // a timeout measured from it would sleep past the deadline by that much.
        Some(next.saturating_duration_since(Instant::now()))
    }
}

/// The next stats tick after the one set for `at` fired at `now`: one `every` later, catching
/// up after a long turn but never scheduling a burst of lines, and never at or before `now`.
fn next_tick(at: Instant, now: Instant, every: Duration) -> Option<Instant> {
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

    #[test]
    fn stats_ticks_keep_their_rhythm_and_never_burst() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // On time: one interval after the tick that fired.
        assert_eq!(next_tick(t0, t0 + s(0), s(10)), Some(t0 + s(10)));
        // A little late: the rhythm holds.
        assert_eq!(next_tick(t0, t0 + s(3), s(10)), Some(t0 + s(10)));
        // Ticks missed: the next one is one interval from now, not a burst of catch-ups.
        assert_eq!(next_tick(t0, t0 + s(35), s(10)), Some(t0 + s(45)));
        assert_eq!(next_tick(t0, t0 + s(10), s(10)), Some(t0 + s(20)));
    }
}
