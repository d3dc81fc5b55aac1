//! Server configuration: plain data with defaults and validation.
//!
//! `Config` is what an embedder fills in (no clap needed); the `echoloop` binary's CLI only
//! maps flags onto it (`src/bin/echoloop/cli.rs`). Every knob has a documented default chosen
//! for the three uses of echoloop: a benchmark target (generous limits, no idle timeout), a
//! load-test peer, and a safe default on a developer's machine (loopback only).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::listen::{Listener, Protocol};
use crate::service::ServiceKind;

/// The default port for both TCP and UDP. Echo's well-known port is 7 (RFC 862), which needs
/// privileges; 7007 keeps the 7 and is unprivileged.
pub const DEFAULT_PORT: u16 = 7007;

/// Most listeners one server takes (each may bind TCP and UDP).
pub const MAX_LISTENERS: usize = 4096;

/// Everything the server needs to know before it binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1`: a public echo service (UDP especially) is a
    /// reflection amplifier, so exposure is an explicit choice.
    pub bind: IpAddr,
    /// Port shared by TCP and UDP. `0` picks a free port (the same one for both).
    pub port: u16,
    /// Serve TCP echo.
    pub tcp: bool,
    /// Serve UDP echo.
    pub udp: bool,
    /// Listen backlog handed to `listen(2)` (the kernel caps it at `net.core.somaxconn`).
    /// Default 4096: a benchmark target sees thousands of connects in a burst, and a full
    /// backlog drops SYNs that clients retry only after a second.
    pub backlog: u32,
    /// Per-connection high-water mark of pending output, in bytes, for a peer that has stopped
    /// reading (its output made no progress for 200 ms): at this mark the server stops reading
    /// the connection (backpressure). Default 32 MiB, above the tutorials' 10 MB deadlock
    /// client; allocated lazily, so idle connections cost nothing. While the peer reads,
    /// `max_pending_reading` applies instead.
    pub max_pending: usize,
    /// Per-connection high-water mark of pending output while the peer reads what it is sent
    /// (its output makes write progress): a few socket buffers, so a client that writes faster
    /// than it reads is held back by backpressure, as through a plain copy loop, instead of
    /// being queued for. Default 256 KiB ([`DEFAULT_MAX_PENDING_READING`]); `max_pending` if
    /// that is lower. Setting it to `max_pending` gives every peer the full allowance.
    pub max_pending_reading: usize,
    /// Reading resumes once pending output falls to this many bytes. Default: a quarter of
    /// `max_pending`.
    pub low_water: usize,
    /// Bytes read from one connection per wakeup before it yields to the others. Work cut
    /// short by this budget resumes next turn from the ready queue.
    pub read_budget: usize,
    /// Bytes written to one connection per wakeup (Redis uses a 64 KiB quantum; we allow a
    /// little more because echo writes what it has just read).
    pub write_budget: usize,
    /// Connections accepted per wakeup before other sources get a turn.
    pub accept_budget: usize,
    /// Maximum UDP replies waiting for the socket to become writable; beyond, replies are
    /// dropped and counted.
    pub udp_queue_datagrams: usize,
    /// How long a graceful shutdown waits for pending output to drain.
    pub drain_timeout: Duration,
    /// Log the counters this often; `None` turns periodic stats off.
    pub stats_interval: Option<Duration>,
    /// Most connections served at once; beyond it a new connection is accepted and closed at
    /// once (its client sees EOF) and counted. Default: the open-file limit minus
    /// [`RESERVED_FDS`], as Redis sizes `maxclients` (see [`default_max_connections`]); zero-copy
    /// pipes do not reduce it. In a [`ServerGroup`](crate::ServerGroup), the total over all
    /// its reactors.
    pub max_connections: usize,
    /// Most connections echoing with zero copy at once: a connection that reads bulk data
    /// gets a kernel pipe and `splice(2)` moves its bytes, which never enter user space (see
    /// `zero_copy`). Each costs two descriptors, taken only while connections leave them
    /// spare, and given back when its connection goes idle or descriptors run short. `0` turns
    /// zero copy off. Default 256; Linux only (elsewhere every connection copies).
    pub zero_copy_conns: usize,
    /// Most connections from one source IP; beyond it, accepted and closed. `None`: no limit.
    /// In a [`ServerGroup`](crate::ServerGroup), counted over all its reactors.
    pub max_per_source: Option<usize>,
    /// Bound on pending output summed over all connections: a connection grows only into what
    /// is left of it, and over it (when clients stop reading) connections holding more than a
    /// fair share (budget / connections with pending output) pause until they are under a
    /// quarter of it; none is dropped for it. Each connection may always hold 64 KiB, so the
    /// total is at most the budget plus 64 KiB per connection. Default 1 GiB. In a
    /// [`ServerGroup`](crate::ServerGroup), split evenly between its reactors (each polices
    /// its share without asking the others).
    pub memory_budget: usize,
    /// Close a connection that moved no byte either way for this long. Default off: benchmark
    /// targets hold idle connections on purpose.
    pub idle_timeout: Option<Duration>,
    /// Close a connection whose pending output made no write progress for this long (a client
    /// that writes but never reads). Default 60 s.
    pub stall_timeout: Option<Duration>,
    /// Serve Prometheus metrics at `http://ADDR:PORT/metrics` from the event loop itself.
    /// Default off. Port 0 picks a free one. Needs the `metrics` feature (on by default).
    pub metrics: Option<SocketAddr>,
    /// More listeners, beside the echo listener that `bind`, `port`, `tcp` and `udp`
    /// describe (turn both of those off to serve only these). Each carries its service.
    pub listeners: Vec<Listener>,
    /// Replies per second per source address for a UDP service that can amplify (all but
    /// echo and discard) on a listener bound beyond loopback; bursts of twice that, and 100
    /// times that from all sources together. See `service::reply_limit`. Default 10.
    pub udp_reply_rate: u32,
    /// Which UDP peers the echo-loop guard watches (the privileged-port and own-address
    /// guards always apply). Default [`LoopGuard::Auto`]: peers beyond loopback only.
    pub udp_loop_guard: LoopGuard,
}

