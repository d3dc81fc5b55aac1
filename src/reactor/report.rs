//! Reports: the periodic stats line, and the one another thread asks for (the binary's
//! SIGUSR1) through a [`ReportHandle`], which sets a flag and wakes the poller like a shutdown
//! request does. Both log the totals with per-second rates over the interval since the
//! previous report (`crate::report`), and serve the `/metrics` page its snapshot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mio::Waker;

use super::deadlines::Timer;
use super::Server;

/// Asks a running [`Server`] (or every reactor of a [`ServerGroup`](crate::ServerGroup)),
/// from any thread, to log its counters and rates now.
#[derive(Debug, Clone)]
pub struct ReportHandle {
    /// One flag and waker per reactor asked.
    reactors: Vec<(Arc<AtomicBool>, Arc<Waker>)>,
}

impl ReportHandle {
    pub(super) fn new(requested: &Arc<AtomicBool>, waker: Arc<Waker>) -> ReportHandle {
        ReportHandle {
            reactors: vec![(Arc::clone(requested), waker)],
        }
    }

    /// One handle that asks every reactor the given handles ask.
    pub(crate) fn join(handles: impl IntoIterator<Item = ReportHandle>) -> ReportHandle {
        ReportHandle {
            reactors: handles.into_iter().flat_map(|h| h.reactors).collect(),
        }
    }

    /// Asks for one report line; requests made before the loop gets to it are merged.
    pub fn request(&self) {
        for (requested, waker) in &self.reactors {
            requested.store(true, Ordering::SeqCst);
            if let Err(e) = waker.wake() {
                log::error!("cannot wake the event loop for a report: {e}");
            }
        }
    }
}

impl Server {
    /// Logs the stats line (totals and rates since the previous one). One reactor of several
    /// posts its counters to the group instead, and reactor 0 logs the group's sum.
    pub(super) fn log_report(&mut self) {
        let stats = self.stats();
        let totals = match &self.group {
            None => stats,
            Some(member) => match member.post(stats) {
                Some(sum) => sum,
                None => return,
            },
        };
        let report = self.reporter.report(totals);
        log::info!("stats {report}");
    }

    /// Logs a report if a [`ReportHandle`] asked for one since the last wake-up.
    pub(super) fn report_if_requested(&mut self) {
        if self.report_requested.swap(false, Ordering::SeqCst) {
            self.log_report();
        }
    }

    /// Posts this reactor's counters to its group, unasked (for the `/metrics` page of
    /// reactor 0), and sets the next post.
    pub(super) fn post_to_group(&mut self, now: std::time::Instant) {
        let Some(every) = self.group.as_ref().and_then(|m| m.post_every()) else {
            return;
        };
        let stats = self.stats();
        if let Some(member) = &self.group {
            member.store(stats);
        }
        self.deadlines.set(Timer::GroupPost, now.checked_add(every));
    }

    /// One counter snapshot per reactor, for the `/metrics` page: this one's now, and in a
    /// group the others' as last posted (at most a second old: see `group`).
    #[cfg(feature = "metrics")]
    pub(super) fn snapshots(&self) -> Vec<crate::stats::Stats> {
        match &self.group {
            None => vec![self.stats()],
            Some(member) => member.snapshots(self.stats()),
        }
    }
}
