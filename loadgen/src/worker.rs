//! One load-generator thread for the TCP modes: its own `mio::Poll`, its share of the
//! connections in a slab (token = slab key), and the loop that drives them.
//!
//! ```text
//!  loop:  tick (phase, connect ramp, rate timetable)  ->  poll(timeout)
//!         -> for each event: connect done? read+verify until WouldBlock, admit, write
//!         -> reap connections marked dead during the batch
//!
//!  connection:  Connecting --established--> Open --idle after the run--> Closing --EOF--> gone
//!                    \--error/timeout--> Dead       \--error/violation/EOF--> Dead
//! ```
//!
//! Contracts relied on (mio, epoll edge-triggered): readiness is reported once per edge, so
//! reads and writes continue until `WouldBlock`; events can be spurious, so a connect is only
//! complete when `peer_addr()` succeeds; a token may name a connection killed earlier in the
//! same batch, so look-ups tolerate `Dead`, and slab keys are only freed after the batch.
//!
//! Phases: *running* until the end of the run (new messages are admitted), then *draining*:
//! no new messages, outstanding echoes are awaited (bounded by the drain timeout); each
//! connection that becomes idle half-closes (`shutdown(Write)`) and waits for the server's
//! EOF, so any extra byte the server still sends is caught and the close is clean (no RST).

use super::conn::{EchoStream, Violation};
use super::interval::Ticker;
use super::options::{Mode, Options};
use super::pacer::Pacer;
use super::payload::{derive_key, Pattern, Rng};
use super::schedule::Schedule;
use super::stats::Stats;
use super::{Plan, Shared, INTERRUPTED_DRAIN, STOP_CHECK};
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Scratch buffer for reads; one per thread, shared by all its connections.
const READ_BUF: usize = 64 * 1024;
/// Stream mode moves bulk data: bigger reads mean fewer syscalls per byte.
const STREAM_READ_BUF: usize = 256 * 1024;
/// Scratch buffer the payload is generated into before each write.
const WRITE_BUF: usize = 64 * 1024;
/// Rate mode: most messages one connection may have in flight; beyond it the timetable
/// waits (and the wait shows up in the corrected latency, as it should).
const RATE_MAX_INFLIGHT: usize = 4096;
/// How often connects in progress are checked against the connect timeout.
const CONNECT_CHECK: Duration = Duration::from_millis(100);
/// Handshakes in flight per thread. Firing thousands of SYNs at once overflows the server's
/// listen backlog; the kernel then drops them and the clients retry only after 1 s, 3 s, ...,
/// so a 10,000-connection run would spend seconds connecting. A window of in-flight connects
/// below any sane backlog opens them as fast as the server accepts.
const MAX_CONNECTING: usize = 256;
/// The drain may outlast `--drain-timeout` while echoes keep arriving, up to this many times it.
const DRAIN_EXTENSION_CAP: u32 = 10;
/// While draining, how often the connection table is scanned for completion.
const DRAIN_SCAN: Duration = Duration::from_millis(5);
/// After the last echo, how long to wait for the server's EOF on half-closed connections.
const LINGER: Duration = Duration::from_millis(250);
/// Churn: pause before retrying after a failed connect, so a refusing server does not turn
/// the loop into a busy spin of failing connects.
const RETRY_PAUSE: Duration = Duration::from_millis(10);
/// Salt so that message sizes and payload bytes come from independent streams.
const SIZE_SALT: u64 = 0x5157_e5a1_7000_0001;

/// On Linux epoll, a read that returns less than the buffer size has emptied the socket, and
/// new data raises a new edge: the read that would only say `WouldBlock` can be skipped
/// (unless the peer's FIN was reported, which raises no new edge).
const SHORT_READ_DRAINS: bool = cfg!(target_os = "linux");

