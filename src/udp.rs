//! UDP echo: each datagram goes back whole to its sender, and UDP never blocks TCP. A socket
//! of another service answers each datagram with what its [`Service`] says instead, through
//! the same guards and the same reply path.
//!
//! Datagrams are read into the reactor's shared scratch buffer (256 KiB; it must be at least
//! [`MAX_DATAGRAM`], so no datagram can be truncated: the largest UDP payload is 65,507 bytes
//! over IPv4 and 65,527 over IPv6) and sent straight back. When `send_to` would block, the
//! reply waits in a bounded queue; when the queue is full the reply is dropped and counted. A
//! `send_to` error drops that one reply and is counted; it never ends the loop.
//!
//! Hardening, because echo on UDP is a classic reflection amplifier and loop partner: no reply
//! to source port 0 or a privileged port (< 1024, where echo, chargen and daytime live: the
//! echo-chargen loop), none to the server's own address, and a reply is always exactly as long
//! as its request. Each drop reason has its own counter. A service that can amplify (all but
//! echo and discard) is asked only after those guards pass, and on a socket bound beyond
//! loopback only within its source's reply rate (`service::reply_limit`).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use mio::net::UdpSocket;

use crate::connection::Readiness;
use crate::service::reply_limit::ReplyLimit;
use crate::service::{Output, Service, MAX_REPLY};
use crate::stats::Stats;

/// The smallest scratch buffer that can hold any UDP datagram whole.
pub(crate) const MAX_DATAGRAM: usize = 65_536;

/// The UDP side of the server: the socket, its readiness, and replies waiting to be sent.
#[derive(Debug)]
pub(crate) struct UdpEcho {
    socket: UdpSocket,
    local: SocketAddr,
    queue: VecDeque<(SocketAddr, Box<[u8]>)>,
    queue_limit: usize,
    readable: bool,
    writable: bool,
    /// This socket's entry in `Stats::services`.
    service_stats: usize,
    /// The service answering datagrams; `None` is echo.
    answer: Option<Answer>,
}

/// A non-echo service on a UDP socket: the service, its rate limit, and a reply buffer
/// reused for every datagram.
pub(crate) struct Answer {
    service: Box<dyn Service>,
    limit: Option<ReplyLimit>,
    reply: BytesMut,
}

impl Answer {
    /// `service` answers; `limit`, if any, rations its replies per source.
    pub(crate) fn new(service: Box<dyn Service>, limit: Option<ReplyLimit>) -> Answer {
        Answer {
            service,
            limit,
            reply: BytesMut::new(),
        }
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("limited", &self.limit.is_some())
            .finish_non_exhaustive()
    }
}

impl UdpEcho {
    /// Wraps a bound, non-blocking socket. `queue_limit` bounds the waiting replies.
    /// `service_stats` is its entry in `Stats::services`; `answer` a service other than echo.
    pub(crate) fn new(
        socket: UdpSocket,
        queue_limit: usize,
        service_stats: usize,
        answer: Option<Answer>,
    ) -> io::Result<Self> {
        Ok(UdpEcho {
            local: socket.local_addr()?,
            socket,
            queue: VecDeque::new(),
            queue_limit,
            readable: false,
            writable: false,
            service_stats,
            answer,
        })
    }

