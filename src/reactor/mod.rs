//! The reactor: one thread, one `mio::Poll`, the listeners (each TCP listener and UDP socket
//! carries the service it serves) and a slab of connections. [`Server::run`], right below, is the event loop; read it first, then the
//! functions it calls, in the order it calls them. Each policy the loop applies is a small
//! type in its own file: `admission` (accepting, limits, running out of descriptors),
//! `memory` (the global budget on pending output), `deadlines` (the one
//! registry of everything timed) and `timers` (what fires when due, the poll timeout), `pipes` (which connections get zero copy, from spare descriptors), `shared`
//! (the limits that hold across reactors), `shutdown` (drain and deadline);
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
mod listeners;
mod memory;
mod pipes;
mod report;
mod scrape;
mod shared;
mod shutdown;
mod slot;
mod timers;
mod turn;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Poll, Token};

use crate::listen::Endpoint;
use crate::service::ServiceKind;
use slab::Slab;

use self::admission::Admission;
pub(crate) use self::bind::{log_start, Announce};
use self::deadlines::{Deadlines, Timer};
use self::listeners::{TcpSide, UdpSide};
use self::memory::MemoryBudget;
use self::pipes::PipeBudget;
pub use self::report::ReportHandle;
#[cfg(feature = "metrics")]
use self::scrape::{METRICS_FIRST_SCRAPE, METRICS_LISTENER};
pub(crate) use self::shared::SharedLimits;
use self::shutdown::Shutdown;
pub use self::shutdown::ShutdownHandle;
use self::slot::{Slot, Stamp, Timeouts};
use self::turn::Turn;
use crate::connection::{CloseReason, Readiness};
use crate::error::ServerError;
use crate::group::GroupMember;
#[cfg(feature = "metrics")]
use crate::metrics::MetricsEndpoint;
use crate::report::Reporter;
use crate::stats::Stats;

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
            // The turn's clock: decisions below see this `now` (only the turn's own length and
            // an accepted connection's stamp read the clock again; see `turn`, `admission`).
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

/// Tokens: the waker and the metrics endpoint's (`scrape`) at the top; below them a block
/// for TCP listeners and one for UDP sockets, numbered down from the top of each block;
/// connection tokens are slab keys, far below.
const WAKER: Token = Token(usize::MAX - 3);
/// Most listeners (and, separately, UDP sockets) one server binds.
pub(crate) const MAX_SOCKETS: usize = 1 << 16;
const _: () = assert!(crate::config::MAX_LISTENERS <= MAX_SOCKETS);
/// Tokens above this are reserved (waker, metrics).
const LISTENERS_TOP: usize = usize::MAX - 1024;
#[cfg(feature = "metrics")]
const _: () = assert!(METRICS_FIRST_SCRAPE.0 > LISTENERS_TOP);
const UDP_TOP: usize = LISTENERS_TOP - MAX_SOCKETS;
const CONNECTIONS_END: usize = UDP_TOP - MAX_SOCKETS;

/// What an event's token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Waker,
    /// Another reserved token: the metrics endpoint's (see `scrape`).
    Reserved,
    /// `listeners[i]`.
    Listener(usize),
    /// `udp[i]`.
    Udp(usize),
    /// The slab key of a connection.
    Connection(usize),
}

impl Source {
    fn of(token: Token) -> Source {
        match token.0 {
            t if t == WAKER.0 => Source::Waker,
            t if t > LISTENERS_TOP => Source::Reserved,
            t if t > UDP_TOP => Source::Listener(LISTENERS_TOP - t),
            t if t > CONNECTIONS_END => Source::Udp(UDP_TOP - t),
            key => Source::Connection(key),
        }
    }

    fn listener_token(index: usize) -> Token {
        Token(LISTENERS_TOP - index)
    }

    fn udp_token(index: usize) -> Token {
        Token(UDP_TOP - index)
    }
}

/// The shared TCP read buffer. Larger reads amortise syscalls on bulk streams; it costs nothing
/// per connection. (UDP reads into its own batch of slots, see `udp`.)
const SCRATCH_SIZE: usize = 256 * 1024;
/// Datagrams echoed per wakeup before TCP gets a turn.
const UDP_BUDGET: usize = 256;

