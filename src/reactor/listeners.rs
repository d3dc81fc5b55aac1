//! What the reactor listens on: TCP listeners and UDP sockets, each carrying the service it
//! serves (an index into `Server::services`, which is also its entry in `Stats::services`).
//! The token of an event says which one it is for (`Source` in `reactor/mod.rs`).

use std::time::Instant;

use mio::net::TcpListener;
use mio::Registry;

use crate::connection::Readiness;
use crate::stats::Stats;
use crate::udp::UdpEndpoint;

/// A TCP listener and the service its connections get.
#[derive(Debug)]
pub(super) struct TcpSide {
    pub(super) socket: TcpListener,
    pub(super) service: usize,
}

/// A UDP socket (which answers with its service) and the service's index.
#[derive(Debug)]
pub(super) struct UdpSide {
    pub(super) socket: UdpEndpoint,
    pub(super) service: usize,
}

impl UdpSide {
    /// Records readiness reported by the poller.
    pub(super) fn on_readiness(&mut self, ready: Readiness) {
        self.socket.on_readiness(ready);
    }

    /// Answers up to `budget` datagrams (see `UdpEndpoint::drive`) and counts what went in,
    /// out and nowhere under the service too. True when work is left for the next turn.
    pub(super) fn drive(
        &mut self,
        registry: &Registry,
        budget: usize,
        now: Instant,
        stats: &mut Stats,
    ) -> bool {
        let before = (
            stats.udp_datagrams_in,
            stats.udp_datagrams_out,
            stats.udp_dropped,
        );
        let more = self.socket.drive(registry, budget, now, stats);
        if let Some(service) = stats.services.get_mut(self.service) {
            service.udp_datagrams_in += stats.udp_datagrams_in - before.0;
            service.udp_datagrams_out += stats.udp_datagrams_out - before.1;
            service.udp_dropped += stats.udp_dropped - before.2;
        }
        more
    }
}
