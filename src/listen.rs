//! Listeners: which service is served on which address, over which protocol; and the
//! endpoints a bound server reports, one per socket. (The binary's `--listen` syntax that
//! names listeners on a command line is the binary's own: `src/bin/echoloop/listen_flag.rs`.)
//!
//! Port 0 picks a free port; a listener's TCP and UDP sides then share one number.

use std::fmt;
use std::net::SocketAddr;

use crate::service::ServiceKind;

/// The protocols a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP only.
    Tcp,
    /// UDP only.
    Udp,
    /// TCP and UDP on the same port.
    Both,
}

impl Protocol {
    /// True when TCP is served.
    pub fn tcp(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Both)
    }

    /// True when UDP is served.
    pub fn udp(self) -> bool {
        matches!(self, Protocol::Udp | Protocol::Both)
    }

    /// The protocols `tcp` and `udp` ask for, or `None` when both are off.
    pub fn from_flags(tcp: bool, udp: bool) -> Option<Protocol> {
        match (tcp, udp) {
            (true, true) => Some(Protocol::Both),
            (true, false) => Some(Protocol::Tcp),
            (false, true) => Some(Protocol::Udp),
            (false, false) => None,
        }
    }
}

/// One service on one address: the server binds a TCP listener, a UDP socket, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// What it serves.
    pub service: ServiceKind,
    /// Over which protocols.
    pub protocol: Protocol,
    /// Where; port 0 picks a free one.
    pub addr: SocketAddr,
}

/// One bound socket of a listener, as the start-up line and an embedder see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// What it serves.
    pub service: ServiceKind,
    /// [`Protocol::Tcp`] or [`Protocol::Udp`], never both.
    pub protocol: Protocol,
    /// The real address (port 0 resolved).
    pub addr: SocketAddr,
}

impl Protocol {
    /// `tcp`, `udp`, or `tcp+udp`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Both => "tcp+udp",
        }
    }
}

/// `SERVICE/PROTOCOL=ADDR`, as in the binary's `listening` line (e.g. `echo/udp=127.0.0.1:7007`):
/// a listener's TCP and UDP sockets share an address, and the protocol tells them apart.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}={}", self.service, self.protocol.name(), self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_sockets_of_one_address_read_apart() {
        let addr: SocketAddr = "127.0.0.1:7007".parse().unwrap();
        let [tcp, udp] = [Protocol::Tcp, Protocol::Udp].map(|protocol| Endpoint {
            service: ServiceKind::Echo,
            protocol,
            addr,
        });
        assert_eq!(tcp.to_string(), "echo/tcp=127.0.0.1:7007");
        assert_eq!(udp.to_string(), "echo/udp=127.0.0.1:7007");
    }
}
