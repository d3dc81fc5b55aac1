//! What the reactor listens on: TCP listeners and UDP sockets, each carrying the service it
//! serves (an index into `Server::services`, which is also its entry in `Stats::services`).
//! The token of an event says which one it is for (`Source` in `reactor/mod.rs`).

use std::time::Instant;

use mio::net::TcpListener;
use mio::Registry;

use crate::connection::Readiness;
use crate::stats::{Stats, UdpDrop};
use crate::udp::answers::DatagramAnswers;
use crate::udp::UdpEcho;

/// A TCP listener and the service its connections get.
#[derive(Debug)]
pub(super) struct TcpSide {
    pub(super) socket: TcpListener,
    pub(super) service: usize,
}

/// A UDP socket and the service answering its datagrams.
#[derive(Debug)]
pub(super) struct UdpSide {
    pub(super) socket: UdpEcho,
    pub(super) service: usize,
    /// A service other than echo (echo is the endpoint's own zero-copy path).
    pub(super) answers: Option<DatagramAnswers>,
}

impl UdpSide {
    /// Records readiness reported by the poller.
    pub(super) fn on_readiness(&mut self, ready: Readiness) {
        self.socket.on_readiness(ready);
    }

    /// Answers up to `budget` datagrams (see `UdpEcho::drive_with`) and counts what went in,
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
        let more = match self.answers.as_mut() {
            None => self.socket.drive(registry, budget, now, stats),
            Some(answers) => {
                answers.start_turn(now);
                let more = self
                    .socket
                    .drive_with(registry, answers, budget, now, stats);
                let (limited, unanswered) = answers.take_silent();
                stats.record_udp_drop(UdpDrop::RateLimited, limited);
                stats.record_udp_drop(UdpDrop::Unanswered, unanswered);
                more
            }
        };
        if let Some(service) = stats.services.get_mut(self.service) {
            service.udp_datagrams_in += stats.udp_datagrams_in - before.0;
            service.udp_datagrams_out += stats.udp_datagrams_out - before.1;
            service.udp_dropped += stats.udp_dropped - before.2;
        }
        more
    }
}
