//! A TCP connection as the reactor holds it: the socket, beside the connection's state machine
//! (which owns the zero-copy pipe once it has one), plus what the reactor's policies need:
//! identity for stale timer entries, the ready-queue mark, and the activity clocks the idle
//! and stall timeouts read.

use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use super::deadlines::Owner;
use super::timers::Timeouts;
use crate::connection::{Connection, Outcome};
use crate::stats::CloseReason;
use crate::zero_copy::Pipe;

/// One slab entry: a connection and the reactor's bookkeeping for it.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) socket: TcpStream,
    pub(super) conn: Connection<Pipe>,
    pub(super) peer: SocketAddr,
    /// Index of its service in `Server::services` (and `Stats::services`).
    pub(super) service: usize,
    /// Unique for the server's lifetime; a slab key is not.
    pub(super) id: u64,
    /// In the ready queue already (so it is queued once).
    pub(super) queued: bool,
    /// Has an entry in the deadline heap (at most one).
    pub(super) timer_armed: bool,
    /// Last time a byte moved either way (for the idle timeout).
    last_activity: Instant,
    /// Since when output has been pending without write progress (for the stall timeout).
    stalled_since: Option<Instant>,
}

impl Slot {
    /// A fresh connection accepted at `now`, speaking `conn`'s protocol for `service`.
    pub(super) fn new(
        socket: TcpStream,
        peer: SocketAddr,
        (service, conn): (usize, Connection<Pipe>),
        id: u64,
        now: Instant,
    ) -> Slot {
        Slot {
            socket,
            conn,
            peer,
            service,
            id,
            queued: false,
            timer_armed: false,
            last_activity: now,
            stalled_since: None,
        }
    }

    /// Moves the activity clocks after a drive: any byte moved is activity; pending output
    /// with no write progress keeps (or starts) the stall clock, and none stops it.
    pub(super) fn record_progress(&mut self, outcome: &Outcome, now: Instant) {
        if outcome.bytes_read + outcome.bytes_written > 0 {
            self.last_activity = now;
        }
        // Waiting for the peer's FIN after a service finished counts as owing it something: a
        // peer that never closes is closed by the stall timeout, as one that never reads.
        let owes = self.conn.pending() + usize::from(self.conn.awaits_peer_close());
        self.stalled_since = match (owes, self.stalled_since) {
            (0, _) => None,
            (_, Some(since)) if outcome.bytes_written == 0 => Some(since),
            _ => Some(now),
        };
    }

    /// The earliest timeout this connection is heading for, and what it would close it as.
    pub(super) fn next_timeout(&self, timeouts: &Timeouts) -> Option<(Instant, CloseReason)> {
        // `checked_add`: a timeout too long for the clock never fires.
        let idle = timeouts
            .idle
            .and_then(|after| self.last_activity.checked_add(after))
            .map(|at| (at, CloseReason::IdleTimeout));
        let stall = timeouts
            .stall
            .zip(self.stalled_since)
            .and_then(|(after, since)| since.checked_add(after))
            .map(|at| (at, CloseReason::StallTimeout));
        match (idle, stall) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// How this connection's deadline entries name it.
    pub(super) fn owner(&self, key: usize) -> Owner {
        Owner { key, id: self.id }
    }
}
