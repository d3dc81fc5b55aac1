//! Binding the listening sockets: options that must be set before `bind`, and one port for both
//! protocols of a listener.
//!
//! `socket2` is used because std and mio cannot set `SO_REUSEADDR`, `IPV6_V6ONLY` or choose the
//! listen backlog. With port 0 the kernel picks the TCP port, and UDP then binds the same
//! number; if that number happens to be taken for UDP, we try again with a fresh TCP port.
//!
//! `IPV6_V6ONLY` is set explicitly, off, on every IPv6 socket rather than left to the
//! `net.ipv6.bindv6only` sysctl: `::` is then dual stack on every machine, one socket for
//! both families (IPv4 peers appear v4-mapped, and the UDP guards compare addresses in
//! canonical form). A `0.0.0.0` beside `::` on the same port would fail with "address in
//! use", so the command line drops a `--bind 0.0.0.0` that a `--bind ::` already covers.
//!
//! Several reactors share each address with `SO_REUSEPORT` ([`Sharing::ReusePort`]): each has
//! its own sockets, and the kernel spreads connections and datagrams over them by a hash of
//! the peer's address. Linux lets only sockets of the same user join such a group. One reactor
//! alone binds without it, as before, so no other process can join. Several check first
//! ([`ensure_unshared`]) that no one holds their ports yet: otherwise a second `echoloop
//! --threads N` on the same port would silently join the first one's group and take half its
//! clients.

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::error::ServerError;
use crate::listen::Listener;

/// The sockets a server listens on, already non-blocking.
#[derive(Debug)]
pub(crate) struct Bound {
    /// The TCP listener, unless TCP is off.
    pub(crate) tcp: Option<TcpListener>,
    /// The UDP socket, unless UDP is off.
    pub(crate) udp: Option<UdpSocket>,
}

/// Whether the sockets may share their address with other sockets of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sharing {
    /// One reactor: the address is ours alone.
    Exclusive,
    /// One of several reactors: `SO_REUSEPORT` on every socket.
    ReusePort,
}

/// How many fresh ports to try when `--port 0` finds the UDP twin of a TCP port taken.
const PORT_ZERO_ATTEMPTS: usize = 16;

/// A listener with its sockets bound.
#[derive(Debug)]
pub(crate) struct BoundListener {
    /// What was asked for (the address may say port 0).
    pub(crate) listener: Listener,
    /// The sockets.
    pub(crate) sockets: Bound,
}

impl BoundListener {
    /// The port its sockets got (both have the same one).
    fn port(&self) -> Option<u16> {
        let tcp = self.sockets.tcp.as_ref().and_then(|s| s.local_addr().ok());
        let udp = self.sockets.udp.as_ref().and_then(|s| s.local_addr().ok());
        tcp.or(udp).map(|addr| addr.port())
    }
}

/// Binds every listener `config` names, in order. A listener on port 0 takes the port an
/// earlier one of the same service and protocols got on another address (`--bind A --bind B
/// --port 0` listens on one port, as a client expects), or a free one if that is taken there.
pub(crate) fn bind_all(
    config: &Config,
    sharing: Sharing,
) -> Result<Vec<BoundListener>, ServerError> {
    let mut bound: Vec<BoundListener> = Vec::new();
    for listener in config.all_listeners() {
        let bind = |addr| {
            bind_pair(
                addr,
                listener.protocol.tcp(),
                listener.protocol.udp(),
                config.backlog,
                sharing,
            )
        };
        let sibling_port = bound
            .iter()
            .filter(|b| b.listener.addr.port() == 0 && b.listener.addr.ip() != listener.addr.ip())
            .find(|b| {
                b.listener.service == listener.service && b.listener.protocol == listener.protocol
            })
            .and_then(|b| b.port());
        let sockets = match sibling_port {
            Some(port) if listener.addr.port() == 0 => {
                bind(SocketAddr::new(listener.addr.ip(), port)).or_else(|_| bind(listener.addr))?
            }
            _ => bind(listener.addr)?,
        };
        bound.push(BoundListener { listener, sockets });
    }
    Ok(bound)
}

/// Before the first reactor of several binds with `SO_REUSEPORT`: binds every fixed port
/// `config` names once without it, and lets go. Any socket already on the port (another
/// group's, which would otherwise welcome ours, or anyone's) makes that fail as "address in
/// use". Port 0 needs no check: the kernel picks a free port.
pub(crate) fn ensure_unshared(config: &Config) -> Result<(), ServerError> {
    for listener in config.all_listeners() {
        if listener.addr.port() == 0 {
            continue;
        }
        let probe = bind_pair(
            listener.addr,
            listener.protocol.tcp(),
            listener.protocol.udp(),
            config.backlog,
            Sharing::Exclusive,
        )?;
        drop(probe); // closed at once: never connected, so nothing lingers
    }
    Ok(())
}

