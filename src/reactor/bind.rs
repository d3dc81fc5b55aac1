//! Binding: a reactor's sockets registered with a new poller, each with its token and the
//! service it serves, and the start-up lines (what is served, what is exposed). The
//! [`Server`](crate::Server) is assembled from these and the policies in `reactor/mod.rs`.

use std::net::SocketAddr;
use std::time::Instant;

use mio::net::{TcpListener, UdpSocket};
use mio::{Interest, Poll, Waker};

use super::listeners::{TcpSide, UdpSide};
use super::tokens::{Source, WAKER};
#[cfg(feature = "metrics")]
use super::tokens::{METRICS_FIRST_SCRAPE, METRICS_LISTENER};
use crate::config::Config;
use crate::descriptors::{self, reserve};
use crate::error::ServerError;
#[cfg(feature = "metrics")]
use crate::error::METRICS;
use crate::listen::{Endpoint, Protocol};
#[cfg(feature = "metrics")]
use crate::metrics::MetricsEndpoint;
use crate::net::{self, BoundListener};
use crate::service::reply_limit::ReplyLimit;
use crate::service::ServiceKind;
use crate::stats::Stats;
use crate::udp::answers::DatagramAnswers;
use crate::udp::UdpEndpoint;

/// One reactor's sockets, registered with its new poller, and what they serve: everything a
/// [`Server`](crate::Server) is made of that comes from binding, not from a policy.
pub(super) struct Sockets {
    pub(super) poll: Poll,
    pub(super) waker: Waker,
    pub(super) listeners: Vec<TcpSide>,
    pub(super) udp: Vec<UdpSide>,
    pub(super) services: Vec<ServiceKind>,
    pub(super) endpoints: Vec<Endpoint>,
    pub(super) tcp_addr: Option<SocketAddr>,
    pub(super) udp_addr: Option<SocketAddr>,
    /// The counters, with a line per service.
    pub(super) stats: Stats,
    #[cfg(feature = "metrics")]
    pub(super) metrics: Option<MetricsEndpoint>,
}

/// Registers the sockets `bound` already with a new poller, each with its token and service
/// (`started`: the clock of the UDP reply limits). `config` is valid. `announce` says whether
/// to warn about exposed listeners (once per group, not per reactor).
pub(super) fn register(
    config: &Config,
    bound: Vec<BoundListener>,
    announce: Announce,
    started: Instant,
) -> Result<Sockets, ServerError> {
    let poll = Poll::new().map_err(ServerError::Poll)?;
    let registry = poll.registry();
    let waker = Waker::new(registry, WAKER).map_err(ServerError::Poll)?;

    let mut stats = Stats::default();
    let mut services: Vec<ServiceKind> = Vec::new();
    let mut listeners = Vec::new();
    let mut udp = Vec::new();
    let mut endpoints = Vec::new();
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
            // The endpoint's guards come first; then, beyond loopback, the rate limit of a
            // service that can amplify (see `service::reply_limit`). Echo needs neither
            // `answers` nor a limit: its reply is its request, sent from where it arrived.
            let answers = (!kind.is_echo()).then(|| {
                let limited = exposed && kind.may_amplify();
                let limit = limited.then(|| ReplyLimit::new(config.udp_reply_rate, started));
                DatagramAnswers::new(kind.clone(), limit)
            });
            let mut socket = UdpEndpoint::new(
                UdpSocket::from_std(socket),
                answers,
                config.udp_queue_datagrams,
                config.udp_loop_guard,
            )
            .map_err(ServerError::Poll)?;
            socket
                .register(registry, Source::udp_token(udp.len()))
                .map_err(ServerError::Poll)?;
            bound_at = socket.local_addr();
            endpoints.push(endpoint(&kind, Protocol::Udp, bound_at));
            udp.push(UdpSide { socket, service });
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
            MetricsEndpoint::bind(addr, registry, METRICS_LISTENER, METRICS_FIRST_SCRAPE).map_err(
                |source| ServerError::Bind {
                    protocol: METRICS,
                    addr,
                    source,
                },
            )
        })
        .transpose()?;
    Ok(Sockets {
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
    })
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