/// A bound echo server. Create with [`Server::bind`], run with [`Server::run`], stop with a
/// [`ShutdownHandle`].
#[derive(Debug)]
pub struct Server {
    poll: Poll,
    /// The TCP listeners, until shutdown begins.
    listeners: Vec<TcpSide>,
    /// The UDP sockets (echo or another service), until shutdown begins.
    udp: Vec<UdpSide>,
    /// Each listener's service, by the index its listeners and slots carry (the same index
    /// as its entry in `Stats::services`).
    services: Vec<ServiceKind>,
    /// Every bound socket, for the start-up line and embedders.
    endpoints: Vec<Endpoint>,
    /// The open connections; a connection's token is its key here.
    slots: Slab<Slot>,
    /// The one read buffer shared by every socket: input lands here and goes straight back.
    scratch: Box<[u8]>,
    /// Work carried over from one step of the turn, or one turn, to the next.
    queues: Queues,
    admission: Admission,
    memory: MemoryBudget,
    /// Everything timed, in one registry: connections' idle and stall deadlines and each
    /// policy's timer (see `deadlines`; what each does when due is in `timers`).
    deadlines: Deadlines,
    /// The connections' idle and stall timeouts.
    timeouts: Timeouts,
    /// How often the stats line is logged, if at all.
    stats_every: Option<Duration>,
    pipes: PipeBudget,
    shutdown: Shutdown,
    tcp_addr: Option<SocketAddr>,
    udp_addr: Option<SocketAddr>,
    started: Instant,
    stats: Stats,
    /// The previous report, so the next stats line can show rates.
    reporter: Reporter,
    /// Set by a [`ReportHandle`]; checked when the waker fires.
    report_requested: Arc<AtomicBool>,
    /// The `/metrics` endpoint, when configured.
    #[cfg(feature = "metrics")]
    metrics: Option<MetricsEndpoint>,
    /// This reactor's place in a `ServerGroup`, if it is one of several: its reports are
    /// posted there and reactor 0 logs (and serves) the sum.
    group: Option<GroupMember>,
}

/// Work that no new event will announce (edge-triggered readiness is reported once), and
/// teardown deferred to the end of the batch.
#[derive(Debug, Default)]
struct Queues {
    /// Connections with new readiness and nothing queued before it; they run first next turn.
    fresh: Vec<usize>,
    /// Connections with work left (their budget or the turn's ran out); they run next turn
    /// after `fresh`, oldest first.
    ready: Vec<usize>,
    /// Connections that finished during this batch; removed at its end.
    finished: Vec<usize>,
    /// The listener has connections waiting past the accept budget (or accepting resumed).
    accept_ready: bool,
    /// The UDP socket has datagrams or queued replies left past the UDP budget.
    udp_ready: bool,
}

impl Server {
    /// Routes one event to its source: each notes its readiness, and runs in `run_ready_work`.
    fn dispatch(&mut self, event: &Event, now: Instant) {
        let token = event.token();
        match Source::of(token) {
            Source::Listener(_) => self.queues.accept_ready = true,
            Source::Udp(index) => {
                if let Some(udp) = self.udp.get_mut(index) {
                    udp.on_readiness(Readiness {
                        readable: event.is_readable(),
                        writable: event.is_writable(),
                        read_closed: false,
                    });
                    self.queues.udp_ready = true;
                }
            }
            Source::Waker => self.on_wake(now),
            Source::Reserved if self.is_metrics_token(token) => self.on_metrics_ready(token, now),
            Source::Reserved => {}
            Source::Connection(key) => {
                if let Some(slot) = self.slots.get_mut(key) {
                    slot.conn.on_readiness(Readiness {
                        readable: event.is_readable(),
                        writable: event.is_writable() || event.is_write_closed(),
                        read_closed: event.is_read_closed() || event.is_error(),
                    });
                    // It runs in `run_ready_work`, before the work carried over (see `turn`);
                    // one already queued has work left and keeps its place.
                    if !slot.queued {
                        slot.queued = true;
                        self.queues.fresh.push(key);
                    }
                }
            }
        }
    }

