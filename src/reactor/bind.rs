//! Creating a [`Server`]: validate the config, bind the sockets, register them with a new
//! poller, and set up each policy from the config. Also what an embedder may ask a bound
//! server: its addresses, a shutdown handle, the counters so far.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use mio::net::{TcpListener, UdpSocket};
use mio::{Interest, Poll, Waker};
use slab::Slab;

use super::admission::Admission;
use super::memory::MemoryBudget;
use super::pipes::PipeBudget;
use super::report::ReportHandle;
use super::shared::SharedLimits;
use super::shutdown::{Shutdown, ShutdownHandle};
use super::timers::Timers;
use super::{Queues, Server, LISTENER, SCRATCH_SIZE, UDP, WAKER};
#[cfg(feature = "metrics")]
use super::{METRICS_FIRST_SCRAPE, METRICS_LISTENER};
use crate::config::Config;
use crate::connection::Limits;
use crate::descriptors::{self, reserve};
use crate::error::ServerError;
#[cfg(feature = "metrics")]
use crate::error::METRICS;
use crate::group::GroupMember;
#[cfg(feature = "metrics")]
use crate::metrics::MetricsEndpoint;
use crate::net::{self, Bound, Sharing};
use crate::report::Reporter;
use crate::stats::Stats;
use crate::udp::UdpEcho;

impl Server {
    /// Validates `config`, binds its sockets and registers them. Port 0 works: read the real
    /// addresses with [`Server::tcp_addr`] and [`Server::udp_addr`].
    pub fn bind(config: Config) -> Result<Server, ServerError> {
        config.validate()?;
        let bound = net::bind(&config, Sharing::Exclusive)?;
        log_start(&config, 1);
        let shared = Arc::new(SharedLimits::new(&config, descriptors::soft_limit(), 1));
        Server::with_sockets(&config, bound, shared)
    }

    /// A server on sockets bound already, counting its connections and pipes in `shared`
    /// (with the other reactors of a `ServerGroup`, if any). `config` is valid.
    pub(crate) fn with_sockets(
        config: &Config,
        bound: Bound,
        shared: Arc<SharedLimits>,
    ) -> Result<Server, ServerError> {
        let poll = Poll::new().map_err(ServerError::Poll)?;
        let registry = poll.registry();
        let waker = Waker::new(registry, WAKER).map_err(ServerError::Poll)?;

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
            udp.register(registry, UDP).map_err(ServerError::Poll)?;
        }
        #[cfg(feature = "metrics")]
        let metrics = config
            .metrics
            .map(|addr| {
                MetricsEndpoint::bind(addr, registry, METRICS_LISTENER, METRICS_FIRST_SCRAPE)
                    .map_err(|source| ServerError::Bind {
                        protocol: METRICS,
                        addr,
                        source,
                    })
            })
            .transpose()?;
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
            slots: Slab::new(),
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            queues: Queues::default(),
            admission: Admission::new(config, Arc::clone(&shared)),
            memory: MemoryBudget::new(limits, config.memory_budget),
            timers: Timers::new(config),
            pipes: PipeBudget::new(shared),
            shutdown: Shutdown::new(waker, config.drain_timeout),
            tcp_addr,
            udp_addr,
            // Reset when `run` starts; set here so `stats()` on a server never run says
            // something sensible.
            started: Instant::now(),
            stats: Stats::default(),
            reporter: Reporter::default(),
            report_requested: Arc::new(AtomicBool::new(false)),
            #[cfg(feature = "metrics")]
            metrics,
            group: None,
        })
    }

    /// Makes this server one reactor of a group: its reports go to the group's board.
    pub(crate) fn join_group(&mut self, member: GroupMember) {
        self.group = Some(member);
    }

    /// The bound TCP address, unless TCP is off.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The bound UDP address, unless UDP is off.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// A handle that stops this server from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.handle()
    }

    /// The counters so far (an embedder running the loop elsewhere gets them from `run`),
    /// with the gauges (pending bytes, pipes, queued datagrams) read now.
    pub fn stats(&self) -> Stats {
        Stats {
            // Not the turn's `now`: this is also called from outside the loop.
            uptime: self.started.elapsed(),
            pending_bytes: self.memory.pending_total() as u64,
            zero_copy_pipes_open: self.pipes.open() as u64,
            udp_queued_datagrams: self.udp.as_ref().map_or(0, |udp| udp.queued() as u64),
            ..self.stats.clone()
        }
    }

    /// The bound `/metrics` address, when [`Config::metrics`] asked for one.
    #[cfg(feature = "metrics")]
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|endpoint| endpoint.local_addr())
    }

    /// A handle that asks this server, from another thread, to log its counters and rates now
    /// (the binary sends one on SIGUSR1).
    pub fn report_handle(&self) -> ReportHandle {
        ReportHandle::new(&self.report_requested, self.shutdown.waker())
    }
}

/// Says at start how many connections `reactors` reactors will serve and where the
/// descriptors go; warns when the service is exposed beyond this machine, and when the
/// open-file limit cannot back the connection limit (accepts would then fail with EMFILE,
/// which is survived).
pub(crate) fn log_start(config: &Config, reactors: usize) {
    if config.is_exposed() {
        log::warn!(
            "listening on {}: the echo service is exposed beyond this machine \
             (a public UDP echo can be abused as a reflection amplifier)",
            config.bind
        );
    }
    if config.metrics_exposed() {
        log::warn!(
            "metrics on {}: the counters are readable beyond this machine",
            config
                .metrics
                .map_or_else(String::new, |addr| addr.to_string())
        );
    }
    let Some(files) = descriptors::open_file_limit().map(|limit| limit.soft) else {
        log::info!("serving up to {} connections", config.max_connections);
        return;
    };
    let reserved = reserve(reactors);
    let zero_copy = match config.zero_copy_conns {
        0 => "zero copy off".to_string(),
        n => format!("up to {n} zero-copy pipes from spare descriptors"),
    };
    log::info!(
        "serving up to {} connections (open-file limit {files}, {reserved} reserved; {zero_copy})",
        config.max_connections,
    );
    let needed = config.max_connections.saturating_add(reserved);
    if needed as u64 > files {
        log::warn!(
            "max connections {} exceeds what the open-file limit {files} allows ({} with \
             {reserved} reserved); accepts will pause when descriptors run out",
            config.max_connections,
            descriptors::max_connections_for(files, reactors)
        );
    }
}
