//! The reactor: one thread, one `mio::Poll`, the listeners (each TCP listener and UDP socket
//! carries the service it serves) and a slab of connections. [`Server::run`], right below, is
//! the event loop; read it first, then the functions it calls, in the order it calls them
//! (`crate::tour` walks through them).
//!
//! This file is the loop and its glue: everything that touches more than one part of the
//! server (accepting, the timers firing, shutdown, reports, the metrics hooks) lives here,
//! in that order, and the server's construction and accessors close it. Each policy the loop
//! applies is a type of its own, with its own methods, in its own file, and never reaches into
//! the server: `admission` (who is accepted, limits, running out of descriptors), `memory`
//! (bounds on pending output: small while the peer reads, the global budget, and memory
//! given back after a burst), `pipes` (which connections get zero copy, from spare
//! descriptors), `shutdown` (the handle and the drain), `report` (the report handle, the board
//! a group supplies), `live` (the handle that reads the counters
//! of a running server), `watchdog` (a connection with work and no wake-up is found,
//! re-driven and counted), `shared` (the limits that hold across reactors), `turn` (the bound
//! on one turn, and who goes first); `deadlines` is the one registry of everything timed; `slot`
//! is a connection as the reactor holds it, `listeners` a listener or UDP socket; `tokens`
//! says what an event is for; `bind` registers the sockets.
//!
//! Contracts from mio this code relies on (see `mio::Poll`'s docs):
//! - Readiness is edge-triggered: after an event, a source must be read or written until
//!   `WouldBlock`, or the readiness is remembered here and worked off later (the ready queue).
//! - Events can be spurious, and an event can name a connection that was closed earlier in the
//!   same batch: look-ups by token tolerate a missing entry.
//! - Closing a socket's descriptor removes it from the poller, so teardown needs no
//!   `deregister` call; teardown waits for the end of the batch so no slab key (and token) is
//!   reused while events for its previous owner may still be in hand.

// The policies are `pub(crate)` only so that the tour (`crate::tour`) can link to them.
pub(crate) mod admission;
mod bind;
pub(crate) mod deadlines;
mod listeners;
mod live;
pub(crate) mod memory;
pub(crate) mod pipes;
mod report;
pub(crate) mod shared;
pub(crate) mod shutdown;
pub(crate) mod slot;
pub(crate) mod tokens;
pub(crate) mod turn;
pub(crate) mod watchdog;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::listen::Endpoint;
use crate::service::ServiceKind;
use slab::Slab;

use self::admission::{is_out_of_descriptors, turn_away, Admission};
pub(crate) use self::bind::{log_start, Announce};
use self::deadlines::{next_period, ConnectionTimer, Deadlines, Due, Owner, Timer};
use self::listeners::{TcpSide, UdpSide};
pub use self::live::StatsHandle;
use self::memory::{MemoryBudget, Peer, Recycling};
use self::pipes::PipeBudget;
pub(crate) use self::report::Board;
pub use self::report::ReportHandle;
pub(crate) use self::shared::SharedLimits;
use self::shutdown::Shutdown;
pub use self::shutdown::ShutdownHandle;
use self::slot::{Slot, Stamp, Timeouts};
use self::tokens::Source;
use self::turn::Turn;
use self::watchdog::Watchdog;
use crate::config::Config;
use crate::connection::{CloseReason, Connection, Limits, Readiness};
use crate::descriptors;
use crate::error::ServerError;
#[cfg(feature = "metrics")]
use crate::metrics::MetricsEndpoint;
use crate::net::{self, BoundListener, Sharing};
use crate::report::Reporter;
use crate::stats::{Stats, UdpDrop};

