//! Admission: accepting connections, and deciding which ones to keep.
//!
//! Accepts run in batches of `Config::accept_budget`, so a connect storm cannot starve the
//! connections already open. A connection over `max_connections` or `max_per_source` is
//! accepted and closed at once, as Redis and memcached do, so its client sees a prompt EOF
//! instead of hanging in the backlog. Running out of descriptors (EMFILE, ENFILE) pauses
//! accepting for [`ACCEPT_RETRY`] or until a connection closes, instead of spinning (level-
//! triggered) or stalling (edge-triggered: the freed descriptor brings no new event).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::slot::Slot;
use super::Server;
use crate::config::Config;
use crate::connection::Connection;
use crate::stats::Stats;

/// How long accepting pauses after the process ran out of descriptors (nginx uses 500 ms).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// At most one "out of descriptors" warning per this period.
const WARNING_PERIOD: Duration = Duration::from_secs(10);

/// The admission policy and its state.
#[derive(Debug)]
pub(super) struct Admission {
    /// Connections accepted per wakeup.
    budget: usize,
    max_connections: usize,
    max_per_source: Option<usize>,
    /// Open connections per source IP, kept only when `max_per_source` is set.
    per_source: HashMap<IpAddr, usize>,
    /// Accepting is paused for lack of descriptors until then (or until a connection closes).
    retry_at: Option<Instant>,
    last_fd_warning: Option<Instant>,
    /// The id of the last connection accepted.
    last_id: u64,
}

impl Admission {
    /// The policy `config` describes, with nothing accepted yet.
    pub(super) fn new(config: &Config) -> Admission {
        Admission {
            budget: config.accept_budget,
            max_connections: config.max_connections,
            max_per_source: config.max_per_source,
            per_source: HashMap::new(),
            retry_at: None,
            last_fd_warning: None,
            last_id: 0,
        }
    }

    /// Decides whether to keep a connection from `peer` while `open` are open, counting it
    /// against its source if so, and the refusal if not.
    fn admit(&mut self, peer: SocketAddr, open: usize, stats: &mut Stats) -> bool {
        if open >= self.max_connections {
            stats.rejected_max_connections += 1;
            log::debug!("rejected {peer}: max connections reached");
            return false;
        }
        if let Some(max) = self.max_per_source {
            let count = self.per_source.entry(peer.ip()).or_insert(0);
            if *count >= max {
                stats.rejected_per_source += 1;
                log::debug!("rejected {peer}: {max} connections from its address already");
                return false;
            }
            *count += 1;
        }
        true
    }

    /// A connection admitted from `ip` is gone (or never got registered).
    pub(super) fn forget(&mut self, ip: IpAddr) {
        if let Some(count) = self.per_source.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.per_source.remove(&ip);
            }
        }
    }

    /// A unique id for the next connection.
    fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    /// Out of descriptors at `now`: counts it, warns (at most once per [`WARNING_PERIOD`]) and
    /// pauses accepting for [`ACCEPT_RETRY`].
    fn pause(&mut self, error: &io::Error, now: Instant, stats: &mut Stats) {
        stats.accept_errors += 1;
        stats.accept_fd_exhausted += 1;
        self.retry_at = now.checked_add(ACCEPT_RETRY);
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
            stats.accept_errors
        );
    }

    /// When a paused accept is due to be retried, if it is paused.
    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Ends a pause whose time is up at `now`; true if accepting should resume.
    pub(super) fn retry_due(&mut self, now: Instant) -> bool {
        let due = self.retry_at.is_some_and(|at| now >= at);
        if due {
            self.retry_at = None;
        }
        due
    }

    /// A descriptor was freed: ends a pause at once; true if accepting should resume.
    pub(super) fn resume_after_close(&mut self) -> bool {
        self.retry_at.take().is_some()
    }

    /// Shutdown: no more accepting, paused or not.
    pub(super) fn stop(&mut self) {
        self.retry_at = None;
    }
}

impl Server {
    /// Accepts up to the per-wakeup budget. Running out of descriptors pauses accepting for a
    /// moment (and until a connection closes) instead of spinning or ending the server.
    pub(super) fn accept_batch(&mut self, now: Instant) {
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
                    self.admission.pause(&e, now, &mut self.stats);
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

    /// Keeps an accepted socket as a connection (registered, its timer armed), or drops it
    /// at once if admission says no (dropping closes it: the client sees EOF).
    fn admit(&mut self, socket: TcpStream, peer: SocketAddr, service: usize, accepted_at: Instant) {
        if !self
            .admission
            .admit(peer, self.slots.len(), &mut self.stats)
        {
            return;
        }
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
        let mut slot = Slot::new(socket, peer, (service, conn), id, accepted_at);
        // Registered once, for both directions; readiness is tracked in `Connection` after.
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut slot.socket, Token(entry.key()), interest)
        {
            self.stats.accept_errors += 1;
            log::warn!("cannot register connection from {peer}: {e}");
            self.admission.forget(peer.ip());
            return;
        }
        log::debug!("accepted {peer} as #{}", entry.key());
        self.timers.arm(entry.key(), &mut slot);
        entry.insert(slot);
        self.stats.conn_accepted += 1;
        self.stats.conn_active += 1;
        if let Some(service) = self.stats.services.get_mut(service) {
            service.conn_accepted += 1;
        }
    }
}

/// EMFILE (this process) or ENFILE (the whole system): no descriptor for the new socket.
fn is_out_of_descriptors(error: &io::Error) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::io::Errno;
        matches!(
            Errno::from_io_error(error),
            Some(Errno::MFILE | Errno::NFILE)
        )
    }
    // EMFILE is 24 and ENFILE 23 on every Unix; std names neither.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        matches!(error.raw_os_error(), Some(23 | 24))
    }
}
