//! UDP echo: each datagram goes back whole to its sender, and UDP never blocks TCP.
//!
//! Datagrams are read into the reactor's shared scratch buffer (64 KiB, so no datagram can be
//! truncated: the largest UDP payload is 65,507 bytes over IPv4 and 65,527 over IPv6) and sent
//! straight back. When `send_to` would block, the reply waits in a bounded queue; when the
//! queue is full the reply is dropped and counted. A `send_to` error drops that one reply and
//! is counted; it never ends the loop.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use mio::net::UdpSocket;

use crate::stats::Stats;

/// The smallest scratch buffer that can hold any UDP datagram whole.
pub const MAX_DATAGRAM: usize = 65_536;

/// The UDP side of the server: the socket, its readiness, and replies waiting to be sent.
#[derive(Debug)]
pub struct UdpEcho {
    socket: UdpSocket,
    queue: VecDeque<(SocketAddr, Box<[u8]>)>,
    queue_limit: usize,
    readable: bool,
    writable: bool,
}

impl UdpEcho {
    /// Wraps a bound, non-blocking socket. `queue_limit` bounds the waiting replies.
    pub fn new(socket: UdpSocket, queue_limit: usize) -> Self {
        UdpEcho {
            socket,
            queue: VecDeque::new(),
            queue_limit,
            readable: false,
            writable: false,
        }
    }

    /// The socket, for registering with the poller.
    pub fn socket_mut(&mut self) -> &mut UdpSocket {
        &mut self.socket
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Records readiness reported by the poller.
    pub fn on_event(&mut self, readable: bool, writable: bool) {
        self.readable |= readable;
        self.writable |= writable;
    }

    /// Sends queued replies, then echoes up to `budget` datagrams. Returns true when the budget
    /// ran out with work left, so the reactor runs it again next turn.
    pub fn drive(&mut self, scratch: &mut [u8], budget: usize, stats: &mut Stats) -> bool {
        debug_assert!(scratch.len() >= MAX_DATAGRAM);
        self.flush_queue(stats);
        let mut left = budget;
        while self.readable && left > 0 {
            match self.socket.recv_from(scratch) {
                Ok((len, peer)) => {
                    left -= 1;
                    stats.udp_datagrams_in += 1;
                    stats.udp_bytes_in += len as u64;
                    self.reply(&scratch[..len], peer, stats);
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

    fn reply(&mut self, data: &[u8], peer: SocketAddr, stats: &mut Stats) {
        if self.queue.is_empty() && self.writable {
            match self.socket.send_to(data, peer) {
                Ok(_) => {
                    stats.udp_datagrams_out += 1;
                    stats.udp_bytes_out += data.len() as u64;
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

    fn flush_queue(&mut self, stats: &mut Stats) {
        while self.writable {
            let Some((peer, data)) = self.queue.front() else {
                return;
            };
            match self.socket.send_to(data, *peer) {
                Ok(_) => {
                    stats.udp_datagrams_out += 1;
                    stats.udp_bytes_out += data.len() as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return;
                }
                Err(e) => {
                    log::debug!("udp send_to {peer}: {e}");
                    stats.udp_dropped_send_error += 1;
                }
            }
            self.queue.pop_front();
        }
    }
}
