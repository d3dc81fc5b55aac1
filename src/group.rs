//! Many loops, one process: [`ServerGroup`] runs N copies of the same single-threaded reactor,
//! each on its own thread with its own listener and UDP socket on the same address
//! (`SO_REUSEPORT`), as nginx (`reuseport`), Seastar, glommio and monoio do.
//!
//! ```text
//!             +-- thread echoloop-0: Server (Poll, listener, UDP socket, slab) --+
//!  kernel  -->|-- thread echoloop-1: Server (...)                                |--> summed Stats
//!  (reuseport |   ...                                                            |
//!   hash)     +-- thread echoloop-N-1: Server (...) ----------------------------+
//!                 shared: connection, per-source and pipe counts (per accept/close)
//! ```
//!
//! Nothing is shared on the echo path. The kernel spreads connections (and UDP peers) over the
//! reactors by a hash of the peer's address; nothing here balances them. What the reactors
//! share is read or written once per connection or rarely:
//! - the limits (`reactor/shared.rs`): `max_connections`, `max_per_source` and
//!   `zero_copy_conns` are totals over the group, counted in one place, so they hold exactly
//!   however unevenly connections land; `memory_budget` is split evenly (it is checked on every
//!   drive, where a shared count would cost an atomic per echo).
//! - the stats board: at each stats tick (and report request) a reactor posts a copy of its
//!   counters; reactor 0 logs the sum with rates (and each reactor's line at debug level), and
//!   alone serves `/metrics`, from the board (reactors post every second while it is on). The
//!   summary is the sum of the reactors' final counters.
//! - one [`ShutdownHandle`] wakes them all; each drains for the same `drain_timeout`.
//!
//! With one reactor, [`ServerGroup::run`] runs it on the calling thread: exactly
//! [`Server::run`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::config::Config;
use crate::descriptors;
use crate::error::ServerError;
use crate::net::{self, Sharing};
use crate::reactor::{
    log_start, Announce, Board, ReportHandle, Server, SharedLimits, ShutdownHandle, StatsHandle,
};
use crate::stats::Stats;

/// N reactors serving one address. Create with [`ServerGroup::bind`], run with
/// [`ServerGroup::run`], stop with [`ServerGroup::shutdown_handle`].
#[derive(Debug)]
pub struct ServerGroup {
    servers: Vec<Server>,
    pin: bool,
}

impl ServerGroup {
    /// Validates `config` and binds `reactors` reactors (at least 1) to its address, with
    /// `SO_REUSEPORT` when there are several. Port 0 works: the first reactor binds it and
    /// the others join the port it got. `config`'s limits are totals for the group (see the
    /// module doc for how each is shared).
    pub fn bind(config: Config, reactors: usize) -> Result<ServerGroup, ServerError> {
        config.validate()?;
        let reactors = reactors.max(1);
        let sharing = match reactors {
            1 => Sharing::Exclusive,
            _ => Sharing::ReusePort,
        };
        let files = descriptors::soft_limit();
        // Reactors that would keep every descriptor for themselves could not even bind (the
        // binds would fail one by one with EMFILE). A single reactor under a tiny limit still
        // starts: it serves what it can and pauses accepting when descriptors run out.
        if reactors > 1 && descriptors::reserve(reactors) as u64 >= files {
            return Err(ServerError::TooManyReactors {
                reactors,
                open_file_limit: files,
            });
        }
        let shared = Arc::new(SharedLimits::new(&config, files, reactors));
        // Each reactor polices an even share of the memory budget on its own.
        let each = Config {
            memory_budget: config.memory_budget / reactors,
            ..config.clone()
        };
        let board = Arc::new(StatsBoard::new(reactors));
        let mut servers = Vec::with_capacity(reactors);
        if sharing == Sharing::ReusePort {
            net::ensure_unshared(&each)?;
        }
        let first = net::bind_all(&each, sharing)?;
        // The others join the ports the first got (port 0 included); reactor 0 alone serves
        // `/metrics`, with every reactor's counters.
        let others = Config {
            metrics: None,
            ..net::same_ports(&each, &first)
        };
        log_start(&config, reactors);
        servers.push(Server::with_sockets(
            &each,
            first,
            Arc::clone(&shared),
            Announce::Yes,
        )?);
        for _ in 1..reactors {
            let bound = net::bind_all(&others, sharing)?;
            servers.push(Server::with_sockets(
                &others,
                bound,
                Arc::clone(&shared),
                Announce::No,
            )?);
        }
        if reactors > 1 {
            // With a `/metrics` page, reactors post their counters every second for it.
            let post_every = config.metrics.map(|_| Duration::from_secs(1));
            for (index, server) in servers.iter_mut().enumerate() {
                server.join_group(Box::new(GroupMember {
                    board: Arc::clone(&board),
                    index,
                    post_every,
                }));
            }
        }
        Ok(ServerGroup {
            servers,
            pin: false,
        })
    }