    /// The socket, for registering with the poller.
    pub(crate) fn socket_mut(&mut self) -> &mut UdpSocket {
        &mut self.socket
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Records readiness reported by the poller, until a call says `WouldBlock`.
    pub(crate) fn on_readiness(&mut self, ready: Readiness) {
        self.readable |= ready.readable;
        self.writable |= ready.writable;
    }

    /// Sends queued replies, then echoes up to `budget` datagrams. Returns true when the budget
    /// ran out with work left, so the reactor runs it again next turn.
    pub(crate) fn drive(&mut self, scratch: &mut [u8], budget: usize, stats: &mut Stats) -> bool {
        debug_assert!(scratch.len() >= MAX_DATAGRAM);
        self.flush_queue(stats);
        let mut left = budget;
        while self.readable && left > 0 {
            match self.socket.recv_from(scratch) {
                Ok((len, peer)) => {
                    left -= 1;
                    stats.udp_datagrams_in += 1;
                    stats.udp_bytes_in += len as u64;
                    if let Some(service) = stats.services.get_mut(self.service_stats) {
                        service.udp_datagrams_in += 1;
                    }
                    match self.answer.is_some() {
                        true => self.answer(&scratch[..len], peer, stats),
                        false => self.reply(&scratch[..len], peer, stats),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // E.g. an ICMP error queued on the socket. Reported once per recv; the
                    // next recv sees the next datagram.
                    log::debug!("udp recv_from: {e}");
                    left -= 1;
                }
            }
        }
        (self.readable && left == 0) || (self.writable && !self.queue.is_empty())
    }

    /// Asks the service for its reply to one datagram, after the guards and within the rate
    /// limit, and sends it the way an echo goes.
    fn answer(&mut self, request: &[u8], peer: SocketAddr, stats: &mut Stats) {
        let Some(answer) = self.answer.as_mut() else {
            return;
        };
        if let Some(refusal) = refuse_reply(peer, self.local) {
            *refusal.counter(stats) += 1;
            return;
        }
        // The clock is read only on a rate-limited socket (amplifying, beyond loopback).
        if let Some(limit) = answer.limit.as_mut() {
            if !limit.allow(peer.ip(), Instant::now()) {
                stats.udp_dropped_rate_limited += 1;
                return;
            }
        }
        let mut reply = std::mem::take(&mut answer.reply);
        reply.clear();
        let mut out = Output::with_wall_clock(&mut reply, MAX_REPLY);
        let send = answer.service.on_datagram(request, &mut out) && reply.len() <= MAX_REPLY;
        if send {
            self.reply(&reply, peer, stats);
        }
        if let Some(answer) = self.answer.as_mut() {
            answer.reply = reply; // keep the allocation for the next datagram
        }
    }

    /// Echoes one datagram to `peer`: refused (and counted) by the hardening rules, sent at
    /// once if nothing is queued ahead of it, else queued, else dropped and counted.
    fn reply(&mut self, data: &[u8], peer: SocketAddr, stats: &mut Stats) {
        if let Some(refusal) = refuse_reply(peer, self.local) {
            *refusal.counter(stats) += 1;
            return;
        }
        if self.queue.is_empty() && self.writable {
            match self.socket.send_to(data, peer) {
                Ok(sent) => {
                    record_sent(sent, data.len(), self.service_stats, stats);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) => {
                    log::debug!("udp send_to {peer}: {e}");
                    stats.udp_dropped_send_error += 1;
                    return;
                }
            }
        }
        if self.queue.len() < self.queue_limit {
            self.queue.push_back((peer, data.into()));
        } else {
            stats.udp_dropped_queue_full += 1;
        }
    }

    /// Sends queued replies, oldest first, until the queue is empty or the socket blocks.
    fn flush_queue(&mut self, stats: &mut Stats) {
        while self.writable {
            let Some((peer, data)) = self.queue.front() else {
                return;
            };
            match self.socket.send_to(data, *peer) {
                Ok(sent) => record_sent(sent, data.len(), self.service_stats, stats),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("udp send_to {peer}: {e}");
                    stats.udp_dropped_send_error += 1;
                }
            }
            self.queue.pop_front();
        }
    }
}

/// Why a datagram gets no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Source port 0 or below 1024.
    PrivilegedPort,
    /// The datagram came from the server's own address (a loop).
    OwnAddress,
}

impl Refusal {
    /// The counter this refusal bumps.
    fn counter(self, stats: &mut Stats) -> &mut u64 {
        match self {
            Refusal::PrivilegedPort => &mut stats.udp_dropped_privileged_port,
            Refusal::OwnAddress => &mut stats.udp_dropped_own_address,
        }
    }
}

/// Decides whether `peer` may get a reply from a server bound to `local`.
pub(crate) fn refuse_reply(peer: SocketAddr, local: SocketAddr) -> Option<Refusal> {
    if peer.port() < 1024 {
        return Some(Refusal::PrivilegedPort);
    }
    let same_host =
        peer.ip() == local.ip() || (local.ip().is_unspecified() && peer.ip().is_loopback());
    if peer.port() == local.port() && same_host {
        return Some(Refusal::OwnAddress);
    }
    None
}

/// UDP sends are all or nothing; a short send would be a truncated echo, so count it as a
/// failed reply rather than an echoed one.
fn record_sent(sent: usize, len: usize, service: usize, stats: &mut Stats) {
    if sent == len {
        stats.udp_datagrams_out += 1;
        stats.udp_bytes_out += len as u64;
        if let Some(service) = stats.services.get_mut(service) {
            service.udp_datagrams_out += 1;
        }
    } else {
        stats.udp_dropped_send_error += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn privileged_and_zero_source_ports_get_no_reply() {
        let local = addr("127.0.0.1:7007");
        assert_eq!(
            refuse_reply(addr("127.0.0.1:0"), local),
            Some(Refusal::PrivilegedPort)
        );
        assert_eq!(
            refuse_reply(addr("127.0.0.1:19"), local),
            Some(Refusal::PrivilegedPort)
        );
        assert_eq!(
            refuse_reply(addr("127.0.0.1:1023"), local),
            Some(Refusal::PrivilegedPort)
        );
        assert_eq!(refuse_reply(addr("127.0.0.1:1024"), local), None);
    }

    #[test]
    fn own_address_gets_no_reply_even_when_bound_to_any() {
        let local = addr("127.0.0.1:7007");
        assert_eq!(refuse_reply(local, local), Some(Refusal::OwnAddress));
        let any = addr("0.0.0.0:7007");
        assert_eq!(
            refuse_reply(addr("127.0.0.1:7007"), any),
            Some(Refusal::OwnAddress)
        );
        assert_eq!(refuse_reply(addr("127.0.0.1:7008"), any), None);
        assert_eq!(
            refuse_reply(addr("[::1]:7007"), addr("[::1]:7007")),
            Some(Refusal::OwnAddress)
        );
    }
}