/// How new messages are admitted on an open connection while the run lasts.
#[derive(Debug, Clone, Copy)]
enum Admission {
    /// Closed loop with at most this many messages in flight (pingpong = 1, pipeline).
    Depth(usize),
    /// Closed loop with at most about this many bytes in flight (stream).
    Window(u64),
    /// Open loop: the thread's timetable queues messages (rate).
    Scheduled,
    /// One message per connection, then close (churn).
    Once,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting {
        since: Instant,
    },
    Open,
    /// We sent our FIN after the last echo and wait for the server's.
    Closing,
    /// Marked for removal at the end of the batch.
    Dead,
}

struct Conn {
    sock: TcpStream,
    state: State,
    echo: EchoStream,
    /// Last write did not end in `WouldBlock` (edge-triggered: only an event sets it again).
    writable: bool,
    sizes: Rng,
    /// Rate mode: queued a message in this tick and needs a flush.
    dirty: bool,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Running,
    Draining {
        deadline: Instant,
        /// The drain never goes past this, however echoes trickle in.
        hard_stop: Instant,
        linger_until: Option<Instant>,
        next_scan: Instant,
    },
    Done,
}

/// Runs one TCP worker thread to completion and returns what it measured.
pub(crate) fn run(opts: &Options, plan: &Plan, shared: &Shared) -> io::Result<Stats> {
    let admission = match opts.mode {
        Mode::PingPong => Admission::Depth(1),
        Mode::Pipeline { depth } => Admission::Depth(depth),
        Mode::Stream { window } => Admission::Window(window as u64),
        Mode::Rate { .. } => Admission::Scheduled,
        Mode::Churn => Admission::Once,
        Mode::Udp { .. } => {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                "udp mode runs in the udp worker",
            ))
        }
    };
    let read_buf = if matches!(admission, Admission::Window(_)) {
        STREAM_READ_BUF
    } else {
        READ_BUF
    };
    let poll = Poll::new()?;
    let pacer = match admission {
        Admission::Scheduled => Pacer::precise(&poll, opts.spin)?,
        _ => Pacer::coarse(),
    };
    let mut w = Worker {
        opts,
        end: plan.end,
        stop: shared.stop,
        ticker: shared.ticker(plan.start),
        pacer,
        poll,
        conns: Slab::with_capacity(plan.connections),
        stats: Stats::new(plan.measure_start),
        rbuf: vec![0; read_buf],
        wbuf: vec![0; WRITE_BUF],
        doomed: Vec::with_capacity(plan.connections),
        admission,
        phase: Phase::Running,
        to_open: plan.connections,
        connect_pacer: plan.connect_rate.map(|r| Schedule::new(plan.start, r)),
        not_before: plan.start,
        next_id: plan.first_id,
        connecting: 0,
        next_connect_check: plan.start + CONNECT_CHECK,
        rate: plan.rate.map(|r| Schedule::new(plan.start, r)),
        rate_blocked: false,
        open_keys: Vec::new(),
        rr: 0,
        dirty: Vec::new(),
        last_received: plan.start,
    };
    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        w.tick(now);
        if let Phase::Done = w.phase {
            break;
        }
        let until = w.wake_at(now);
        w.pacer.poll(&mut w.poll, &mut events, until)?;
        for event in events.iter() {
            w.on_event(event);
        }
        w.reap();
        if let Some(t) = &mut w.ticker {
            t.tick(Instant::now(), &mut w.stats);
        }
    }
    w.finish();
    if let Some(t) = &mut w.ticker {
        t.finish(Instant::now(), &mut w.stats);
    }
    Ok(w.stats)
}

struct Worker<'a> {
    opts: &'a Options,
    /// The end of the run: `plan.end`, or earlier when stopped by a signal.
    end: Instant,
    stop: &'a std::sync::atomic::AtomicBool,
    ticker: Option<Ticker<'a>>,
    pacer: Pacer,
    poll: Poll,
    conns: Slab<Conn>,
    stats: Stats,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// Keys killed during the current batch, removed in `reap` so no key is reused while
    /// events for it may still be in the batch.
    doomed: Vec<usize>,
    admission: Admission,
    phase: Phase,
    /// Connections still to open (churn adds one back after each cycle).
    to_open: usize,
    connect_pacer: Option<Schedule>,
    not_before: Instant,
    /// Number of the next connection, for its payload key.
    next_id: u64,
    connecting: usize,
    next_connect_check: Instant,
    rate: Option<Schedule>,
    /// Rate mode: every connection is at its in-flight limit (or none is open), so the
    /// timetable waits for an event instead of a timeout.
    rate_blocked: bool,
    /// Rate mode: open connections, for round-robin.
    open_keys: Vec<usize>,
    rr: usize,
    dirty: Vec<usize>,
    /// When echoed bytes last arrived: the drain keeps waiting while they do.
    last_received: Instant,
}