impl Server {
    /// The event loop. Returns the final counters after a graceful shutdown.
    ///
    /// Each turn (`Server::turn`): wait for readiness (or for a timer, or not at all
    /// when work is queued), read the clock once, dispatch each event by token (noting
    /// readiness; the waker answers requests and may begin shutdown), run the ready work
    /// (accepts, UDP, newly ready connections, then work an earlier budget cut short), tear
    /// down connections that finished, then fire the timers that are due.
    pub fn run(mut self) -> Result<Stats, ServerError> {
        let mut events = Events::with_capacity(1024);
        self.start(Instant::now()); // uptime and the stats tick count from here, not from bind
        while !self.is_finished() {
            if let Err(e) = self.turn(&mut events) {
                self.leave_final_stats(&self.stats());
                return Err(e);
            }
        }
        let stats = self.stats();
        self.leave_final_stats(&stats); // for any `StatsHandle`, now and later
        Ok(stats)
    }

    /// One turn of the loop.
    fn turn(&mut self, events: &mut Events) -> Result<(), ServerError> {
        let timeout = self.poll_timeout();
        if let Err(e) = self.poll.poll(events, timeout) {
            return match e.kind() {
                io::ErrorKind::Interrupted => Ok(()),
                _ => Err(ServerError::Poll(e)),
            };
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
        Ok(())
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
    /// policy's timer (see `deadlines`; what each does when due is in `on_timer`).
    deadlines: Deadlines,
    /// The connections' idle and stall timeouts.
    timeouts: Timeouts,
    /// How often the stats line is logged, if at all.
    stats_every: Option<Duration>,
    /// Gives the memory of pending output back to the system once nobody needs it.
    recycling: Recycling,
    pipes: PipeBudget,
    watchdog: Watchdog,
    shutdown: Shutdown,
    tcp_addr: Option<SocketAddr>,
    udp_addr: Option<SocketAddr>,
    started: Instant,
    stats: Stats,
    /// The previous report, so the next stats line can show rates.
    reporter: Reporter,
    /// Set by a [`ReportHandle`]; checked when the waker fires.
    report_requested: Arc<AtomicBool>,
    /// Where a [`StatsHandle`] asks for the counters and finds them; checked when the waker
    /// fires.
    live: Arc<live::Mailbox>,
    /// The `/metrics` endpoint, when configured.
    #[cfg(feature = "metrics")]
    metrics: Option<MetricsEndpoint>,
    /// This reactor's place in a `ServerGroup`, if it is one of several: its reports are
    /// posted there and reactor 0 logs (and serves) the sum.
    group: Option<Box<dyn Board>>,
}

/// Work that no new event will announce (edge-triggered readiness is reported once), and
/// teardown deferred to the end of the batch.
#[derive(Debug, Default)]
struct Queues {
    /// Connections that got an event (new readiness) while not queued; driven first.
    fresh: Vec<usize>,
    /// Connections with work left and no event to announce it (a budget ran out, a timer
    /// or shutdown queued them): "ready" as in ready to run, not a readiness flag; driven
    /// after `fresh`, oldest first, at least one per turn.
    ready: Vec<usize>,
    /// Connections whose phase is `Closed` (finished, awaiting removal); `remove_finished`
    /// takes them out after the batch, and within `check_timers` and `abort_remaining`.
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
        let stamp = Stamp::at(self.started, now);
        // A small bound while the peer reads, the configured allowance once it stopped.
        let peer = slot.peer(stamp);
        let limits = self.memory.limits_for(before, peer);
        let outcome = slot
            .conn
            .drive(&mut slot.socket, &mut self.scratch, &limits);
        // Account: counters, the memory budget, the connection's activity clocks.
        self.stats.record_drive(&outcome);
        if let Some(service) = self.stats.services.get_mut(slot.service()) {
            service.record_drive(&outcome);
        }
        let after = slot.conn.pending();
        let (pauses, stats) = (outcome.pauses, &mut self.stats);
        self.memory
            .record((before, after), pauses, &limits, peer, stats);
        slot.record_progress(&outcome, stamp);
        let moved = outcome.bytes_read + outcome.bytes_written;
        let owner = slot.owner(key);
        self.watchdog
            .note((owner, slot), moved, now, &mut self.deadlines);
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
        if peer == Peer::Reading && slot.conn.is_paused() {
            // Paused at the small bound: if the peer never reads, no event will come.
            slot.wake_if_peer_stops(key, (now, stamp), &mut self.deadlines);
        }
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
            // Whatever it still owed its peer was read (or generated) and will never be sent.
            let pending = slot.conn.pending() as u64;
            self.stats.record_discard(reason, pending);
            if let Some(service) = self.stats.services.get_mut(slot.service()) {
                service.tcp_bytes_discarded += pending;
            }
        }
        self.sweep_deadlines();
        // A descriptor was freed: if accepting paused for lack of one, try again now.
        if self.deadlines.cancel(Timer::AcceptRetry) {
            self.queues.accept_ready = true;
        }
    }
}

