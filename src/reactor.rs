//! The reactor: one thread, one `mio::Poll`, the listener, the UDP socket and a slab of
//! connections. [`Server::run`] is the event loop; read it first.
//!
//! Contracts from mio this code relies on (see `mio::Poll`'s docs):
//! - Readiness is edge-triggered: after an event, a source must be read or written until
//!   `WouldBlock`, or the readiness is remembered here and worked off later (the ready queue).
//! - Events can be spurious, and an event can name a connection that was closed earlier in the
//!   same batch: look-ups by token tolerate a missing entry.
//! - Closing a socket's descriptor removes it from the poller, so teardown needs no
//!   `deregister` call; teardown waits for the end of the batch so no slab key (and token) is
//!   reused while events for its previous owner may still be in hand.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::config::{open_file_limit, Config, RESERVED_FDS};
use crate::connection::{Connection, Limits};
use crate::deadlines::{Deadlines, Owner};
use crate::error::ServerError;
use crate::listen::{Endpoint, Protocol};
use crate::net;
use crate::service::ServiceKind;
use crate::stats::{CloseReason, Stats};
use crate::udp::{UdpEcho, MAX_DATAGRAM};
use crate::zero_copy::{Pipe, Spliced};

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
/// How long accepting pauses after the process ran out of descriptors (nginx uses 500 ms).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// At most one "out of descriptors" warning per this period.
const WARNING_PERIOD: Duration = Duration::from_secs(10);
/// The memory budget never squeezes a connection below this much pending output.
const MIN_FAIR_SHARE: usize = 64 * 1024;
/// A connection that reads this much in one turn carries bulk data: it gets a pipe for
/// zero-copy echo (while `Config::zero_copy_conns` allows). Small messages stay on the copying
/// fast path, which costs the same syscalls and no descriptors.
const ZERO_COPY_MIN_READ: usize = 32 * 1024;

/// Stops a running [`Server`] from any thread: stop accepting, drain, return the stats.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    requested: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Asks the server to shut down gracefully. Calling it again changes nothing.
    pub fn shutdown(&self) {
        self.requested.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            log::error!("cannot wake the event loop for shutdown: {e}");
        }
    }
}

/// A TCP connection as the reactor holds it: the socket beside its sans-IO state, plus what
/// the reactor's policies need (timestamps for timeouts, identity for stale timer entries).
#[derive(Debug)]
struct Conn {
    socket: TcpStream,
    state: Connection,
    /// The zero-copy pipe, once the connection has shown bulk traffic (see `zero_copy`).
    pipe: Option<Pipe>,
    /// Making a pipe failed once (out of descriptors): this connection keeps copying.
    copy_only: bool,
    peer: SocketAddr,
    /// Unique for the server's lifetime; a slab key is not.
    id: u64,
    /// In the ready queue already (so it is queued once).
    queued: bool,
    /// Has an entry in `deadlines` (at most one).
    timer_armed: bool,
    /// Last time a byte moved either way (for the idle timeout).
    last_activity: Instant,
    /// Since when output has been pending without write progress (for the stall timeout).
    stalled_since: Option<Instant>,
}