/// Which UDP peers the echo-loop guard watches: a peer that sends back, many times in a row,
/// exactly the datagram it was just sent is refused one datagram, which ends a loop between
/// two echo servers started by one forged datagram. On the wire a client that repeats the
/// same payload looks the same, and loses one datagram in 1,025 while it does so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoopGuard {
    /// Peers beyond loopback. A loopback source (127.0.0.0/8, `::1`) cannot come from the
    /// wire (the kernel drops such packets from other hosts), and forging one takes
    /// privileges on this machine, so a loopback peer is always answered.
    #[default]
    Auto,
    /// Every peer, loopback included.
    On,
    /// No peer: a loop between this server and another echo server (both exposed, one
    /// forged datagram) then lasts until one of them stops or the network drops it.
    Off,
}

impl LoopGuard {
    /// Whether datagrams from `peer` go through the loop guard.
    pub fn watches(self, peer: IpAddr) -> bool {
        match self {
            LoopGuard::Auto => !peer.to_canonical().is_loopback(),
            LoopGuard::On => true,
            LoopGuard::Off => false,
        }
    }
}

pub use crate::descriptors::RESERVED_FDS;

/// Default for [`Config::max_pending_reading`]: four 64 KiB blocks, about what loopback's
/// socket buffers hold in flight beside it, and one full read of the scratch buffer.
pub const DEFAULT_MAX_PENDING_READING: usize = 256 * 1024;

/// Default for [`Config::zero_copy_conns`].
pub const DEFAULT_ZERO_COPY_CONNS: usize = 256;

/// `max_connections` derived from the process's soft open-file limit (1024 if it cannot be
/// read) for `reactors` reactors: the limit minus [`reserve`](crate::descriptors::reserve),
/// whatever the zero-copy setting (pipes only use descriptors that connections leave spare).
pub fn default_max_connections(reactors: usize) -> usize {
    crate::descriptors::max_connections_for(crate::descriptors::soft_limit(), reactors)
}

impl Default for Config {
    fn default() -> Self {
        let max_pending = 32 * 1024 * 1024;
        Config {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: DEFAULT_PORT,
            tcp: true,
            udp: true,
            backlog: 4096,
            max_pending,
            max_pending_reading: DEFAULT_MAX_PENDING_READING,
            low_water: max_pending / 4,
            read_budget: 256 * 1024,
            write_budget: 256 * 1024,
            accept_budget: 256,
            udp_queue_datagrams: 1024,
            drain_timeout: Duration::from_secs(5),
            stats_interval: None,
            max_connections: default_max_connections(1),
            zero_copy_conns: DEFAULT_ZERO_COPY_CONNS,
            max_per_source: None,
            memory_budget: 1 << 30,
            idle_timeout: None,
            stall_timeout: Some(Duration::from_secs(60)),
            metrics: None,
            listeners: Vec::new(),
            udp_reply_rate: 10,
            udp_loop_guard: LoopGuard::Auto,
        }
    }
}

