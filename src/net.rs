//! Binding the listening sockets: options that must be set before `bind`, and one port for both
//! protocols.
//!
//! `socket2` is used because std and mio cannot set `SO_REUSEADDR` or choose the listen backlog.
//! With `--port 0` the kernel picks the TCP port, and UDP then binds the same number; if that
//! number happens to be taken for UDP, we try again with a fresh TCP port.

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::error::ServerError;

/// The sockets a server listens on, already non-blocking.
#[derive(Debug)]
pub(crate) struct Bound {
    /// The TCP listener, unless TCP is off.
    pub(crate) tcp: Option<TcpListener>,
    /// The UDP socket, unless UDP is off.
    pub(crate) udp: Option<UdpSocket>,
}

/// How many fresh ports to try when `--port 0` finds the UDP twin of a TCP port taken.
const PORT_ZERO_ATTEMPTS: usize = 16;

/// Binds what `config` asks for, TCP and UDP on the same port.
pub(crate) fn bind(config: &Config) -> Result<Bound, ServerError> {
    let wanted = SocketAddr::new(config.bind, config.port);
    let attempts = if config.port == 0 && config.tcp && config.udp {
        PORT_ZERO_ATTEMPTS
    } else {
        1
    };
    let mut last_error = None;
    for _ in 0..attempts {
        let tcp = match config.tcp {
            true => Some(bind_tcp(wanted, config.backlog)?),
            false => None,
        };
        let udp_addr = match &tcp {
            Some(listener) => listener
                .local_addr()
                .map_err(|e| bind_error("TCP", wanted, e))?,
            None => wanted,
        };
        if !config.udp {
            return Ok(Bound { tcp, udp: None });
        }
        match bind_udp(udp_addr) {
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
fn bind_tcp(addr: SocketAddr, backlog: u32) -> Result<TcpListener, ServerError> {
    let setup = || -> io::Result<TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        // A restarted server can rebind while old connections sit in TIME_WAIT.
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
        Ok(socket.into())
    };
    setup().map_err(|e| bind_error("TCP", addr, e))
}

/// A non-blocking UDP socket on `addr` (without `SO_REUSEADDR`: see inside).
fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, ServerError> {
    let setup = || -> io::Result<UdpSocket> {
        // No SO_REUSEADDR for UDP: on Linux it would let a second process share the port.
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        Ok(socket.into())
    };
    setup().map_err(|e| bind_error("UDP", addr, e))
}

/// The `ServerError` for a failed bind of `protocol` on `addr`.
fn bind_error(protocol: &'static str, addr: SocketAddr, source: io::Error) -> ServerError {
    ServerError::Bind {
        protocol,
        addr,
        source,
    }
}