/// `config` with every port 0 replaced by the port the first reactor's sockets got, so the
/// other reactors of a group join the same addresses. `bound` is what `bind_all(config, ..)`
/// returned, in the order of `config.all_listeners()`: the echo listener, then the others.
pub(crate) fn same_ports(config: &Config, bound: &[BoundListener]) -> Config {
    let port = |b: &BoundListener| b.port().unwrap_or(b.listener.addr.port());
    let mut same = config.clone();
    let has_echo = config.tcp || config.udp;
    let mut ports = bound.iter().map(port);
    if has_echo {
        same.port = ports.next().unwrap_or(config.port);
    }
    for (listener, port) in same.listeners.iter_mut().zip(ports) {
        listener.addr.set_port(port);
    }
    same
}

/// Binds TCP, UDP or both on `wanted`; with port 0, both sides get the same number.
fn bind_pair(
    wanted: SocketAddr,
    tcp: bool,
    udp: bool,
    backlog: u32,
    sharing: Sharing,
) -> Result<Bound, ServerError> {
    let attempts = if wanted.port() == 0 && tcp && udp {
        PORT_ZERO_ATTEMPTS
    } else {
        1
    };
    let mut last_error = None;
    for _ in 0..attempts {
        let tcp = match tcp {
            true => Some(bind_tcp(wanted, backlog, sharing)?),
            false => None,
        };
        let udp_addr = match &tcp {
            Some(listener) => listener
                .local_addr()
                .map_err(|e| bind_error("TCP", wanted, e))?,
            None => wanted,
        };
        if !udp {
            return Ok(Bound { tcp, udp: None });
        }
        match bind_udp(udp_addr, sharing) {
            Ok(udp) => {
                return Ok(Bound {
                    tcp,
                    udp: Some(udp),
                })
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| bind_error("UDP", wanted, io::ErrorKind::AddrInUse.into())))
}

/// A non-blocking TCP listener on `addr`, with `SO_REUSEADDR` and the given backlog.
fn bind_tcp(addr: SocketAddr, backlog: u32, sharing: Sharing) -> Result<TcpListener, ServerError> {
    let setup = || -> io::Result<TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        // A restarted server can rebind while old connections sit in TIME_WAIT.
        socket.set_reuse_address(true)?;
        v6_only(&socket, addr)?;
        share(&socket, sharing)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
        Ok(socket.into())
    };
    setup().map_err(|e| bind_error("TCP", addr, e))
}

/// A non-blocking UDP socket on `addr` (without `SO_REUSEADDR`: see inside).
fn bind_udp(addr: SocketAddr, sharing: Sharing) -> Result<UdpSocket, ServerError> {
    let setup = || -> io::Result<UdpSocket> {
        // No SO_REUSEADDR for UDP: on Linux it would let a second process share the port.
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        v6_only(&socket, addr)?;
        share(&socket, sharing)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        Ok(socket.into())
    };
    setup().map_err(|e| bind_error("UDP", addr, e))
}

/// Sets `SO_REUSEPORT` when the address is shared between reactors.
fn share(socket: &Socket, sharing: Sharing) -> io::Result<()> {
    match sharing {
        Sharing::Exclusive => Ok(()),
        #[cfg(unix)]
        Sharing::ReusePort => socket.set_reuse_port(true),
        #[cfg(not(unix))]
        Sharing::ReusePort => Err(io::ErrorKind::Unsupported.into()),
    }
}

/// IPv6 sockets are dual stack, whatever the sysctl says (see the module doc).
fn v6_only(socket: &Socket, addr: SocketAddr) -> io::Result<()> {
    match addr {
        SocketAddr::V6(_) => socket.set_only_v6(false),
        SocketAddr::V4(_) => Ok(()),
    }
}

/// The `ServerError` for a failed bind of `protocol` on `addr`.
fn bind_error(protocol: &'static str, addr: SocketAddr, source: io::Error) -> ServerError {
    ServerError::Bind {
        protocol,
        addr,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listen::Protocol as Proto;
    use crate::service::ServiceKind;

    #[test]
    /// On `::` (the wildcard, where dual stack matters; bound for the moment of the test, no
    /// traffic), both protocols share the port and `IPV6_V6ONLY` is off.
    fn port_zero_gives_both_protocols_one_port_and_v6_is_dual_stack() {
        let bound = bind_pair(
            "[::]:0".parse().unwrap(),
            true,
            true,
            16,
            Sharing::Exclusive,
        )
        .expect("bind ::");
        let tcp = bound.tcp.expect("tcp").local_addr().unwrap();
        let udp = bound.udp.expect("udp");
        assert_eq!(tcp.port(), udp.local_addr().unwrap().port());
        assert!(!socket2::SockRef::from(&udp).only_v6().unwrap());
    }

    #[test]
    fn bind_all_binds_the_echo_listener_then_the_others() {
        let mut config = Config {
            port: 0,
            ..Config::default()
        };
        config.listeners.push(Listener {
            service: ServiceKind::Time,
            protocol: Proto::Udp,
            addr: "127.0.0.1:0".parse().unwrap(),
        });
        let bound = bind_all(&config, Sharing::Exclusive).expect("bind");
        assert_eq!(bound.len(), 2);
        assert_eq!(bound[0].listener.service, ServiceKind::Echo);
        assert!(bound[0].sockets.tcp.is_some() && bound[0].sockets.udp.is_some());
        assert!(bound[1].sockets.tcp.is_none() && bound[1].sockets.udp.is_some());
    }
}