// Accepting: admission decides, pipes give way to connections, the slab and the poller take
// the connection in, its deadline is armed.
impl Server {
    /// Accepts up to the per-wakeup budget. Running out of descriptors pauses accepting for a
    /// moment (and until a connection closes) instead of spinning or ending the server.
    fn accept_batch(&mut self, now: Instant) {
        self.queues.accept_ready = false;
        // Every listener gets its own budget; one with nothing waiting costs one `accept`.
        for index in 0..self.listeners.len() {
            if !self.accept_from(index, now) {
                return; // out of descriptors: every listener waits for the retry
            }
        }
    }

    /// Accepts from `listeners[index]` up to the budget; false when out of descriptors.
    fn accept_from(&mut self, index: usize, now: Instant) -> bool {
        for _ in 0..self.admission.budget {
            let Some(listener) = self.listeners.get(index) else {
                return true;
            };
            match listener.socket.accept() {
                // Stamped when accepted, not with the turn's `now`: the turn's earlier work would
                // otherwise count against a new connection's idle timeout. One vDSO clock read
                // beside an `accept` syscall costs next to nothing.
                Ok((socket, peer)) => self.admit(socket, peer, listener.service, Instant::now()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_out_of_descriptors(&e) => {
                    // Pipes give way to connections: pause only if none could be given back.
                    if self
                        .pipes
                        .give_way(&mut self.slots, &mut self.deadlines, &mut self.stats)
                        > 0
                    {
                        continue;
                    }
                    let retry_at = self.admission.pause(&e, now, &mut self.stats);
                    self.deadlines.set(Timer::AcceptRetry, retry_at);
                    return false;
                }
                Err(e) => {
                    // ECONNABORTED and friends: that one client is gone; keep accepting.
                    self.stats.accept_errors += 1;
                    log::debug!("accept: {e}");
                }
            }
        }
        // Budget spent: more may be waiting, and no new edge will say so.
        self.queues.accept_ready = true;
        true
    }

    /// Keeps an accepted socket as a connection (registered, its timer armed), or turns it
    /// away at once if admission says no.
    fn admit(&mut self, socket: TcpStream, peer: SocketAddr, service: usize, accepted_at: Instant) {
        if !self.admission.admit(peer, &mut self.stats) {
            turn_away(socket, &mut self.scratch);
            return;
        }
        // Pipes give way to connections: take back idle ones while descriptors are short.
        self.pipes
            .reclaim_if_short(&mut self.slots, &mut self.deadlines, &mut self.stats);
        // Echo is latency-bound: do not let Nagle hold back a small reply.
        if let Err(e) = socket.set_nodelay(true) {
            log::debug!("set_nodelay for {peer}: {e}");
        }
        let entry = self.slots.vacant_entry();
        // Echo keeps its fast path; any other service gets its own session.
        let conn = match self.services.get(service) {
            Some(kind) if !kind.is_echo() => Connection::with_service(kind.new_session()),
            _ => Connection::new(),
        };
        let id = self.admission.next_id();
        let mut slot = Slot::new(socket, (service, conn), id, self.started, accepted_at);
        // Registered once, for both directions; readiness is tracked in `Connection` after.
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut slot.socket, Token(entry.key()), interest)
        {
            self.stats.accept_errors += 1;
            log::warn!("cannot register connection from {peer}: {e}");
            self.admission.refund(peer);
            return;
        }
        log::debug!("accepted {peer} as #{}", entry.key());
        self.admission.remember(entry.key(), peer);
        let stamp = Stamp::at(self.started, accepted_at);
        slot.arm(
            entry.key(),
            &self.timeouts,
            (accepted_at, stamp),
            &mut self.deadlines,
        );
        entry.insert(slot);
        self.stats.conn_accepted += 1;
        self.stats.conn_active += 1;
        if let Some(service) = self.stats.services.get_mut(service) {
            service.conn_accepted += 1;
        }
    }
}