    /// Pins reactor i to the i-th core this process may run on (wrapping around), so the
    /// scheduler never moves a reactor, and with it its caches, between cores.
    pub fn pin_to_cores(mut self, pin: bool) -> ServerGroup {
        self.pin = pin;
        self
    }

    /// How many reactors there are.
    pub fn reactors(&self) -> usize {
        self.servers.len()
    }

    /// Every bound socket with the service it serves (the same for every reactor).
    pub fn endpoints(&self) -> Vec<crate::listen::Endpoint> {
        self.servers
            .first()
            .map_or_else(Vec::new, Server::endpoints)
    }

    /// The bound TCP address (the same for every reactor), unless TCP is off.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.servers.first().and_then(Server::tcp_addr)
    }

    /// The bound UDP address (the same for every reactor), unless UDP is off.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.servers.first().and_then(Server::udp_addr)
    }

    /// One handle that stops every reactor from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle::join(self.servers.iter().map(Server::shutdown_handle))
    }

    /// One handle that asks every reactor for a report; reactor 0 logs the sum.
    pub fn report_handle(&self) -> ReportHandle {
        ReportHandle::join(self.servers.iter().map(Server::report_handle))
    }

    /// A handle that reads the counters of every reactor, summed, while they run.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle::join(self.servers.iter().map(Server::stats_handle))
    }

    /// The bound `/metrics` address (served by reactor 0), when `Config::metrics` asked for
    /// one.
    #[cfg(feature = "metrics")]
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.servers.first().and_then(Server::metrics_addr)
    }

    /// Runs every reactor, each on its own thread (one alone runs on the calling thread), and
    /// returns their final counters summed once all have stopped. If one fails, the others
    /// are shut down and the first failure is returned.
    pub fn run(self) -> Result<Stats, ServerError> {
        let each = self.run_each()?;
        let mut total = Stats::default();
        for (index, stats) in each.iter().enumerate() {
            if each.len() > 1 {
                log::debug!("reactor {index}: summary {stats}");
            }
            total.merge(stats);
        }
        Ok(total)
    }

    /// [`ServerGroup::run`], returning each reactor's final counters, in reactor order.
    pub fn run_each(self) -> Result<Vec<Stats>, ServerError> {
        let cores = if self.pin {
            allowed_cores()
        } else {
            Vec::new()
        };
        let pin = move |index: usize| {
            if let Some(&core) = cores.get(index % cores.len().max(1)) {
                pin_current_thread(core);
            }
        };
        let mut servers = self.servers;
        if servers.len() == 1 {
            pin(0);
            return Ok(vec![servers.remove(0).run()?]);
        }
        let stop = ShutdownHandle::join(servers.iter().map(Server::shutdown_handle));
        let mut threads = Vec::with_capacity(servers.len());
        for (index, server) in servers.into_iter().enumerate() {
            let pin = pin.clone();
            let stop_all = stop.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("echoloop-{index}"))
                .spawn(move || {
                    pin(index);
                    let result = server.run();
                    if result.is_err() {
                        stop_all.shutdown(); // one reactor failed: the group stops
                    }
                    result
                });
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    stop.shutdown();
                    threads.into_iter().for_each(|t| drop(t.join()));
                    return Err(ServerError::Spawn(e));
                }
            }
        }
        let mut each = Vec::with_capacity(threads.len());
        let mut first_error = None;
        for thread in threads {
            match thread.join() {
                Ok(Ok(stats)) => each.push(stats),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                // A panic is a bug: let it surface as one.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(each),
        }
    }
}

