//! Admission: deciding which accepted connections to keep, and when accepting pauses. (The
//! accept loop itself, `Server::accept_batch`, is glue in `reactor/mod.rs`.)
//!
//! Accepts run in batches of `Config::accept_budget`, so a connect storm cannot starve the
//! connections already open. A connection over `max_connections` or `max_per_source` is
//! accepted and closed at once, as Redis and memcached do, so its client sees a prompt EOF
//! instead of hanging in the backlog. Running out of descriptors (EMFILE, ENFILE) pauses
//! accepting for [`ACCEPT_RETRY`] or until a connection closes, instead of spinning (level-
//! triggered) or stalling (edge-triggered: the freed descriptor brings no new event).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use super::shared::SharedLimits;
use crate::config::Config;
use crate::stats::Stats;

/// How long accepting pauses after the process ran out of descriptors (nginx uses 500 ms).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// At most one "out of descriptors" warning per this period.
const WARNING_PERIOD: Duration = Duration::from_secs(10);

/// The admission policy and its state.
#[derive(Debug)]
pub(super) struct Admission {
    /// Connections accepted per wakeup.
    pub(super) budget: usize,
    /// `max_connections` and `max_per_source`, counted across every reactor of the process.
    shared: Arc<SharedLimits>,
    last_fd_warning: Option<Instant>,
    /// The id of the last connection accepted.
    last_id: u32,
    /// Peer addresses by slab key, kept only when `max_per_source` needs them (to count the
    /// source down at close) or debug logging shows them: a slot carries none (memory per
    /// idle connection).
    peers: HashMap<usize, SocketAddr>,
}

impl Admission {
    /// The policy `config` describes, with nothing accepted yet; the limits are counted in
    /// `shared`.
    pub(super) fn new(config: &Config, shared: Arc<SharedLimits>) -> Admission {
        Admission {
            budget: config.accept_budget,
            shared,
            last_fd_warning: None,
            last_id: 0,
            peers: HashMap::new(),
        }
    }

    /// Decides whether to keep a connection from `peer`, counting it against the limits if
    /// so, and the refusal if not.
    pub(super) fn admit(&mut self, peer: SocketAddr, stats: &mut Stats) -> bool {
        if !self.shared.try_open() {
            stats.record_rejected(true);
            log::debug!("rejected {peer}: max connections reached");
            return false;
        }
        if !self.shared.try_source(peer.ip()) {
            self.shared.close();
            stats.record_rejected(false);
            log::debug!(
                "rejected {peer}: {} connections from its address already",
                self.shared.max_per_source().unwrap_or(0)
            );
            return false;
        }
        true
    }

    /// Keeps `peer` aside for the connection in slab entry `key` if anything will ask.
    pub(super) fn remember(&mut self, key: usize, peer: SocketAddr) {
        if self.shared.limits_sources() || log::log_enabled!(log::Level::Debug) {
            self.peers.insert(key, peer);
        }
    }

    /// The peer of the connection in slab entry `key`, if kept, for a log line.
    pub(super) fn peer(&self, key: usize) -> Option<SocketAddr> {
        self.peers.get(&key).copied()
    }

    /// The connection in slab entry `key`, admitted from `peer`, is gone: its place counts
    /// down, and its source.
    pub(super) fn forget(&mut self, key: usize) {
        let peer = self.peers.remove(&key);
        self.shared.close();
        if let Some(peer) = peer.filter(|_| self.shared.limits_sources()) {
            self.shared.forget_source(peer.ip());
        }
    }

    /// An admitted connection from `peer` never got registered.
    pub(super) fn refund(&mut self, peer: SocketAddr) {
        self.shared.close();
        if self.shared.limits_sources() {
            self.shared.forget_source(peer.ip());
        }
    }

    /// A unique id for the next connection.
    pub(super) fn next_id(&mut self) -> u32 {
        self.last_id = self.last_id.wrapping_add(1);
        self.last_id
    }

    /// Out of descriptors at `now`: counts it, warns (at most once per [`WARNING_PERIOD`]) and
    /// returns when to try again: after [`ACCEPT_RETRY`] (or when a connection closes).
    pub(super) fn pause(
        &mut self,
        error: &io::Error,
        now: Instant,
        stats: &mut Stats,
    ) -> Option<Instant> {
        stats.accept_errors += 1;
        stats.accept_fd_exhausted += 1;
        let retry_at = now.checked_add(ACCEPT_RETRY);
        if self
            .last_fd_warning
            .is_some_and(|at| now.duration_since(at) < WARNING_PERIOD)
        {
            return retry_at;
        }
        self.last_fd_warning = Some(now);
        log::warn!(
            "accept: {error}; pausing accepts until a connection closes or {ACCEPT_RETRY:?} pass \
             ({} accept errors so far; raise `ulimit -n` to serve more clients)",
            stats.accept_errors
        );
        retry_at
    }
}

/// Closes a connection admission refused so that its client reads EOF, not a reset, without
/// holding a descriptor: our FIN goes out first (`shutdown(Write)`), then one read takes
/// whatever the client had sent already. Closing with unread input would make the kernel
/// answer with RST and the client would see "connection reset" instead of EOF. Input arriving
/// after the close still draws an RST, but the client has read our FIN by then, and Linux
/// reports EOF before a later reset.
pub(super) fn turn_away(socket: TcpStream, scratch: &mut [u8]) {
    use std::io::Read;
    if socket.shutdown(std::net::Shutdown::Write).is_err() {
        return; // the client is gone already
    }
    let mut socket = socket;
    let _ = socket.read(scratch);
}

/// EMFILE (this process) or ENFILE (the whole system): no descriptor for the new socket.
pub(super) fn is_out_of_descriptors(error: &io::Error) -> bool {
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
