//! Creating a [`Server`]: validate the config, bind the sockets, register them with a new
//! poller, and set up each policy from the config. Also what an embedder may ask a bound
//! server: its addresses, a shutdown handle, the counters so far.

use std::net::SocketAddr;
use std::time::Instant;

use mio::net::{TcpListener, UdpSocket};
use mio::{Interest, Poll, Waker};
use slab::Slab;

use super::admission::Admission;
use super::memory::MemoryBudget;
use super::pipes::PipeBudget;
use super::shutdown::{Shutdown, ShutdownHandle};
use super::timers::Timers;
use super::{Queues, Server, LISTENER, SCRATCH_SIZE, UDP, WAKER};
use crate::config::{open_file_limit, Config, RESERVED_FDS};
use crate::connection::Limits;
use crate::error::ServerError;
use crate::net;
use crate::stats::Stats;
use crate::udp::UdpEcho;

impl Server {
    /// Validates `config`, binds its sockets and registers them. Port 0 works: read the real
    /// addresses with [`Server::tcp_addr`] and [`Server::udp_addr`].
    pub fn bind(config: Config) -> Result<Server, ServerError> {
        config.validate()?;
        let bound = net::bind(&config)?;
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
            slots: Slab::new(),
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            queues: Queues::default(),
            admission: Admission::new(&config),
            memory: MemoryBudget::new(limits, config.memory_budget),
            timers: Timers::new(&config),
            pipes: PipeBudget::new(config.zero_copy_conns),
            shutdown: Shutdown::new(waker, config.drain_timeout),
            tcp_addr,
            udp_addr,
            // Reset when `run` starts; set here so `stats()` on a server never run says
            // something sensible.
            started: Instant::now(),
            stats: Stats::default(),
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

    /// Every bound socket with the service it serves (echo only, until listeners are wired).
    pub fn endpoints(&self) -> Vec<crate::listen::Endpoint> {
        let echo = |protocol, addr: Option<SocketAddr>| {
            addr.map(|addr| crate::listen::Endpoint {
                service: crate::service::ServiceKind::Echo,
                protocol,
                addr,
            })
        };
        [
            echo(crate::listen::Protocol::Tcp, self.tcp_addr),
            echo(crate::listen::Protocol::Udp, self.udp_addr),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// A handle that stops this server from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.handle()
    }

    /// The counters so far (an embedder running the loop elsewhere gets them from `run`).
    pub fn stats(&self) -> Stats {
        Stats {
            // Not the turn's `now`: this is also called from outside the loop.
            uptime: self.started.elapsed(),
            pending_bytes: self.memory.pending_total() as u64,
            ..self.stats.clone()
        }
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