// Time: what the loop does when the deadline registry (`deadlines`) says something is due,
// and how long `poll` may sleep. Every check uses the turn's `now`, read once after `poll`
// returns, and so do the activity clocks of the connections a turn drives: a timeout can fire
// up to one turn early, and a turn's work is bounded (`turn`: 2 ms, plus whatever time the
// machine takes the CPU away). A new connection is stamped when accepted. The other clock read
// is in `poll_timeout`, before `poll`: see there why.
impl Server {
    /// The loop starts at `now`: uptime counts from here, and the periodic timers start.
    fn start(&mut self, now: Instant) {
        self.started = now;
        let first_line = self.stats_every.and_then(|every| now.checked_add(every));
        self.deadlines.set(Timer::StatsLine, first_line);
        // A group member posts at once, then every `post_every`.
        if self.group.as_ref().and_then(|g| g.post_every()).is_some() {
            self.deadlines.set(Timer::GroupPost, Some(now));
        }
    }

    /// Fires everything due at `now`, in the registry's order: connection timeouts first (and
    /// their teardown), then the accept retry, the idle-pipe sweep, the free list's decay, the
    /// watchdog, the group post, the stats line, the metrics scrape expiry, the drain deadline.
    fn check_timers(&mut self, now: Instant) {
        let stamp = Stamp::at(self.started, now);
        while let Some(due) = self.deadlines.pop_due(now) {
            match due {
                Due::Connection(owner, ConnectionTimer::Timeouts) => {
                    self.expire_connection(owner, now, stamp)
                }
                Due::Connection(owner, ConnectionTimer::PeerStopsReading) => {
                    self.wake_stopped_reader(owner)
                }
                Due::Timer(timer, at) => {
                    // Connections closed by their timeouts go before any other timer runs.
                    self.remove_finished();
                    self.on_timer(timer, at, now);
                }
            }
        }
        self.remove_finished();
        self.recycling.tick(now, &mut self.deadlines);
    }

    /// One of the reactor's timers, set for `at`, is due at `now`. A periodic one is set again
    /// here, always for later than `now`.
    fn on_timer(&mut self, timer: Timer, at: Instant, now: Instant) {
        match timer {
            Timer::AcceptRetry => self.queues.accept_ready = true,
            Timer::FreeListDecay => self.recycling.decay(),
            Timer::WatchdogLook => {
                let stamp = Stamp::at(self.started, now);
                let (slots, ready) = (&mut self.slots, &mut self.queues.ready);
                let (stats, deadlines) = (&mut self.stats, &mut self.deadlines);
                self.watchdog
                    .look(slots, ready, stats, deadlines, (now, stamp));
            }
            Timer::PipeSweep => {
                let stamp = Stamp::at(self.started, now);
                let (slots, stats) = (&mut self.slots, &mut self.stats);
                self.pipes
                    .sweep_idle(slots, &mut self.deadlines, stats, (now, stamp));
            }
            Timer::GroupPost => self.post_to_group(now),
            Timer::StatsLine => {
                self.log_report();
                let every = self.stats_every.unwrap_or(Duration::from_secs(1));
                self.deadlines
                    .set(Timer::StatsLine, next_period(at, now, every));
            }
            Timer::ScrapeExpiry => self.expire_scrapes(now),
            Timer::DrainEnd => self.abort_remaining(),
        }
    }

