//! Reports: the periodic stats line, and the one another thread asks for (the binary's
//! SIGUSR1) through a [`ReportHandle`], which sets a flag and wakes the poller like a shutdown
//! request does. Both log the totals with per-second rates over the interval since the
//! previous report (`crate::report`), and serve the `/metrics` page its snapshot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mio::Waker;

use super::Server;

/// Asks a running [`Server`], from any thread, to log its counters and rates now.
#[derive(Debug, Clone)]
pub struct ReportHandle {
    requested: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ReportHandle {
    pub(super) fn new(requested: &Arc<AtomicBool>, waker: Arc<Waker>) -> ReportHandle {
        ReportHandle {
            requested: Arc::clone(requested),
            waker,
        }
    }

    /// Asks for one report line; requests made before the loop gets to it are merged.
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            log::error!("cannot wake the event loop for a report: {e}");
        }
    }
}

impl Server {
    /// Logs the stats line (totals and rates since the previous one).
    pub(super) fn log_report(&mut self) {
        let report = self.reporter.report(self.stats());
        log::info!("stats {report}");
    }

    /// Logs a report if a [`ReportHandle`] asked for one since the last wake-up.
    pub(super) fn report_if_requested(&mut self) {
        if self.report_requested.swap(false, Ordering::SeqCst) {
            self.log_report();
        }
    }

    /// One counter snapshot per reactor, for the `/metrics` page (one reactor today).
    #[cfg(feature = "metrics")]
    pub(super) fn snapshots(&self) -> Vec<crate::stats::Stats> {
        vec![self.stats()]
    }
}