/// The counters each reactor posted last, for the summed stats line.
#[derive(Debug)]
struct StatsBoard {
    posted: Mutex<Vec<Stats>>,
}

impl StatsBoard {
    fn new(reactors: usize) -> StatsBoard {
        StatsBoard {
            posted: Mutex::new(vec![Stats::default(); reactors]),
        }
    }

    fn sum(&self) -> Stats {
        let posted = self.posted.lock().unwrap_or_else(PoisonError::into_inner);
        posted.iter().fold(Stats::default(), |mut total, stats| {
            total.merge(stats);
            total
        })
    }
}

/// A reactor's place in the group: where its counters are posted. The reactor sees it as a
/// [`Board`], and so never depends on the group.
#[derive(Debug)]
struct GroupMember {
    board: Arc<StatsBoard>,
    index: usize,
    /// How often to post unasked (for the `/metrics` page reactor 0 serves); `None`: only at
    /// stats ticks and report requests.
    post_every: Option<Duration>,
}

impl Board for GroupMember {
    /// Posts this reactor's counters (at a stats tick or a report request). Reactor 0 gets the
    /// group's sum back, to log: the others' posts are at most one interval old (their ticks
    /// run on their own clocks, and a report request reaches each in its own turn).
    fn post(&self, stats: Stats) -> Option<Stats> {
        log::debug!("reactor {}: stats {stats}", self.index);
        self.store(stats);
        (self.index == 0).then(|| self.board.sum())
    }

    /// Puts this reactor's counters on the board.
    fn store(&self, stats: Stats) {
        let mut posted = self
            .board
            .posted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = posted.get_mut(self.index) {
            *slot = stats;
        }
    }

    /// Every reactor's counters: `own` (fresh) for this one, the others as last posted.
    #[cfg(feature = "metrics")]
    fn snapshots(&self, own: Stats) -> Vec<Stats> {
        let mut all = self
            .board
            .posted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(slot) = all.get_mut(self.index) {
            *slot = own;
        }
        all
    }

    /// How often to post unasked, if at all (the reactor's `Timer::GroupPost`).
    fn post_every(&self) -> Option<Duration> {
        self.post_every
    }
}

/// The cores this process may run on (its affinity mask), in order.
fn allowed_cores() -> Vec<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::thread::{sched_getaffinity, CpuSet};
        match sched_getaffinity(None) {
            Ok(set) => (0..CpuSet::MAX_CPU)
                .filter(|&cpu| set.is_set(cpu))
                .collect(),
            Err(e) => {
                log::warn!("cannot read this process's cores, not pinning: {e}");
                Vec::new()
            }
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        log::warn!("pinning reactors to cores is supported on Linux only");
        Vec::new()
    }
}

/// Pins the calling thread to `core`; a failure is logged, and the reactor runs unpinned.
fn pin_current_thread(core: usize) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::thread::{sched_setaffinity, CpuSet};
        let mut set = CpuSet::new();
        set.set(core);
        match sched_setaffinity(None, &set) {
            Ok(()) => log::debug!("reactor thread pinned to core {core}"),
            Err(e) => log::warn!("cannot pin a reactor to core {core}: {e}"),
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = core;
    }
}