    /// Closes the connection `owner` if its idle or stall deadline passed; re-arms it if its
    /// deadline moved on since its entry was pushed.
    fn expire_connection(&mut self, owner: Owner, now: Instant, stamp: Stamp) {
        let Some(slot) = self.slots.get_mut(owner.key()).filter(|s| s.id == owner.id) else {
            return; // closed since; the key may belong to someone else now
        };
        slot.timer_armed = false;
        match slot.next_timeout(&self.timeouts, now, stamp) {
            // A connection already closed in this batch is in `finished` already.
            Some((at, reason)) if at <= now && slot.conn.close_reason().is_none() => {
                log::debug!("closing #{}: {reason:?}", owner.key());
                slot.conn.abort(reason);
                self.queues.finished.push(owner.key());
            }
            Some((at, _)) if at <= now => {}
            Some((at, _)) => {
                slot.timer_armed = true;
                self.deadlines.push(at, owner, ConnectionTimer::Timeouts);
            }
            None => {}
        }
    }

    /// The peer of the connection `owner` now counts as having stopped reading: its next drive
    /// reads on under the configured allowance. One that made progress since its entry was
    /// pushed is driven all the same; its drive pauses it again, and re-arms.
    fn wake_stopped_reader(&mut self, owner: Owner) {
        let Some(slot) = self.slots.get_mut(owner.key()).filter(|s| s.id == owner.id) else {
            return; // closed since; the key may belong to someone else now
        };
        slot.allowance_armed = false;
        if !slot.queued {
            slot.queued = true;
            self.queues.ready.push(owner.key());
        }
    }

    /// Stale entries of closed connections wait for their deadline; under heavy churn this
    /// sweeps them out, so the heap stays proportional to the open connections.
    fn sweep_deadlines(&mut self) {
        if self.deadlines.connections() > 2 * self.slots.len() + 1024 {
            let slots = &self.slots;
            self.deadlines
                .retain(|owner| slots.get(owner.key()).is_some_and(|s| s.id == owner.id));
        }
    }

    /// How long `poll` may sleep: zero when work is queued (accepts, datagrams, connections a
    /// budget cut short, or surplus output blocks still to unmap); otherwise until the next
    /// deadline in the registry, or forever.
    fn poll_timeout(&self) -> Option<Duration> {
        let queues = &self.queues;
        let work_queued = !queues.fresh.is_empty() || !queues.ready.is_empty();
        if queues.accept_ready || queues.udp_ready || work_queued || self.recycling.has_work() {
            return Some(Duration::ZERO);
        }
        let next = self.deadlines.next()?;
        // A fresh clock read, not the turn's `now`: that one is as old as the turn's work, and
        // a timeout measured from it would sleep past the deadline by that much.
        Some(next.saturating_duration_since(Instant::now()))
    }
}

// Waking, shutdown and reports: what the handles ask for from other threads, the drain, the
// stats line and the group's board.
impl Server {
    /// The waker fired: logs a report and/or begins shutdown, as handles asked (wake-ups are
    /// not counted, so the flags are what say why).
    fn on_wake(&mut self, now: Instant) {
        self.report_if_requested();
        self.answer_stats_if_asked();
        if self.shutdown.is_requested() {
            self.begin_shutdown(now);
        }
    }

