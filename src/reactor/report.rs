//! Reports: the periodic stats line, and the one another thread asks for (the binary's
//! SIGUSR1) through a [`ReportHandle`], which sets a flag and wakes the poller like a shutdown
//! request does. Both log the totals with per-second rates over the interval since the
//! previous report (`crate::report`), and serve the `/metrics` page its snapshot.

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::Waker;

use crate::stats::Stats;

/// Asks a running [`Server`](crate::Server) (or every reactor of a [`ServerGroup`](crate::ServerGroup)),
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

/// Where one reactor of several posts its counters. The group that composes the reactors
/// (`ServerGroup`) supplies it; a reactor alone has none. The reactor knows only this.
pub(crate) trait Board: Debug + Send {
    /// Posts this reactor's counters (at a stats tick or a report request). The reactor that
    /// logs for the group gets the group's sum back, to log; the others get `None`.
    fn post(&self, stats: Stats) -> Option<Stats>;
    /// Puts this reactor's counters on the board, unasked (for the `/metrics` page).
    fn store(&self, stats: Stats);
    /// Every reactor's counters: `own` (fresh) for this one, the others as last posted.
    #[cfg(feature = "metrics")]
    fn snapshots(&self, own: Stats) -> Vec<Stats>;
    /// How often to post unasked (`Timer::GroupPost`), if at all.
    fn post_every(&self) -> Option<Duration>;
}
