//! Graceful shutdown: a handle that asks for it from any thread, and the drain that follows.
//!
//! The handle sets a flag and wakes the poller (`mio::Waker`); the loop then stops accepting
//! and serving UDP, asks every connection to flush, send FIN and linger until the peer's FIN,
//! and, at `Config::drain_timeout`, closes whatever is left.
//!
//! A connection that is quiet when shutdown begins (nothing owed, nothing unread, no byte
//! either way for [`QUIET_AT_SHUTDOWN`]) is closed at once instead: lingering is there so
//! that input still arriving never meets a closed socket (whose RST could destroy echoes in
//! flight), and a quiet peer sends none. Otherwise one idle `nc` held every Ctrl-C for the
//! whole drain timeout, as it does not close on our FIN.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Waker;

use super::slot::{Slot, Stamp};
use super::Server;
use crate::connection::Phase;
use crate::stats::{CloseReason, UdpDrop};

/// A connection that moved no byte for this long, owes nothing and has nothing unread is
/// closed at once on shutdown. Long enough that what it was sent last has been acknowledged
/// on any usual path, so closing sends a plain FIN and nothing is lost.
pub(super) const QUIET_AT_SHUTDOWN: Duration = Duration::from_millis(200);

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
    /// Shutdown began (the drain is under way).
    begun: bool,
    /// When the drain gives up on what is left (`None` before shutdown, or if the timeout is
    /// too long for the clock).
    deadline: Option<Instant>,
}

impl Shutdown {
    /// Not requested yet; `waker` is registered with the server's poller.
    pub(super) fn new(waker: Waker, drain_timeout: Duration) -> Shutdown {
        Shutdown {
            requested: Arc::new(AtomicBool::new(false)),
            waker: Arc::new(waker),
            drain_timeout,
            begun: false,
            deadline: None,
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

    /// When the drain ends, once shutdown began.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// True when the drain deadline passed at `now`.
    pub(super) fn deadline_passed(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|at| now >= at)
    }
}

impl Server {
    /// The waker fired: logs a report and/or begins shutdown, as handles asked (wake-ups are
    /// not counted, so the flags are what say why).
    pub(super) fn on_wake(&mut self, now: Instant) {
        self.report_if_requested();
        self.answer_stats_if_asked();
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
        self.shutdown.deadline = now.checked_add(self.shutdown.drain_timeout);
        self.listeners.clear();
        for udp in self.udp.drain(..) {
            // Closing the socket drops the replies still queued: counted, not lost.
            let queued = udp.socket.queued() as u64;
            self.stats.record_udp_drop(UdpDrop::Shutdown, queued);
            if let Some(service) = self.stats.services.get_mut(udp.service) {
                service.udp_dropped += queued;
            }
        }
        self.queues.accept_ready = false;
        self.queues.udp_ready = false;
        self.admission.stop();
        let stamp = Stamp::at(self.started, now);
        for (key, slot) in self.slots.iter_mut() {
            if is_quiet(slot, stamp) {
                slot.conn.abort(CloseReason::Shutdown);
                self.queues.finished.push(key);
                continue;
            }
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

/// Whether `slot` can be closed at once on shutdown: open, owing nothing, quiet for
/// [`QUIET_AT_SHUTDOWN`], and nothing waiting in its receive buffer (a peek that would
/// block), so that closing sends FIN and no RST.
fn is_quiet(slot: &Slot, now: Stamp) -> bool {
    let nothing_unread = || {
        matches!(slot.socket.peek(&mut [0u8; 1]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    };
    slot.conn.phase() == Phase::Open
        && slot.conn.pending() == 0
        && slot.idle_for(now) >= QUIET_AT_SHUTDOWN
        && nothing_unread()
}