    /// Runs the turn's work: accepts and datagrams, then connections with new readiness, then
    /// the work carried over (at least one connection of it), until the turn has moved
    /// `turn::TURN_BYTES` or lasted `turn::TURN_TIME`. Connections not reached stay queued,
    /// in order, for the next turn.
    fn run_ready_work(&mut self, now: Instant) {
        if self.queues.accept_ready {
            self.accept_batch(now);
        }
        if self.queues.udp_ready {
            // Each socket tracks its own readiness: an idle one costs no syscall here.
            let mut more = false;
            let registry = self.poll.registry();
            for udp in &mut self.udp {
                more |= udp.drive(registry, UDP_BUDGET, now, &mut self.stats);
            }
            self.queues.udp_ready = more;
        }
        let mut turn = Turn::begin(now);
        let mut fresh = std::mem::take(&mut self.queues.fresh);
        let mut carried = std::mem::take(&mut self.queues.ready);
        let fresh_reached = self.drive_queued(&fresh, &mut turn, 0);
        let carried_reached = self.drive_queued(&carried, &mut turn, 1);
        // Next turn: new readiness not reached keeps its priority; the carried-over work not
        // reached goes before the connections that yielded in this turn.
        fresh.drain(..fresh_reached);
        self.queues.fresh = fresh;
        carried.drain(..carried_reached);
        carried.append(&mut self.queues.ready);
        self.queues.ready = carried;
    }

    /// Drives `keys` in order until `turn` is spent, but at least `at_least` of them; returns
    /// how many it drove.
    fn drive_queued(&mut self, keys: &[usize], turn: &mut Turn, at_least: usize) -> usize {
        for (reached, &key) in keys.iter().enumerate() {
            if reached >= at_least && turn.is_spent() {
                return reached;
            }
            if let Some(slot) = self.slots.get_mut(key) {
                slot.queued = false;
            }
            turn.record(self.drive_connection(key, turn.now()));
        }
        keys.len()
    }

    /// Drives one connection's I/O, accounts for what it did, and files it. Returns the bytes
    /// it moved (read plus written).
    fn drive_connection(&mut self, key: usize, now: Instant) -> usize {
        let Some(slot) = self.slots.get_mut(key) else {
            return 0;
        };
        if slot.conn.close_reason().is_some() {
            return 0; // already in `finished`
        }
        let before = slot.conn.pending();
        let limits = self.memory.limits_for(before);
        let outcome = slot
            .conn
            .drive(&mut slot.socket, &mut self.scratch, &limits);
        // Account: counters, the memory budget, the connection's activity clocks.
        self.stats.record_drive(&outcome);
        if let Some(service) = self.stats.services.get_mut(slot.service()) {
            service.record_drive(&outcome);
        }
        let after = slot.conn.pending();
        self.memory
            .record(before, after, outcome.pauses, &limits, &mut self.stats);
        let stamp = Stamp::at(self.started, now);
        slot.record_progress(&outcome, stamp);
        let moved = outcome.bytes_read + outcome.bytes_written;
        // File: finished, or queued / waiting for an edge.
        if slot.conn.close_reason().is_some() {
            self.queues.finished.push(key);
            return moved;
        }
        if outcome.yielded && !slot.queued {
            slot.queued = true;
            self.queues.ready.push(key);
        }
        slot.arm(key, &self.timeouts, (now, stamp), &mut self.deadlines);
        if self.pipes.wants(&outcome, slot) {
            self.pipes
                .offer(key, slot, now, &mut self.deadlines, &mut self.stats);
        }
        moved
    }

    /// The peer of the connection in slab entry `key`, for a debug line (kept aside only
    /// while debug logging is on, or `max_per_source` needs it).
    fn peer(&self, key: usize) -> String {
        self.admission
            .peer(key)
            .map_or_else(|| "a connection".to_string(), |peer| peer.to_string())
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
                self.queues.fresh.retain(|&queued| queued != key);
                self.queues.ready.retain(|&queued| queued != key);
            }
            self.memory.release(slot.conn.pending());
            self.pipes.release(key, &slot, &mut self.deadlines);
            let reason = slot.conn.close_reason().unwrap_or(CloseReason::IoError);
            log::debug!("closed {} (#{key}): {reason:?}", self.peer(key));
            self.admission.forget(key);
            self.stats.record_close(reason);
            // Whatever it still owed its peer was read and will never be echoed.
            self.stats
                .record_discard(reason, slot.conn.pending() as u64);
        }
        self.sweep_deadlines();
        // A descriptor was freed: if accepting paused for lack of one, try again now.
        if self.deadlines.cancel(Timer::AcceptRetry) {
            self.queues.accept_ready = true;
        }
    }
}