impl Conn {
    /// The earliest timeout this connection is heading for, and what it would close it as.
    fn next_timeout(&self, config: &Config) -> Option<(Instant, CloseReason)> {
        let idle = config
            .idle_timeout
            .map(|after| (self.last_activity + after, CloseReason::IdleTimeout));
        let stall = config
            .stall_timeout
            .zip(self.stalled_since)
            .map(|(after, since)| (since + after, CloseReason::StallTimeout));
        match (idle, stall) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    fn owner(&self, key: usize) -> Owner {
        Owner { key, id: self.id }
    }
}

/// A bound echo server. Create with [`Server::bind`], stop with a [`ShutdownHandle`].
#[derive(Debug)]
pub struct Server {
    config: Config,
    poll: Poll,
    listener: Option<TcpListener>,
    udp: Option<UdpEcho>,
    conns: Slab<Conn>,
    /// The one read buffer shared by every socket: input lands here and goes straight back.
    scratch: Box<[u8]>,
    limits: Limits,
    /// Connections whose budget ran out with work left; they run again next turn.
    ready: Vec<usize>,
    /// Connections that finished during this batch; removed at its end.
    finished: Vec<usize>,
    /// Idle and stall deadlines, one entry per connection at most.
    deadlines: Deadlines,
    next_conn_id: u64,
    /// Open connections per source IP, kept only when `max_per_source` is set.
    per_source: HashMap<IpAddr, usize>,
    /// Pending output summed over connections, and how many connections hold some.
    pending_total: usize,
    buffering_conns: usize,
    /// Connections holding a zero-copy pipe now.
    pipes_open: usize,
    /// The time, read once per turn after `poll` returns.
    now: Instant,
    /// The listener or UDP socket has work left that no new edge will announce.
    accept_ready: bool,
    udp_ready: bool,
    accept_retry_at: Option<Instant>,
    last_fd_warning: Option<Instant>,
    next_stats_at: Option<Instant>,
    drain_deadline: Option<Instant>,
    shutdown_requested: Arc<AtomicBool>,
    waker: Arc<Waker>,
    tcp_addr: Option<SocketAddr>,
    udp_addr: Option<SocketAddr>,
    started: Instant,
    stats: Stats,
}

impl Server {
    /// Validates `config`, binds its sockets and registers them. Port 0 works: read the real
    /// addresses with [`Server::tcp_addr`] and [`Server::udp_addr`].
    pub fn bind(config: Config) -> Result<Server, ServerError> {
        config.validate()?;
        let bound = net::bind(&config)?;
        let poll = Poll::new().map_err(ServerError::Poll)?;
        let registry = poll.registry();
        let waker = Arc::new(Waker::new(registry, WAKER).map_err(ServerError::Poll)?);

        let mut listener = bound.tcp.map(TcpListener::from_std);
        let mut tcp_addr = None;
        if let Some(listener) = listener.as_mut() {
            tcp_addr = Some(listener.local_addr().map_err(ServerError::Poll)?);
            registry
                .register(listener, LISTENER, Interest::READABLE)
                .map_err(ServerError::Poll)?;
        }
        let mut udp = bound
            .udp
            .map(|socket| UdpEcho::new(UdpSocket::from_std(socket), config.udp_queue_datagrams))
            .transpose()
            .map_err(ServerError::Poll)?;
        let mut udp_addr = None;
        if let Some(udp) = udp.as_mut() {
            udp_addr = Some(udp.local_addr());
            registry
                .register(
                    udp.socket_mut(),
                    UDP,
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(ServerError::Poll)?;
        }
        if config.is_exposed() {
            log::warn!(
                "listening on {}: the echo service is exposed beyond this machine \
                 (a public UDP echo can be abused as a reflection amplifier)",
                config.bind
            );
        }
        log_connection_limit(&config);
        let limits = Limits {
            high_water: config.max_pending,
            low_water: config.low_water,
            read_budget: config.read_budget,
            write_budget: config.write_budget,
        };
        Ok(Server {
            poll,
            listener,
            udp,
            conns: Slab::new(),
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            limits,
            ready: Vec::new(),
            finished: Vec::new(),
            deadlines: Deadlines::default(),
            next_conn_id: 0,
            per_source: HashMap::new(),
            pending_total: 0,
            buffering_conns: 0,
            pipes_open: 0,
            now: Instant::now(),
            accept_ready: false,
            udp_ready: false,
            accept_retry_at: None,
            last_fd_warning: None,
            next_stats_at: None,
            drain_deadline: None,
            shutdown_requested: Arc::new(AtomicBool::new(false)),
            waker,
            tcp_addr,
            udp_addr,
            started: Instant::now(),
            stats: Stats::default(),
            config,
        })
    }

    /// The bound TCP address, unless TCP is off.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The bound UDP address, unless UDP is off.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// Every bound socket with the service it serves, in the order of the configuration.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let echo = |protocol, addr: Option<SocketAddr>| {
            addr.map(|addr| Endpoint {
                service: ServiceKind::Echo,
                protocol,
                addr,
            })
        };
        [
            echo(Protocol::Tcp, self.tcp_addr),
            echo(Protocol::Udp, self.udp_addr),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// A handle that stops this server from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            requested: Arc::clone(&self.shutdown_requested),
            waker: Arc::clone(&self.waker),
        }
    }