impl Worker<'_> {
    fn running(&self) -> bool {
        matches!(self.phase, Phase::Running)
    }

    /// Time-driven work before each poll: phase changes, connects due, rate sends due.
    fn tick(&mut self, now: Instant) {
        match self.phase {
            Phase::Running if now >= self.end || self.stop.load(Relaxed) => {
                let interrupted = now < self.end;
                if interrupted {
                    self.end = now;
                    self.stats.stopped_at = Some(now);
                }
                // Sends intended before the end but not yet made still go out (late, with
                // their intended times): the timetable is kept to the last slot.
                self.send_scheduled(now);
                self.start_drain(now, interrupted);
            }
            Phase::Running => {
                self.open_due(now);
                if self.connecting > 0 && now >= self.next_connect_check {
                    self.check_connect_timeouts(now);
                }
                self.send_scheduled(now);
                self.reap();
            }
            Phase::Draining {
                deadline,
                hard_stop,
                linger_until,
                next_scan,
            } if now >= next_scan || self.conns.is_empty() => {
                // Connections that still wait for echoes keep the drain going.
                let waiting = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.state == State::Open)
                    .count();
                let linger_until = match (waiting, linger_until) {
                    (0, None) => Some(now + LINGER),
                    (_, l) => l,
                };
                // The deadline counts from the last echo that arrived, so thousands of
                // connections with full windows can finish draining; a server that stopped
                // echoing still ends the run after `drain_timeout`, and a trickle after
                // DRAIN_EXTENSION_CAP times that.
                let quiet_since = self.last_received + self.opts.drain_timeout;
                let deadline = deadline.max(quiet_since).min(hard_stop);
                if self.conns.is_empty()
                    || now >= deadline
                    || linger_until.is_some_and(|l| now >= l)
                {
                    self.phase = Phase::Done;
                } else {
                    self.phase = Phase::Draining {
                        deadline,
                        hard_stop,
                        linger_until,
                        next_scan: now + DRAIN_SCAN,
                    };
                }
            }
            Phase::Draining { .. } | Phase::Done => {}
        }
    }

    /// When poll must return: the next thing `tick` has to do, the next interval boundary,
    /// and a periodic look at the stop flag.
    fn wake_at(&self, now: Instant) -> Instant {
        let mut until = match self.phase {
            Phase::Running => self.end.min(now + STOP_CHECK),
            Phase::Draining {
                deadline,
                next_scan,
                ..
            } => deadline.min(next_scan),
            Phase::Done => now,
        };
        if self.running() {
            if self.may_open() {
                let due = self
                    .connect_pacer
                    .as_ref()
                    .map_or(now, Schedule::next_due)
                    .max(self.not_before);
                until = until.min(due);
            }
            if self.connecting > 0 {
                until = until.min(self.next_connect_check);
            }
            if let (Some(s), false) = (&self.rate, self.rate_blocked) {
                until = until.min(s.next_due());
            }
        }
        if let Some(t) = &self.ticker {
            until = until.min(t.next_due());
        }
        until
    }

    /// Stops admitting messages; an interrupted run drains for a short, fixed time only.
    fn start_drain(&mut self, now: Instant, interrupted: bool) {
        let (deadline, hard_stop) = if interrupted {
            let d = now + self.opts.drain_timeout.min(INTERRUPTED_DRAIN);
            (d, d)
        } else {
            let d = now + self.opts.drain_timeout;
            (
                d,
                d + self.opts.drain_timeout.saturating_mul(DRAIN_EXTENSION_CAP),
            )
        };
        self.phase = Phase::Draining {
            deadline,
            hard_stop,
            linger_until: None,
            next_scan: now,
        };
        let churn = matches!(self.admission, Admission::Once);
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            match self.conns[key].state {
                State::Connecting { .. } => {
                    // In churn a connect in progress at the end is normal; elsewhere a
                    // connection that never came up during the whole run is a failure.
                    if !churn {
                        self.stats.connect_failed(
                            &"connect still in progress at the end of the run (no handshake \
                              completed: the server's listen backlog is full, or nothing \
                              answers at that address)",
                        );
                    }
                    self.kill(key);
                }
                State::Open => self.maybe_half_close(key),
                State::Closing | State::Dead => {}
            }
        }
        self.reap();
    }

    /// Opens the connections whose turn has come (all at once without `--connect-rate`).
    /// True while another connect may start: some are still to open, and fewer than
    /// `MAX_CONNECTING` handshakes are in flight.
    fn may_open(&self) -> bool {
        self.to_open > 0 && self.connecting < MAX_CONNECTING
    }

    fn open_due(&mut self, now: Instant) {
        while self.may_open() && now >= self.not_before {
            if let Some(p) = &mut self.connect_pacer {
                if !p.is_due(now) {
                    break;
                }
                p.advance();
            }
            self.to_open -= 1;
            self.open_one(now);
        }
    }

    fn open_one(&mut self, now: Instant) {
        let id = self.next_id;
        self.next_id += 1;
        let mut sock = match TcpStream::connect(self.opts.target) {
            Ok(s) => s,
            Err(e) => return self.connect_error(&e, now),
        };
        // Small messages must leave at once, not wait for Nagle to coalesce them.
        if let Err(e) = sock.set_nodelay(true) {
            log::debug!("set_nodelay: {e}");
        }
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        // Registered once for both directions; readiness is tracked in user space after.
        if let Err(e) = self.poll.registry().register(
            &mut sock,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            return self.connect_error(&e, now);
        }
        let depth = match self.admission {
            Admission::Depth(d) => d,
            Admission::Window(_) | Admission::Scheduled => 16,
            Admission::Once => 1,
        };
        entry.insert(Conn {
            sock,
            state: State::Connecting { since: now },
            echo: EchoStream::new(Pattern::new(derive_key(self.opts.seed, id)), depth),
            writable: false,
            sizes: Rng::new(derive_key(self.opts.seed ^ SIZE_SALT, id)),
            dirty: false,
        });
        self.connecting += 1;
    }

    fn connect_error(&mut self, e: &dyn std::fmt::Display, now: Instant) {
        self.stats.connect_failed(e);
        log::debug!("connect to {}: {e}", self.opts.target);
        if matches!(self.admission, Admission::Once) && self.running() {
            self.to_open += 1;
            self.not_before = now + RETRY_PAUSE;
        }
    }

    fn check_connect_timeouts(&mut self, now: Instant) {
        self.next_connect_check = now + CONNECT_CHECK;
        let limit = self.opts.connect_timeout;
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter_map(|(k, c)| match c.state {
                State::Connecting { since } if now - since >= limit => Some(k),
                _ => None,
            })
            .collect();
        for key in expired {
            self.kill(key);
            self.connect_error(&"connect timed out", now);
        }
    }

    fn on_event(&mut self, event: &Event) {
        let key = event.token().0;
        let now = Instant::now();
        // The token may name a connection killed earlier in this batch (or, never, a
        // freed slot: keys are only released after the batch).
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match conn.state {
            State::Dead => return,
            State::Connecting { since } => match connect_outcome(&conn.sock) {
                ConnectOutcome::Pending => return,
                ConnectOutcome::Failed(e) => {
                    self.kill(key);
                    return self.connect_error(&e, now);
                }
                ConnectOutcome::Connected => {
                    self.connecting -= 1;
                    self.stats.connected(now.saturating_duration_since(since));
                    conn.state = State::Open;
                    // Assuming writable is always safe: at worst one write says WouldBlock.
                    conn.writable = true;
                    match self.admission {
                        Admission::Once => {
                            let size = self.opts.size.pick(conn.sizes.next_u64());
                            // Churn measures the whole cycle from the connect: that is the
                            // latency a short-lived client sees.
                            conn.echo.queue(size, since);
                        }
                        Admission::Scheduled => self.open_keys.push(key),
                        _ => {}
                    }
                }
            },
            State::Open | State::Closing => {
                if event.is_writable() {
                    conn.writable = true;
                }
            }
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read(key, now, event.is_read_closed() || event.is_error());
        }
        self.admit_and_flush(key, now);
    }

    /// Reads until `WouldBlock`, verifying every byte.
    fn read(&mut self, key: usize, now: Instant, peer_closed: bool) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.state == State::Dead {
                return;
            }
            match conn.sock.read(&mut self.rbuf) {
                Ok(0) => return self.on_eof(key),
                Ok(n) => {
                    self.stats.bytes_received += n as u64;
                    self.last_received = now;
                    match conn.echo.on_received(&self.rbuf[..n], now, &mut self.stats) {
                        Ok(done) => {
                            if done > 0 && matches!(self.admission, Admission::Once) {
                                // Churn: one echo per connection. All bytes were read, so
                                // the close sends a FIN, not a RST.
                                self.kill(key);
                                if self.running() {
                                    self.to_open += 1;
                                }
                                return;
                            }
                        }
                        Err(Violation::Mismatch { offset }) => {
                            log::warn!("echo mismatch at stream offset {offset}");
                            self.stats.mismatch_at(offset);
                            return self.kill(key);
                        }
                        Err(Violation::Extra { bytes }) => {
                            log::warn!("{bytes} bytes received beyond what was sent");
                            self.stats.extra(bytes);
                            return self.kill(key);
                        }
                    }
                    if SHORT_READ_DRAINS && n < self.rbuf.len() && !peer_closed {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.io_error(key, &e),
            }
        }
    }

    /// The server closed its side.
    fn on_eof(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        match conn.state {
            // The expected end: our FIN, then theirs.
            State::Closing => {}
            _ => {
                let outstanding = conn.echo.outstanding();
                if outstanding > 0 {
                    log::warn!("server closed with {outstanding} bytes not echoed");
                    self.stats.lost(
                        outstanding,
                        "the server closed (FIN) before echoing everything",
                    );
                } else if self.running() {
                    self.stats
                        .io_error("the server closed the connection (FIN) during the run");
                }
            }
        }
        self.kill(key);
    }

    fn io_error(&mut self, key: usize, e: &io::Error) {
        log::debug!("connection error: {e}");
        if let Some(conn) = self.conns.get(key) {
            self.stats.io_failed(e);
            self.stats.lost(
                conn.echo.outstanding(),
                "echoes lost when the connection failed (see the I/O error)",
            );
        }
        self.kill(key);
    }

    /// Queues new messages as the mode allows, then writes what is pending.
    fn admit_and_flush(&mut self, key: usize, now: Instant) {
        let running = self.running();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.state != State::Open {
            return;
        }
        if running {
            match self.admission {
                Admission::Depth(d) => {
                    while conn.echo.messages_in_flight() < d {
                        let size = self.opts.size.pick(conn.sizes.next_u64());
                        conn.echo.queue(size, now);
                    }
                }
                Admission::Window(w) => {
                    // The window may be exceeded by the last message admitted: bounded
                    // by window + one message.
                    while conn.echo.bytes_in_flight() < w {
                        let size = self.opts.size.pick(conn.sizes.next_u64());
                        conn.echo.queue(size, now);
                    }
                }
                Admission::Scheduled | Admission::Once => {}
            }
        }
        self.flush(key, now);
        if !self.running() {
            self.maybe_half_close(key);
        }
    }

    /// Writes pending bytes until done or `WouldBlock`.
    fn flush(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        while conn.writable && conn.echo.has_unwritten() {
            let n = conn.echo.fill_unwritten(&mut self.wbuf);
            match conn.sock.write(&self.wbuf[..n]) {
                Ok(0) => {
                    let e = io::Error::new(ErrorKind::WriteZero, "write returned 0");
                    return self.io_error(key, &e);
                }
                Ok(k) => {
                    conn.echo.on_written(k, now);
                    self.stats.bytes_sent += k as u64;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => conn.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.io_error(key, &e),
            }
        }
    }

    /// After the run: an open connection with nothing in flight sends its FIN and waits for
    /// the server's (see the module doc).
    fn maybe_half_close(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.state == State::Open && conn.echo.is_idle() {
            match conn.sock.shutdown(Shutdown::Write) {
                Ok(()) => conn.state = State::Closing,
                // Already reset by the peer; nothing in flight, so nothing lost.
                Err(_) => self.kill(key),
            }
        }
    }

    /// Rate mode: queues every message whose intended time has come, round-robin over the
    /// open connections, then writes each touched connection once.
    fn send_scheduled(&mut self, now: Instant) {
        let Some(sched) = &mut self.rate else {
            return;
        };
        self.rate_blocked = false;
        while sched.is_due(now) && sched.next_due() < self.end {
            let mut chosen = None;
            for _ in 0..self.open_keys.len() {
                self.rr = (self.rr + 1) % self.open_keys.len();
                let key = self.open_keys[self.rr];
                if let Some(c) = self.conns.get(key) {
                    if c.state == State::Open && c.echo.messages_in_flight() < RATE_MAX_INFLIGHT {
                        chosen = Some(key);
                        break;
                    }
                }
            }
            let Some(key) = chosen else {
                // Keep the timetable: these sends go out late, with their intended times.
                self.rate_blocked = true;
                break;
            };
            let intended = sched.next_due();
            if now.saturating_duration_since(intended) > Duration::from_millis(1) {
                self.stats.late_sends += 1;
            }
            let conn = &mut self.conns[key];
            let size = self.opts.size.pick(conn.sizes.next_u64());
            conn.echo.queue(size, intended);
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(key);
            }
            sched.advance();
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            if let Some(c) = self.conns.get_mut(key) {
                c.dirty = false;
            }
            self.flush(key, now);
        }
        self.dirty = dirty;
    }

    /// Marks a connection dead; it is removed (and closed) in `reap`.
    fn kill(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match conn.state {
            State::Dead => return,
            State::Connecting { .. } => self.connecting -= 1,
            State::Open if matches!(self.admission, Admission::Scheduled) => {
                if let Some(i) = self.open_keys.iter().position(|&k| k == key) {
                    self.open_keys.swap_remove(i);
                }
            }
            _ => {}
        }
        conn.state = State::Dead;
        self.doomed.push(key);
    }

    /// Removes the connections killed during the batch. Dropping the socket closes it,
    /// which also removes it from the epoll set: no `deregister` syscall needed.
    fn reap(&mut self) {
        for key in self.doomed.drain(..) {
            self.conns.try_remove(key);
        }
    }

    /// End of the drain: whatever is still unechoed is lost.
    fn finish(&mut self) {
        for (_, conn) in self.conns.iter() {
            if conn.state == State::Open {
                let outstanding = conn.echo.outstanding();
                if outstanding > 0 {
                    log::warn!("{outstanding} bytes still not echoed after the drain");
                }
                self.stats.lost(
                    outstanding,
                    "still not echoed when the drain ended: the server stopped answering",
                );
            }
        }
        self.conns.clear();
    }
}

enum ConnectOutcome {
    Pending,
    Connected,
    Failed(io::Error),
}

/// mio's non-blocking connect contract: after an event, a pending socket error means the
/// connect failed; `peer_addr()` succeeding means it is established; `NotConnected` means
/// the event was spurious and the connect is still in progress.
fn connect_outcome(sock: &TcpStream) -> ConnectOutcome {
    match sock.take_error() {
        Ok(Some(e)) | Err(e) => return ConnectOutcome::Failed(e),
        Ok(None) => {}
    }
    match sock.peer_addr() {
        Ok(_) => ConnectOutcome::Connected,
        Err(e) if e.kind() == ErrorKind::NotConnected => ConnectOutcome::Pending,
        Err(e) => ConnectOutcome::Failed(e),
    }
}
