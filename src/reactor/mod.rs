//! The reactor: one thread, one `mio::Poll`, the listener, the UDP socket and a slab of
//! connections. [`Server::run`], right below, is the event loop; read it first, then the
//! functions it calls, in the order it calls them. Each policy the loop applies is a small
//! type in its own file: `admission` (accepting, limits, running out of descriptors),
//! `memory` (the global budget on pending output), `timers` (idle and stall deadlines, the
//! stats tick), `pipes` (which connections get zero copy), `shutdown` (drain and deadline);
//! `slot` is a connection as the reactor holds it, and `bind` creates the server.
//!
//! Contracts from mio this code relies on (see `mio::Poll`'s docs):
//! - Readiness is edge-triggered: after an event, a source must be read or written until
//!   `WouldBlock`, or the readiness is remembered here and worked off later (the ready queue).
//! - Events can be spurious, and an event can name a connection that was closed earlier in the
//!   same batch: look-ups by token tolerate a missing entry.
//! - Closing a socket's descriptor removes it from the poller, so teardown needs no
//!   `deregister` call; teardown waits for the end of the batch so no slab key (and token) is
//!   reused while events for its previous owner may still be in hand.

mod admission;
mod bind;
mod deadlines;
mod memory;
mod pipes;
mod shutdown;
mod slot;
mod timers;

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::event::Event;
use mio::net::TcpListener;
use mio::{Events, Poll, Token};
use slab::Slab;

use self::admission::Admission;
use self::memory::MemoryBudget;
use self::pipes::PipeBudget;
use self::shutdown::Shutdown;
pub use self::shutdown::ShutdownHandle;
use self::slot::Slot;
use self::timers::Timers;
use crate::connection::Readiness;
use crate::error::ServerError;
use crate::stats::{CloseReason, Stats};
use crate::udp::{UdpEcho, MAX_DATAGRAM};

impl Server {
    /// The event loop. Returns the final counters after a graceful shutdown.
    ///
    /// Each turn: wait for readiness (or for a timer, or not at all when work is queued), read
    /// the clock once, dispatch each event by token, run work that an earlier budget cut short,
    /// tear down connections that finished, then check timers.
    pub fn run(mut self) -> Result<Stats, ServerError> {
        let mut events = Events::with_capacity(1024);
        self.start(Instant::now()); // uptime and the stats tick count from here, not from bind
        while !self.is_finished() {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(ServerError::Poll(e)),
                }
            }
            // The turn's one clock read: every decision below sees this `now`.
            let now = Instant::now();
            for event in events.iter() {
                self.dispatch(event, now);
            }
            self.run_ready_work(now);
            self.remove_finished();
            self.check_timers(now);
        }
        Ok(self.stats())
    }
}

/// Reserved tokens sit at the top of the range; connection tokens are slab keys, far below.
const LISTENER: Token = Token(usize::MAX - 1);
const UDP: Token = Token(usize::MAX - 2);
const WAKER: Token = Token(usize::MAX - 3);

/// The shared read buffer. Larger reads amortise syscalls on bulk streams; it costs nothing per
/// connection, and it must hold any datagram whole.
const SCRATCH_SIZE: usize = 256 * 1024;
const _: () = assert!(SCRATCH_SIZE >= MAX_DATAGRAM);
/// Datagrams echoed per wakeup before TCP gets a turn.
const UDP_BUDGET: usize = 256;

/// A bound echo server. Create with [`Server::bind`], run with [`Server::run`], stop with a
/// [`ShutdownHandle`].
#[derive(Debug)]
pub struct Server {
    poll: Poll,
    /// The TCP listener, until shutdown begins (or never, with TCP off).
    listener: Option<TcpListener>,
    /// UDP echo, until shutdown begins (or never, with UDP off).
    udp: Option<UdpEcho>,
    /// The open connections; a connection's token is its key here.
    slots: Slab<Slot>,
    /// The one read buffer shared by every socket: input lands here and goes straight back.
    scratch: Box<[u8]>,
    /// Work carried over from one step of the turn, or one turn, to the next.
    queues: Queues,
    admission: Admission,
    memory: MemoryBudget,
    timers: Timers,
    pipes: PipeBudget,
    shutdown: Shutdown,
    tcp_addr: Option<SocketAddr>,
    udp_addr: Option<SocketAddr>,
    started: Instant,
    stats: Stats,
}

