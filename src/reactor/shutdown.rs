//! Graceful shutdown: a handle that asks for it from any thread, and the drain that follows.
//!
//! The handle sets a flag and wakes the poller (`mio::Waker`); the loop then stops accepting
//! and serving UDP, asks every connection to flush, send FIN and linger until the peer's FIN,
//! and, at `Config::drain_timeout`, closes whatever is left.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Waker;

use super::deadlines::Timer;
use super::Server;
use crate::connection::CloseReason;

/// Stops a running [`Server`] (or every reactor of a [`ServerGroup`](crate::ServerGroup))
/// from any thread: stop accepting, drain, return the stats.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    /// One flag and waker per reactor this handle stops.
    reactors: Vec<(Arc<AtomicBool>, Arc<Waker>)>,
}

impl ShutdownHandle {
    /// Asks the server to shut down gracefully. Calling it again changes nothing.
    pub fn shutdown(&self) {
        for (requested, waker) in &self.reactors {
            requested.store(true, Ordering::SeqCst);
            if let Err(e) = waker.wake() {
                log::error!("cannot wake the event loop for shutdown: {e}");
            }
        }
    }

    /// One handle that stops every reactor the given handles stop.
    pub(crate) fn join(handles: impl IntoIterator<Item = ShutdownHandle>) -> ShutdownHandle {
        ShutdownHandle {
            reactors: handles.into_iter().flat_map(|h| h.reactors).collect(),
        }
    }
}

/// The server's side of shutdown: the flag the handles set, and the drain once it began.
#[derive(Debug)]
pub(super) struct Shutdown {
    requested: Arc<AtomicBool>,
    waker: Arc<Waker>,
    drain_timeout: Duration,
    /// Shutdown began (the drain is under way, until `Timer::DrainEnd`).
    begun: bool,
}

impl Shutdown {
    /// Not requested yet; `waker` is registered with the server's poller.
    pub(super) fn new(waker: Waker, drain_timeout: Duration) -> Shutdown {
        Shutdown {
            requested: Arc::new(AtomicBool::new(false)),
            waker: Arc::new(waker),
            drain_timeout,
            begun: false,
        }
    }

    /// The waker, shared with the other handles that wake the loop (reports).
    pub(super) fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// A handle for another thread.
    pub(super) fn handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            reactors: vec![(Arc::clone(&self.requested), Arc::clone(&self.waker))],
        }
    }
}

impl Server {
    /// The waker fired: logs a report and/or begins shutdown, as handles asked (wake-ups are
    /// not counted, so the flags are what say why).
    pub(super) fn on_wake(&mut self, now: Instant) {
        self.report_if_requested();
        if self.shutdown.requested.load(Ordering::SeqCst) && !self.shutdown.begun {
            self.begin_shutdown(now);
        }
    }

    /// Stops accepting and serving UDP; asks every connection to drain and finish.
    fn begin_shutdown(&mut self, now: Instant) {
        log::info!(
            "shutting down: draining {} connection(s) for up to {:?}",
            self.slots.len(),
            self.shutdown.drain_timeout
        );
        self.shutdown.begun = true;
        // A timeout too long for the clock never fires.
        let drain_end = now.checked_add(self.shutdown.drain_timeout);
        self.deadlines.set(Timer::DrainEnd, drain_end);
        self.listeners.clear();
        for udp in self.udp.drain(..) {
            // Closing the socket drops the replies still queued: counted, not lost.
            self.stats.udp_dropped_shutdown += udp.socket.queued() as u64;
        }
        self.queues.accept_ready = false;
        self.queues.udp_ready = false;
        self.deadlines.cancel(Timer::AcceptRetry);
        for (key, slot) in self.slots.iter_mut() {
            slot.conn.begin_drain();
            if !slot.queued {
                slot.queued = true;
                self.queues.ready.push(key);
            }
        }
    }

    /// The drain deadline passed: closes what is left. Even a connection that sent its FIN and
    /// was only waiting for the peer's counts as cut off: closing it now may find unread input
    /// (the kernel then sends RST and drops echoes still queued for the peer).
    pub(super) fn abort_remaining(&mut self) {
        for (key, slot) in self.slots.iter_mut() {
            if slot.conn.close_reason().is_none() {
                slot.conn.abort(CloseReason::DrainTimeout);
                self.queues.finished.push(key);
            }
        }
        self.remove_finished();
    }

    /// True once shutdown began and every connection is gone: the loop ends.
    pub(super) fn is_finished(&self) -> bool {
        self.shutdown.begun && self.slots.is_empty()
    }
}