    /// The counters so far (an embedder running the loop elsewhere gets them from `run`).
    pub fn stats(&self) -> Stats {
        Stats {
            uptime: self.started.elapsed(),
            pending_bytes: self.pending_total as u64,
            ..self.stats.clone()
        }
    }

    /// The event loop. Returns the final counters after a graceful shutdown.
    ///
    /// Each turn: wait for readiness (or for a timer, or not at all when work is queued),
    /// dispatch each event by token, run work that an earlier budget cut short, tear down
    /// connections that finished, then check timers.
    pub fn run(mut self) -> Result<Stats, ServerError> {
        self.started = Instant::now();
        self.next_stats_at = self.config.stats_interval.map(|every| self.started + every);
        let mut events = Events::with_capacity(1024);
        while !self.is_finished() {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(ServerError::Poll(e)),
                }
            }
            self.now = Instant::now();
            for event in events.iter() {
                self.dispatch(event);
            }
            self.run_ready_work();
            self.remove_finished();
            self.check_timers();
        }
        Ok(self.stats())
    }

    /// Routes one event to its source. Connections run at once; the listener and the UDP
    /// socket only note their readiness and run in `run_ready_work`.
    fn dispatch(&mut self, event: &Event) {
        match event.token() {
            LISTENER => self.accept_ready = true,
            UDP => {
                if let Some(udp) = self.udp.as_mut() {
                    udp.on_event(event.is_readable(), event.is_writable());
                    self.udp_ready = true;
                }
            }
            WAKER => self.on_wake(),
            Token(key) => {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.state.on_event(
                        event.is_readable(),
                        event.is_writable() || event.is_write_closed(),
                        event.is_read_closed() || event.is_error(),
                    );
                    self.drive_connection(key);
                }
            }
        }
    }

    /// Work that no new event will announce: accepts and datagrams past their budget,
    /// connections that yielded.
    fn run_ready_work(&mut self) {
        if self.accept_ready {
            self.accept_batch();
        }
        if self.udp_ready {
            self.udp_ready = match self.udp.as_mut() {
                Some(udp) => udp.drive(&mut self.scratch, UDP_BUDGET, &mut self.stats),
                None => false,
            };
        }
        let queued = std::mem::take(&mut self.ready);
        for &key in &queued {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.queued = false;
            }
            self.drive_connection(key);
        }
        // Keep the allocation of whichever queue is larger, for the next turn.
        if self.ready.is_empty() {
            self.ready = queued;
            self.ready.clear();
        }
    }

    /// Lets one connection do its I/O, then files it: finished, queued, or waiting for an edge.
    fn drive_connection(&mut self, key: usize) {
        let limits = self.current_limits();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.state.close_reason().is_some() {
            return; // already in `finished`
        }
        let before = conn.state.pending();
        let outcome = match &conn.pipe {
            Some(pipe) => {
                let mut io = Spliced {
                    socket: &mut conn.socket,
                    pipe,
                };
                conn.state
                    .drive(&mut io, &mut self.scratch, &limits, &mut self.stats)
            }
            None => conn.state.drive(
                &mut conn.socket,
                &mut self.scratch,
                &limits,
                &mut self.stats,
            ),
        };
        let after = conn.state.pending();
        self.pending_total = self.pending_total + after - before;
        self.buffering_conns =
            self.buffering_conns + usize::from(after > 0) - usize::from(before > 0);
        if outcome.paused && limits.high_water < self.limits.high_water {
            self.stats.memory_budget_pauses += 1;
        }
        if outcome.bytes_read + outcome.bytes_written > 0 {
            conn.last_activity = self.now;
        }
        conn.stalled_since = match (after, conn.stalled_since) {
            (0, _) => None,
            (_, Some(since)) if outcome.bytes_written == 0 => Some(since),
            _ => Some(self.now),
        };
        if conn.state.close_reason().is_some() {
            self.finished.push(key);
            return;
        }
        if outcome.yielded && !conn.queued {
            conn.queued = true;
            self.ready.push(key);
        }
        if !conn.timer_armed {
            if let Some((at, _)) = conn.next_timeout(&self.config) {
                conn.timer_armed = true;
                self.deadlines.push(at, conn.owner(key));
            }
        }
        if outcome.bytes_read >= ZERO_COPY_MIN_READ && conn.pipe.is_none() && !conn.copy_only {
            self.offer_pipe(key);
        }
    }

    /// Switches a bulk connection to zero-copy echo, if a pipe is left to give and it has
    /// nothing pending (else it is offered again on its next bulk turn).
    fn offer_pipe(&mut self, key: usize) {
        if self.pipes_open >= self.config.zero_copy_conns {
            return;
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.state.pending() > 0 {
            return;
        }
        match Pipe::new() {
            Ok(pipe) => {
                if conn.state.use_pipe() {
                    conn.pipe = Some(pipe);
                    self.pipes_open += 1;
                    self.stats.zero_copy_conns += 1;
                    log::debug!("{} (#{key}) echoes with zero copy", conn.peer);
                }
            }
            Err(e) => {
                conn.copy_only = true;
                self.stats.zero_copy_unavailable += 1;
                log::debug!("no zero-copy pipe for {} (#{key}): {e}", conn.peer);
            }
        }
    }

    /// The per-connection limits, lowered to a fair share while the memory budget is exceeded:
    /// connections above it stop reading until the total comes down. Nobody is dropped for it.
    fn current_limits(&self) -> Limits {
        if self.pending_total <= self.config.memory_budget {
            return self.limits;
        }
        let fair_share = (self.config.memory_budget / self.buffering_conns.max(1))
            .clamp(MIN_FAIR_SHARE, self.limits.high_water);
        Limits {
            high_water: fair_share,
            low_water: self.limits.low_water.min(fair_share / 4),
            ..self.limits
        }
    }

    /// Accepts up to the per-wakeup budget. Running out of descriptors pauses accepting for a
    /// moment (and until a connection closes) instead of spinning or ending the server.
    fn accept_batch(&mut self) {
        self.accept_ready = false;
        for _ in 0..self.config.accept_budget {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((socket, peer)) => self.admit(socket, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_out_of_descriptors(&e) => {
                    self.stats.accept_errors += 1;
                    self.stats.accept_fd_exhausted += 1;
                    self.warn_out_of_descriptors(&e);
                    self.accept_retry_at = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
                Err(e) => {
                    // ECONNABORTED and friends: that one client is gone; keep accepting.
                    self.stats.accept_errors += 1;
                    log::debug!("accept: {e}");
                }
            }
        }
        // Budget spent: more may be waiting, and no new edge will say so.
        self.accept_ready = true;
    }

    fn admit(&mut self, socket: TcpStream, peer: SocketAddr) {
        // Admission control, as Redis and memcached do it: accept, then close at once, so the
        // client sees a prompt EOF instead of hanging in the backlog. Dropping `socket` closes.
        if self.conns.len() >= self.config.max_connections {
            self.stats.rejected_max_connections += 1;
            log::debug!("rejected {peer}: max connections reached");
            return;
        }
        if let Some(max) = self.config.max_per_source {
            let count = self.per_source.entry(peer.ip()).or_insert(0);
            if *count >= max {
                self.stats.rejected_per_source += 1;
                log::debug!("rejected {peer}: {max} connections from its address already");
                return;
            }
            *count += 1;
        }
        // Echo is latency-bound: do not let Nagle hold back a small reply.
        if let Err(e) = socket.set_nodelay(true) {
            log::debug!("set_nodelay for {peer}: {e}");
        }
        let entry = self.conns.vacant_entry();
        self.next_conn_id += 1;
        let mut conn = Conn {
            socket,
            state: Connection::new(),
            pipe: None,
            copy_only: false,
            peer,
            id: self.next_conn_id,
            queued: false,
            timer_armed: false,
            last_activity: self.now,
            stalled_since: None,
        };
        // Registered once, for both directions; readiness is tracked in `Connection` after.
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut conn.socket, Token(entry.key()), interest)
        {
            self.stats.accept_errors += 1;
            log::warn!("cannot register connection from {peer}: {e}");
            self.forget_source(peer.ip());
            return;
        }
        log::debug!("accepted {peer} as #{}", entry.key());
        if let Some((at, _)) = conn.next_timeout(&self.config) {
            conn.timer_armed = true;
            self.deadlines.push(at, conn.owner(entry.key()));
        }
        entry.insert(conn);
        self.stats.conn_accepted += 1;
        self.stats.conn_active += 1;
    }

    /// Teardown at the batch boundary: drop the sockets of connections that finished.
    fn remove_finished(&mut self) {
        if self.finished.is_empty() {
            return;
        }
        for key in std::mem::take(&mut self.finished) {
            let Some(conn) = self.conns.try_remove(key) else {
                continue;
            };
            if conn.queued {
                self.ready.retain(|&queued| queued != key);
            }
            let pending = conn.state.pending();
            self.pending_total -= pending;
            self.pipes_open -= usize::from(conn.pipe.is_some());
            self.buffering_conns -= usize::from(pending > 0);
            self.forget_source(conn.peer.ip());
            let reason = conn.state.close_reason().unwrap_or(CloseReason::IoError);
            log::debug!("closed {} (#{key}): {reason:?}", conn.peer);
            self.stats.record_close(reason);
        }
        // Stale timer entries of closed connections wait for their deadline; under heavy churn
        // sweep them out so the heap stays proportional to the open connections.
        if self.deadlines.len() > 2 * self.conns.len() + 1024 {
            let conns = &self.conns;
            self.deadlines
                .retain(|owner| conns.get(owner.key).is_some_and(|c| c.id == owner.id));
        }
        // A descriptor was freed: if accepting paused for lack of one, try again now.
        if self.accept_retry_at.take().is_some() {
            self.accept_ready = true;
        }
    }

    fn on_wake(&mut self) {
        if self.shutdown_requested.load(Ordering::SeqCst) && self.drain_deadline.is_none() {
            self.begin_shutdown();
        }
    }

    /// Stop accepting and serving UDP; ask every connection to drain and finish.
    fn begin_shutdown(&mut self) {
        log::info!(
            "shutting down: draining {} connection(s) for up to {:?}",
            self.conns.len(),
            self.config.drain_timeout
        );
        self.drain_deadline = Some(Instant::now() + self.config.drain_timeout);
        self.listener = None;
        self.udp = None;
        self.accept_ready = false;
        self.udp_ready = false;
        self.accept_retry_at = None;
        for (key, conn) in self.conns.iter_mut() {
            conn.state.begin_drain();
            if !conn.queued {
                conn.queued = true;
                self.ready.push(key);
            }
        }
    }

    fn forget_source(&mut self, ip: IpAddr) {
        if let Some(count) = self.per_source.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.per_source.remove(&ip);
            }
        }
    }

    fn check_timers(&mut self) {
        let now = Instant::now();
        self.expire_connections(now);
        if self.accept_retry_at.is_some_and(|at| now >= at) {
            self.accept_retry_at = None;
            self.accept_ready = true;
        }
        if let Some(at) = self.next_stats_at.filter(|&at| now >= at) {
            let every = self.config.stats_interval.unwrap_or(Duration::from_secs(1));
            self.next_stats_at = Some(at.max(now - every) + every);
            log::info!("stats {}", self.stats());
        }
        if self.drain_deadline.is_some_and(|at| now >= at) {
            self.abort_remaining();
        }
    }

    /// Closes connections whose idle or stall deadline passed; re-arms the ones whose deadline
    /// moved on since their entry was pushed.
    fn expire_connections(&mut self, now: Instant) {
        while let Some(owner) = self.deadlines.pop_expired(now) {
            let Some(conn) = self.conns.get_mut(owner.key).filter(|c| c.id == owner.id) else {
                continue; // closed since; the key may belong to someone else now
            };
            conn.timer_armed = false;
            match conn.next_timeout(&self.config) {
                // A connection already closed in this batch is in `finished` already.
                Some((at, reason)) if at <= now && conn.state.close_reason().is_none() => {
                    log::debug!("closing {} (#{}): {reason:?}", conn.peer, owner.key);
                    conn.state.abort(reason);
                    self.finished.push(owner.key);
                }
                Some((at, _)) if at <= now => {}
                Some((at, _)) => {
                    conn.timer_armed = true;
                    self.deadlines.push(at, owner);
                }
                None => {}
            }
        }
        self.remove_finished();
    }

    /// The drain deadline passed: close what is left. Even a connection that sent its FIN and
    /// was only waiting for the peer's counts as cut off: closing it now may find unread input
    /// (the kernel then sends RST and drops echoes still queued for the peer).
    fn abort_remaining(&mut self) {
        for (key, conn) in self.conns.iter_mut() {
            if conn.state.close_reason().is_none() {
                conn.state.abort(CloseReason::DrainTimeout);
                self.finished.push(key);
            }
        }
        self.remove_finished();
    }

    fn is_finished(&self) -> bool {
        self.drain_deadline.is_some() && self.conns.is_empty()
    }

    /// Zero when work is queued; otherwise until the next timer, or forever.
    fn poll_timeout(&self) -> Option<Duration> {
        if self.accept_ready || self.udp_ready || !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let next = [
            self.accept_retry_at,
            self.next_stats_at,
            self.drain_deadline,
            self.deadlines.next(),
        ]
        .into_iter()
        .flatten()
        .min()?;
        Some(next.saturating_duration_since(Instant::now()))
    }

    fn warn_out_of_descriptors(&mut self, error: &io::Error) {
        let now = Instant::now();
        if self
            .last_fd_warning
            .is_some_and(|at| now.duration_since(at) < WARNING_PERIOD)
        {
            return;
        }
        self.last_fd_warning = Some(now);
        log::warn!(
            "accept: {error}; pausing accepts until a connection closes or {ACCEPT_RETRY:?} pass \
             ({} accept errors so far; raise `ulimit -n` to serve more clients)",
            self.stats.accept_errors
        );
    }
}

/// Says at start how many connections will be served, and warns when the open-file limit
/// cannot back that number (accepts would then fail with EMFILE, which is survived).
fn log_connection_limit(config: &Config) {
    let Some(files) = open_file_limit() else {
        log::info!("serving up to {} connections", config.max_connections);
        return;
    };
    let pipe_fds = config.zero_copy_conns.saturating_mul(2);
    log::info!(
        "serving up to {} connections (open-file limit {files}, {RESERVED_FDS} reserved, \
         {pipe_fds} for {} zero-copy pipes)",
        config.max_connections,
        config.zero_copy_conns
    );
    let needed = config
        .max_connections
        .saturating_add(RESERVED_FDS)
        .saturating_add(pipe_fds);
    if needed as u64 > files {
        log::warn!(
            "max connections {} exceeds what the open-file limit {files} allows; \
             accepts will pause when descriptors run out (raise `ulimit -n`)",
            config.max_connections
        );
    }
}

/// EMFILE (this process) or ENFILE (the whole system): no descriptor for the new socket.
fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE)
    )
}