    /// Stops accepting and serving UDP; asks every connection to drain and finish.
    fn begin_shutdown(&mut self, now: Instant) {
        log::info!(
            "shutting down: draining {} connection(s) for up to {:?}",
            self.slots.len(),
            self.shutdown.drain_timeout()
        );
        let drain_end = self.shutdown.begin(now);
        self.deadlines.set(Timer::DrainEnd, drain_end);
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
        self.deadlines.cancel(Timer::AcceptRetry);
        let stamp = Stamp::at(self.started, now);
        for (key, slot) in self.slots.iter_mut() {
            // A quiet connection closes at once instead of lingering (see `shutdown`).
            if shutdown::is_quiet(slot, stamp) {
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
    fn abort_remaining(&mut self) {
        for (key, slot) in self.slots.iter_mut() {
            if slot.conn.close_reason().is_none() {
                slot.conn.abort(CloseReason::DrainTimeout);
                self.queues.finished.push(key);
            }
        }
        self.remove_finished();
    }

    /// True once shutdown began and every connection is gone: the loop ends.
    fn is_finished(&self) -> bool {
        self.shutdown.has_begun() && self.slots.is_empty()
    }

    /// Logs the stats line (totals and rates since the previous one). One reactor of several
    /// posts its counters to the group instead, and reactor 0 logs the group's sum.
    fn log_report(&mut self) {
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

    /// Answers a [`StatsHandle`] that asked since the last wake-up.
    fn answer_stats_if_asked(&self) {
        if self.live.is_asked() {
            self.live.answer(self.stats());
        }
    }

    /// The run is over: leaves the final counters for every [`StatsHandle`], now and later.
    fn leave_final_stats(&self, stats: &Stats) {
        self.live.leave_final(stats);
    }

    /// Logs a report if a [`ReportHandle`] asked for one since the last wake-up.
    fn report_if_requested(&mut self) {
        if self.report_requested.swap(false, Ordering::SeqCst) {
            self.log_report();
        }
    }

    /// Posts this reactor's counters to its group, unasked (for the `/metrics` page of
    /// reactor 0), and sets the next post.
    fn post_to_group(&mut self, now: Instant) {
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
    /// group the others' as last posted (at most a second old: see `ServerGroup`).
    #[cfg(feature = "metrics")]
    fn snapshots(&self) -> Vec<Stats> {
        match &self.group {
            None => vec![self.stats()],
            Some(member) => member.snapshots(self.stats()),
        }
    }
}

// The `/metrics` endpoint's place in the loop: routing its events and its timeouts (the
// endpoint itself, sockets, HTTP and the page, lives in `crate::metrics`; without the
// `metrics` feature these hooks compile to nothing).
impl Server {
    /// True for the metrics listener's token and its scrape connections'.
    fn is_metrics_token(&self, token: Token) -> bool {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            return metrics.owns(token);
        }
        let _ = token;
        false
    }

    /// Lets the endpoint accept, read a request, or answer it; the page is a snapshot of
    /// the counters taken only when a complete request asks for it.
    fn on_metrics_ready(&mut self, token: Token, now: Instant) {
        #[cfg(feature = "metrics")]
        if let Some(mut metrics) = self.metrics.take() {
            metrics.on_ready(self.poll.registry(), token, now, &|| self.snapshots());
            self.deadlines
                .set(Timer::ScrapeExpiry, metrics.next_deadline());
            self.metrics = Some(metrics);
        }
        let _ = (token, now);
    }

    /// The oldest scrape connection's deadline came: closes the ones past theirs, and sets
    /// the timer for the next.
    fn expire_scrapes(&mut self, now: Instant) {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = self.metrics.as_mut() {
            metrics.expire(now);
            self.deadlines
                .set(Timer::ScrapeExpiry, metrics.next_deadline());
        }
        let _ = now;
    }
}

// Creating a server (its sockets come from `bind`, its policies from the config), and what an
// embedder may ask a bound server.
impl Server {
    /// Validates `config`, binds every listener's sockets and registers them. Port 0 works:
    /// read the real addresses with [`Server::endpoints`] (or, for the echo listener,
    /// [`Server::tcp_addr`] and [`Server::udp_addr`]).
    pub fn bind(config: Config) -> Result<Server, ServerError> {
        config.validate()?;
        let bound = net::bind_all(&config, Sharing::Exclusive)?;
        log_start(&config, 1);
        let shared = Arc::new(SharedLimits::new(&config, descriptors::soft_limit(), 1));
        Server::with_sockets(&config, bound, shared, Announce::Yes)
    }

    /// A server on sockets bound already, counting its connections and pipes in `shared`
    /// (with the other reactors of a `ServerGroup`, if any). `config` is valid. `announce`
    /// says whether to warn about exposed listeners (once per group, not per reactor).
    pub(crate) fn with_sockets(
        config: &Config,
        bound: Vec<BoundListener>,
        shared: Arc<SharedLimits>,
        announce: Announce,
    ) -> Result<Server, ServerError> {
        let started = Instant::now();
        let bind::Sockets {
            poll,
            waker,
            listeners,
            udp,
            services,
            endpoints,
            tcp_addr,
            udp_addr,
            stats,
            #[cfg(feature = "metrics")]
            metrics,
        } = bind::register(config, bound, announce, started)?;
        let limits = Limits {
            high_water: config.max_pending,
            low_water: config.low_water,
            read_budget: config.read_budget,
            write_budget: config.write_budget,
        };
        Ok(Server {
            poll,
            listeners,
            udp,
            services,
            endpoints,
            slots: Slab::new(),
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            queues: Queues::default(),
            admission: Admission::new(config, Arc::clone(&shared)),
            memory: MemoryBudget::new(limits, config.max_pending_reading, config.memory_budget),
            recycling: Recycling,
            deadlines: Deadlines::default(),
            timeouts: Timeouts::new(config.idle_timeout, config.stall_timeout),
            stats_every: config.stats_interval,
            pipes: PipeBudget::new(shared),
            watchdog: Watchdog::default(),
            shutdown: Shutdown::new(waker, config.drain_timeout),
            tcp_addr,
            udp_addr,
            // Reset when `run` starts; set here so `stats()` on a server never run says
            // something sensible.
            started,
            stats,
            reporter: Reporter::default(),
            report_requested: Arc::new(AtomicBool::new(false)),
            live: Arc::default(),
            #[cfg(feature = "metrics")]
            metrics,
            group: None,
        })
    }

    /// Makes this server one reactor of a group: its reports go to the group's board.
    pub(crate) fn join_group(&mut self, member: Box<dyn Board>) {
        self.group = Some(member);
    }

    /// Every bound socket with the service it serves, in the order of the configuration
    /// (each listener's TCP side before its UDP side).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.endpoints.clone()
    }

    /// The first echo listener's TCP address, unless it has none.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The first echo listener's UDP address, unless it has none.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// A handle that stops this server from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.handle()
    }

    /// The counters so far, with the gauges (pending bytes, pipes, queued datagrams) read
    /// now. Once `run` owns the server, read them through a
    /// [`stats_handle`](Server::stats_handle).
    pub fn stats(&self) -> Stats {
        let mut stats = Stats {
            // Not the turn's `now`: this is also called from outside the loop.
            uptime: self.started.elapsed(),
            pending_bytes: self.memory.pending_total() as u64,
            zero_copy_pipes_open: self.pipes.open() as u64,
            udp_queued_datagrams: self.udp.iter().map(|udp| udp.socket.queued() as u64).sum(),
            ..self.stats.clone()
        };
        // The same gauges per service: one pass over the connections (a stats line or a
        // scrape, not a turn, pays for it).
        for slot in self.slots.iter().map(|(_, slot)| slot) {
            if let Some(service) = stats.services.get_mut(slot.service()) {
                service.pending_bytes += slot.conn.pending() as u64;
            }
        }
        for udp in &self.udp {
            if let Some(service) = stats.services.get_mut(udp.service) {
                service.udp_queued_datagrams += udp.socket.queued() as u64;
            }
        }
        stats
    }

    /// The bound `/metrics` address, when [`Config::metrics`] asked for one.
    #[cfg(feature = "metrics")]
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|endpoint| endpoint.local_addr())
    }

    /// A handle that reads this server's counters from another thread while it runs.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle::new(&self.live, self.shutdown.waker())
    }

    /// A handle that asks this server, from another thread, to log its counters and rates now
    /// (the binary sends one on SIGUSR1).
    pub fn report_handle(&self) -> ReportHandle {
        ReportHandle::new(&self.report_requested, self.shutdown.waker())
    }
}
