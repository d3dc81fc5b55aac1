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
use super::deadlines::Deadlines;
use super::listeners::{TcpSide, UdpSide};
use super::memory::MemoryBudget;
use super::pipes::PipeBudget;
use super::report::ReportHandle;
use super::shared::SharedLimits;
use super::shutdown::{Shutdown, ShutdownHandle};
use super::slot::Timeouts;
use super::{Queues, Server, Source, SCRATCH_SIZE, WAKER};
#[cfg(feature = "metrics")]
use super::{METRICS_FIRST_SCRAPE, METRICS_LISTENER};
use crate::config::Config;
use crate::connection::Limits;
use crate::descriptors::{self, reserve};
use crate::error::ServerError;
#[cfg(feature = "metrics")]
use crate::error::METRICS;
use crate::group::GroupMember;
use crate::listen::{Endpoint, Protocol};
#[cfg(feature = "metrics")]
use crate::metrics::MetricsEndpoint;
use crate::net::{self, BoundListener, Sharing};
use crate::report::Reporter;
use crate::service::datagram::DatagramAnswers;
use crate::service::reply_limit::ReplyLimit;
use crate::service::ServiceKind;
use crate::stats::Stats;
use crate::udp::UdpEcho;

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
        let poll = Poll::new().map_err(ServerError::Poll)?;
        let registry = poll.registry();
        let waker = Waker::new(registry, WAKER).map_err(ServerError::Poll)?;

        let mut stats = Stats::default();
        let mut services: Vec<ServiceKind> = Vec::new();
        let mut listeners = Vec::new();
        let mut udp = Vec::new();
        let mut endpoints = Vec::new();
        let started = Instant::now();
        for net::BoundListener { listener, sockets } in bound {
            let kind = listener.service;
            let service = stats.service_index(kind.name());
            if service == services.len() {
                services.push(kind.clone());
            }
            let exposed = !listener.addr.ip().is_loopback();
            let mut bound_at = listener.addr; // the real port, once a socket says it
            if let Some(socket) = sockets.tcp {
                let mut socket = TcpListener::from_std(socket);
                let token = Source::listener_token(listeners.len());
                registry
                    .register(&mut socket, token, Interest::READABLE)
                    .map_err(ServerError::Poll)?;
                let addr = socket.local_addr().map_err(ServerError::Poll)?;
                bound_at = addr;
                endpoints.push(endpoint(&kind, Protocol::Tcp, addr));
                listeners.push(TcpSide { socket, service });
            }
            if let Some(socket) = sockets.udp {
                let mut socket =
                    UdpEcho::new(UdpSocket::from_std(socket), config.udp_queue_datagrams)
                        .map_err(ServerError::Poll)?;
                socket
                    .register(registry, Source::udp_token(udp.len()))
                    .map_err(ServerError::Poll)?;
                bound_at = socket.local_addr();
                endpoints.push(endpoint(&kind, Protocol::Udp, bound_at));
                // The endpoint's guards come first; then, beyond loopback, the rate limit of
                // a service that can amplify (see `service::reply_limit`).
                let answers = (!kind.is_echo()).then(|| {
                    let limited = exposed && kind.may_amplify();
                    let limit = limited.then(|| ReplyLimit::new(config.udp_reply_rate, started));
                    DatagramAnswers::new(kind.new_session(), limit)
                });
                udp.push(UdpSide {
                    socket,
                    service,
                    answers,
                });
            }
            if exposed && announce == Announce::Yes {
                warn_exposed(&bound_at, &kind, listener.protocol, config.udp_reply_rate);
            }
        }
        let first_echo = |protocol| {
            endpoints
                .iter()
                .find(|e: &&Endpoint| e.service.is_echo() && e.protocol == protocol)
                .map(|e| e.addr)
        };
        let (tcp_addr, udp_addr) = (first_echo(Protocol::Tcp), first_echo(Protocol::Udp));
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
            listeners,
            udp,
            services,
            endpoints,
            slots: Slab::new(),
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            queues: Queues::default(),
            admission: Admission::new(config, Arc::clone(&shared)),
            memory: MemoryBudget::new(limits, config.memory_budget),
            deadlines: Deadlines::default(),
            timeouts: Timeouts::new(config.idle_timeout, config.stall_timeout),
            stats_every: config.stats_interval,
            pipes: PipeBudget::new(shared),
            shutdown: Shutdown::new(waker, config.drain_timeout),
            tcp_addr,
            udp_addr,
            // Reset when `run` starts; set here so `stats()` on a server never run says
            // something sensible.
            started,
            stats,
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

    /// The counters so far (an embedder running the loop elsewhere gets them from `run`),
    /// with the gauges (pending bytes, pipes, queued datagrams) read now.
    pub fn stats(&self) -> Stats {
        Stats {
            // Not the turn's `now`: this is also called from outside the loop.
            uptime: self.started.elapsed(),
            pending_bytes: self.memory.pending_total() as u64,
            zero_copy_pipes_open: self.pipes.open() as u64,
            udp_queued_datagrams: self.udp.iter().map(|udp| udp.socket.queued() as u64).sum(),
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

fn endpoint(service: &ServiceKind, protocol: Protocol, addr: SocketAddr) -> Endpoint {
    Endpoint {
        service: service.clone(),
        protocol,
        addr,
    }
}

/// Warns once per listener bound beyond loopback, saying what protects it.
fn warn_exposed(addr: &SocketAddr, service: &ServiceKind, protocol: Protocol, rate: u32) {
    let udp_note = match (protocol.udp(), service.is_echo(), service.may_amplify()) {
        (false, _, _) => String::new(),
        (true, true, _) => {
            " (a public UDP echo can be abused as a reflection amplifier)".to_string()
        }
        (true, false, true) => {
            format!(" (its UDP replies are limited to {rate}/s per source against reflection)")
        }
        (true, false, false) => String::new(),
    };
    log::warn!(
        "listening on {addr}: {service} ({}) is exposed beyond this machine{udp_note}",
        protocol.name()
    );
}

/// Whether a server says what it binds (the first reactor of a group does, the others not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Announce {
    Yes,
    No,
}

pub(crate) fn log_start(config: &Config, reactors: usize) {
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
