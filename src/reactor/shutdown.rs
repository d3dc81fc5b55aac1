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
use crate::connection::Phase;

/// A connection that moved no byte for this long, owes nothing and has nothing unread is
/// closed at once on shutdown. Long enough that what it was sent last has been acknowledged
/// on any usual path, so closing sends a plain FIN and nothing is lost.
pub(super) const QUIET_AT_SHUTDOWN: Duration = Duration::from_millis(200);

/// Stops a running [`Server`](crate::Server) (or every reactor of a [`ServerGroup`](crate::ServerGroup))
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

    /// True when a handle asked for shutdown and it has not begun yet.
    pub(super) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst) && !self.begun
    }

    /// Shutdown begins at `now`: returns when the drain gives up on what is left (`None` if
    /// the timeout is too long for the clock: it never fires).
    pub(super) fn begin(&mut self, now: Instant) -> Option<Instant> {
        self.begun = true;
        now.checked_add(self.drain_timeout)
    }

    /// Shutdown began: the drain is under way.
    pub(super) fn has_begun(&self) -> bool {
        self.begun
    }

    /// How long the drain may last.
    pub(super) fn drain_timeout(&self) -> Duration {
        self.drain_timeout
    }
}

/// Whether `slot` can be closed at once on shutdown: open, owing nothing, quiet for
/// [`QUIET_AT_SHUTDOWN`], and nothing waiting in its receive buffer (a peek that would
/// block), so that closing sends FIN and no RST.
pub(super) fn is_quiet(slot: &Slot, now: Stamp) -> bool {
    let nothing_unread = || {
        matches!(slot.socket.peek(&mut [0u8; 1]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    };
    slot.conn.phase() == Phase::Open
        && slot.conn.pending() == 0
        && slot.idle_for(now) >= QUIET_AT_SHUTDOWN
        && nothing_unread()
}