/// Why a `Config` was refused: which values do not make sense (together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// Both `tcp` and `udp` are off.
    NothingToServe,
    /// More than [`MAX_LISTENERS`] listeners.
    TooManyListeners,
    /// `backlog` is 0.
    ZeroBacklog,
    /// `max_pending` (or `max_pending_reading`) is below [`MIN_MAX_PENDING`].
    MaxPendingTooSmall,
    /// `low_water` is not below `max_pending`.
    LowWaterNotBelowMaxPending,
    /// A per-wakeup budget (`read_budget`, `write_budget`, `accept_budget`) is 0.
    ZeroBudget,
    /// `stats_interval` is zero (use `None` to turn periodic stats off).
    ZeroStatsInterval,
    /// `max_connections` or `max_per_source` is 0.
    ZeroConnectionLimit,
    /// `memory_budget` is below [`MIN_MEMORY_BUDGET`].
    MemoryBudgetTooSmall,
    /// `idle_timeout` or `stall_timeout` is zero (use `None` to turn it off).
    ZeroTimeout,
    /// `metrics` is set, but the library was built without its `metrics` feature.
    MetricsNotBuilt,
}

/// The smallest `max_pending`: one read's worth of echo.
pub const MIN_MAX_PENDING: usize = 64 * 1024;

/// The smallest `memory_budget`.
pub const MIN_MEMORY_BUDGET: usize = 1 << 20;