/// Work that no new event will announce (edge-triggered readiness is reported once), and
/// teardown deferred to the end of the batch.
#[derive(Debug, Default)]
struct Queues {
    /// Connections whose budget ran out with work left; they run again next turn.
    ready: Vec<usize>,
    /// Connections that finished during this batch; removed at its end.
    finished: Vec<usize>,
    /// The listener has connections waiting past the accept budget (or accepting resumed).
    accept_ready: bool,
    /// The UDP socket has datagrams or queued replies left past the UDP budget.
    udp_ready: bool,
}

impl Server {
    /// Starts the clocks of a run: uptime and the first stats tick.
    fn start(&mut self, now: Instant) {
        self.started = now;
        self.timers.start(now);
    }

    /// Routes one event to its source. Connections run at once; the listener and the UDP
    /// socket only note their readiness and run in `run_ready_work`.
    fn dispatch(&mut self, event: &Event, now: Instant) {
        match event.token() {
            LISTENER => self.queues.accept_ready = true,
            UDP => {
                if let Some(udp) = self.udp.as_mut() {
                    udp.on_readiness(Readiness {
                        readable: event.is_readable(),
                        writable: event.is_writable(),
                        read_closed: false,
                    });
                    self.queues.udp_ready = true;
                }
            }
            WAKER => self.on_wake(now),
            Token(key) => {
                if let Some(slot) = self.slots.get_mut(key) {
                    slot.conn.on_readiness(Readiness {
                        readable: event.is_readable(),
                        writable: event.is_writable() || event.is_write_closed(),
                        read_closed: event.is_read_closed() || event.is_error(),
                    });
                    self.drive_connection(key, now);
                }
            }
        }
    }

    /// Runs work that no new event will announce: accepts and datagrams past their budget,
    /// connections that yielded.
    fn run_ready_work(&mut self, now: Instant) {
        if self.queues.accept_ready {
            self.accept_batch(now);
        }
        if self.queues.udp_ready {
            self.queues.udp_ready = match self.udp.as_mut() {
                Some(udp) => udp.drive(&mut self.scratch, UDP_BUDGET, &mut self.stats),
                None => false,
            };
        }
        let queued = std::mem::take(&mut self.queues.ready);
        for &key in &queued {
            if let Some(slot) = self.slots.get_mut(key) {
                slot.queued = false;
            }
            self.drive_connection(key, now);
        }
        // Keep the allocation of whichever queue is larger, for the next turn.
        if self.queues.ready.is_empty() {
            self.queues.ready = queued;
            self.queues.ready.clear();
        }
    }

    /// Drives one connection's I/O, accounts for what it did, and files it.
    fn drive_connection(&mut self, key: usize, now: Instant) {
        let limits = self.memory.limits();
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if slot.conn.close_reason().is_some() {
            return; // already in `finished`
        }
        let before = slot.conn.pending();
        let outcome = slot
            .conn
            .drive(&mut slot.socket, &mut self.scratch, &limits);
        // Account: counters, the memory budget, the connection's activity clocks.
        self.stats.record_drive(&outcome);
        let after = slot.conn.pending();
        self.memory
            .record(before, after, outcome.pauses, &limits, &mut self.stats);
        slot.record_progress(&outcome, now);
        // File: finished, or queued / waiting for an edge.
        if slot.conn.close_reason().is_some() {
            self.queues.finished.push(key);
            return;
        }
        if outcome.yielded && !slot.queued {
            slot.queued = true;
            self.queues.ready.push(key);
        }
        self.timers.arm(key, slot);
        if self.pipes.wants(&outcome, slot) {
            self.pipes.offer(key, slot, &mut self.stats);
        }
    }

    /// Teardown at the batch boundary: drops the sockets of connections that finished and
    /// gives back what they held (memory, a pipe, a per-source count, a slot for accepting).
    fn remove_finished(&mut self) {
        if self.queues.finished.is_empty() {
            return;
        }
        for key in std::mem::take(&mut self.queues.finished) {
            let Some(slot) = self.slots.try_remove(key) else {
                continue;
            };
            if slot.queued {
                self.queues.ready.retain(|&queued| queued != key);
            }
            self.memory.release(slot.conn.pending());
            self.pipes.release(&slot);
            self.admission.forget(slot.peer.ip());
            let reason = slot.conn.close_reason().unwrap_or(CloseReason::IoError);
            log::debug!("closed {} (#{key}): {reason:?}", slot.peer);
            self.stats.record_close(reason);
        }
        self.timers.sweep(&self.slots);
        // A descriptor was freed: if accepting paused for lack of one, try again now.
        if self.admission.resume_after_close() {
            self.queues.accept_ready = true;
        }
    }
}