/// One lowercase line, naming the `Config` field (the binary says which flag sets it).
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigError::TooManyListeners => "more than 4096 listeners",
            ConfigError::NothingToServe => {
                "nothing to serve: tcp and udp are both off and no other listener is set"
            }
            ConfigError::ZeroBacklog => "backlog must be at least 1",
            ConfigError::MaxPendingTooSmall => {
                "max_pending must be at least 64 KiB (one read's worth of echo)"
            }
            ConfigError::LowWaterNotBelowMaxPending => "low_water must be below max_pending",
            ConfigError::ZeroBudget => {
                "per-wakeup budgets (read_budget, write_budget, accept_budget) must be at least 1"
            }
            ConfigError::ZeroStatsInterval => {
                "stats_interval must be longer than zero (None turns periodic stats off)"
            }
            ConfigError::ZeroConnectionLimit => {
                "connection limits (max_connections, max_per_source) must be at least 1"
            }
            ConfigError::MemoryBudgetTooSmall => "memory_budget must be at least 1 MiB",
            ConfigError::ZeroTimeout => {
                "idle_timeout and stall_timeout must be longer than zero (None turns them off)"
            }
            ConfigError::MetricsNotBuilt => {
                "metrics were asked for, but echoloop was built without its `metrics` feature"
            }
        })
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Checks that the values make sense together. `Server::bind` calls this first.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let checks = [
            (self.all_listeners().is_empty(), ConfigError::NothingToServe),
            (
                self.all_listeners().len() > MAX_LISTENERS,
                ConfigError::TooManyListeners,
            ),
            (self.backlog == 0, ConfigError::ZeroBacklog),
            (
                self.max_pending.min(self.max_pending_reading) < MIN_MAX_PENDING,
                ConfigError::MaxPendingTooSmall,
            ),
            (
                self.low_water >= self.max_pending,
                ConfigError::LowWaterNotBelowMaxPending,
            ),
            (
                self.read_budget == 0 || self.write_budget == 0 || self.accept_budget == 0,
                ConfigError::ZeroBudget,
            ),
            (
                self.stats_interval == Some(Duration::ZERO),
                ConfigError::ZeroStatsInterval,
            ),
            (
                self.max_connections == 0 || self.max_per_source == Some(0),
                ConfigError::ZeroConnectionLimit,
            ),
            (
                self.memory_budget < MIN_MEMORY_BUDGET,
                ConfigError::MemoryBudgetTooSmall,
            ),
            (
                self.idle_timeout == Some(Duration::ZERO)
                    || self.stall_timeout == Some(Duration::ZERO),
                ConfigError::ZeroTimeout,
            ),
            (
                self.metrics.is_some() && !cfg!(feature = "metrics"),
                ConfigError::MetricsNotBuilt,
            ),
        ];
        match checks.into_iter().find(|(failed, _)| *failed) {
            Some((_, error)) => Err(error),
            None => Ok(()),
        }
    }

    /// True when a listener reaches beyond this machine.
    pub fn is_exposed(&self) -> bool {
        self.all_listeners()
            .iter()
            .any(|listener| !listener.addr.ip().is_loopback())
    }

    /// Every listener to bind: the echo listener on `bind:port` (unless TCP and UDP are both
    /// off), then `listeners`.
    pub fn all_listeners(&self) -> Vec<Listener> {
        let echo = Protocol::from_flags(self.tcp, self.udp).map(|protocol| Listener {
            service: ServiceKind::Echo,
            protocol,
            addr: std::net::SocketAddr::new(self.bind, self.port),
        });
        echo.into_iter()
            .chain(self.listeners.iter().cloned())
            .collect()
    }

    /// True when the metrics endpoint reaches beyond this machine.
    pub fn metrics_exposed(&self) -> bool {
        self.metrics.is_some_and(|addr| !addr.ip().is_loopback())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_loopback_and_above_the_deadlock_seed() {
        let config = Config::default();
        assert_eq!(config.validate(), Ok(()));
        assert!(!config.is_exposed());
        assert!(config.max_pending >= 16 * 1024 * 1024);
        assert_eq!(
            config.idle_timeout, None,
            "benchmark targets hold idle connections"
        );
        assert_eq!(config.stall_timeout, Some(Duration::from_secs(60)));
    }

    #[test]
    fn a_reading_peers_bound_below_one_read_is_refused() {
        let config = Config {
            max_pending_reading: MIN_MAX_PENDING - 1,
            ..Config::default()
        };
        assert_eq!(config.validate(), Err(ConfigError::MaxPendingTooSmall));
        let config = Config {
            max_pending_reading: MIN_MAX_PENDING,
            ..Config::default()
        };
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn max_connections_follows_the_open_file_limit_not_zero_copy() {
        let limit = crate::descriptors::soft_limit() as usize;
        assert_eq!(default_max_connections(1), limit - RESERVED_FDS);
        assert_eq!(
            Config::default().max_connections,
            limit - RESERVED_FDS,
            "zero-copy pipes use spare descriptors, not connection capacity"
        );
    }

    #[test]
    fn rejects_inconsistent_values() {
        let off = Config {
            tcp: false,
            udp: false,
            ..Config::default()
        };
        assert_eq!(off.validate(), Err(ConfigError::NothingToServe));
        let only_time = Config {
            tcp: false,
            udp: false,
            listeners: vec![Listener {
                service: ServiceKind::Time,
                protocol: Protocol::Udp,
                addr: "127.0.0.1:0".parse().unwrap(),
            }],
            ..Config::default()
        };
        assert_eq!(only_time.validate(), Ok(()));
        assert_eq!(only_time.all_listeners(), only_time.listeners);
        let water = Config {
            low_water: Config::default().max_pending,
            ..Config::default()
        };
        assert_eq!(
            water.validate(),
            Err(ConfigError::LowWaterNotBelowMaxPending)
        );
        let backlog = Config {
            backlog: 0,
            ..Config::default()
        };
        assert_eq!(backlog.validate(), Err(ConfigError::ZeroBacklog));
        assert_eq!(
            ConfigError::ZeroBacklog.to_string(),
            "backlog must be at least 1"
        );
    }

    #[test]
    fn any_non_loopback_bind_is_exposed() {
        let public = Config {
            bind: "0.0.0.0".parse().unwrap(),
            ..Config::default()
        };
        assert!(public.is_exposed());
        let v6 = Config {
            bind: "::1".parse().unwrap(),
            ..Config::default()
        };
        assert!(!v6.is_exposed());
        let mut public_time = Config::default();
        public_time.listeners.push(Listener {
            service: ServiceKind::Time,
            protocol: Protocol::Both,
            addr: "[::]:37".parse().unwrap(),
        });
        assert!(public_time.is_exposed());
    }

    #[test]
    fn the_loop_guard_watches_peers_beyond_loopback_unless_told() {
        let peers = [
            "127.0.0.1",
            "127.9.8.7",
            "::1",
            "::ffff:127.0.0.1",
            "10.0.0.1",
            "2001:db8::1",
        ];
        let watched = |guard: LoopGuard| -> Vec<bool> {
            peers
                .iter()
                .map(|p| guard.watches(p.parse().unwrap()))
                .collect()
        };
        assert_eq!(
            watched(LoopGuard::Auto),
            [false, false, false, false, true, true]
        );
        assert_eq!(watched(LoopGuard::On), [true; 6]);
        assert_eq!(watched(LoopGuard::Off), [false; 6]);
    }
}
