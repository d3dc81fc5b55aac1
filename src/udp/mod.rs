//! UDP: each datagram gets its service's answer (echo: itself, whole), a batch per syscall,
//! and UDP never blocks TCP.
//!
//! # Layout
//! - [`batch_io`]: the only code that touches the socket: `recvmmsg`/`sendmmsg` of up to
//!   [`BATCH`] datagrams, and pktinfo (each datagram's real destination on a wildcard bind;
//!   each reply sent from it).
//! - [`guard`]: which datagrams get no reply (privileged ports, our own address, echo loops
//!   with another server, watched for the peers [`LoopGuard`] names), without sockets.
//! - [`reply_queue`]: replies waiting for the socket, bounded.
//! - [`answers`]: the reply of a [`Service`](crate::service::Service) other than echo, one
//!   fresh value per datagram, rationed per source where it can amplify.
//! - here: [`UdpEndpoint`], the reactor's UDP socket, which runs the three.
//!
//! # One turn ([`UdpEndpoint::drive`])
//! ```text
//! flush queued replies (sendmmsg)
//! until budget spent or socket drained:
//!     recvmmsg a batch  ->  per datagram: guards -> service -> reply (bytes, to, from)
//!     sendmmsg the replies (echo sends straight from the receive slots: no copy)
//!     what would block -> reply queue (copied; full -> dropped and counted)
//! ```
//! A reply is the triple (bytes, destination, local source address); the service decides
//! only the bytes (writing them straight into the batch's reply buffer), so every service
//! gets the same guards, batching, queue and pktinfo. Echo is the one service the endpoint
//! knows by name: its reply is the request itself, sent from where it was received.
//!
//! Order: replies leave in the order their requests arrived (while the queue holds anything,
//! new replies go behind it), so each source sees its replies in order, each exactly as long
//! as the service made it. A partial `sendmmsg` (the kernel took k < n) resumes at k; an
//! error on one reply drops that reply only, counted. Each counter is in [`Stats`].
//!
//! Unlike the TCP connection, this is socket I/O, not a state machine apart from it (there is
//! no per-peer state to script), so it bumps its counters in `Stats` directly rather than
//! returning them; the decisions worth testing alone are sans-IO: the guards (`guard`), the
//! partial-send handling ([`send_all`]) and the queue.
//!
//! Syscalls: per wakeup one `recvmmsg` per batch and one `sendmmsg` per batch of replies,
//! against one `recvfrom` and one `sendto` per datagram before (and in tokio); a batch that
//! comes back short of what was asked has drained the socket (every new datagram raises a new
//! edge), so no extra call is spent to meet `EAGAIN`.

pub(crate) mod answers;
pub(crate) mod batch_io;
pub(crate) mod guard;
pub(crate) mod reply_queue;

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

use crate::config::LoopGuard;
use crate::connection::Readiness;
use crate::stats::{Stats, UdpDrop};
use answers::{Answered, DatagramAnswers};
use batch_io::{RecvBatch, SendBatch};
pub(crate) use batch_io::{Reply, ReplySource, Sent, BATCH};
pub(crate) use guard::{refuse_reply, Refusal};
use guard::{LocalAddresses, LoopBreaker, RefusalLog};
use reply_queue::ReplyQueue;

/// The most a batch's replies can take: every datagram answered with the largest reply.
const MAX_BATCH_REPLIES: usize = BATCH * crate::service::MAX_REPLY;

/// The UDP socket's receive buffer asked for (`SO_RCVBUF`).
const RECV_BUFFER: usize = 4 << 20;

/// Where a planned reply's bytes are: a receive slot (echo) or the reply buffer.
#[derive(Debug, Clone)]
enum ReplyBytes {
    Slot(usize),
    Written(std::ops::Range<usize>),
}

/// A reply decided but not yet sent: its bytes are named, not borrowed, because the reply
/// buffer still grows while the batch is answered.
#[derive(Debug, Clone)]
struct PlannedReply {
    bytes: ReplyBytes,
    to: SocketAddr,
    from: Option<ReplySource>,
}

/// The UDP side of the server: the socket, its service, readiness, batches and waiting
/// replies.
#[derive(Debug)]
pub(crate) struct UdpEndpoint {
    socket: UdpSocket,
    local: SocketAddr,
    /// The service when it is not echo (echo is the endpoint's own no-copy path).
    answers: Option<DatagramAnswers>,
    recv: RecvBatch,
    send: SendBatch,
    queue: ReplyQueue,
    /// Bytes of the current batch's replies other than echoes, written there by the service.
    written: Vec<u8>,
    /// The current batch's replies, in order (kept to reuse its allocation: a batch is
    /// answered many times a second, and most hold a few datagrams, not [`BATCH`]).
    planned: Vec<PlannedReply>,
    loops: LoopBreaker,
    /// Which peers `loops` watches.
    loop_guard: LoopGuard,
    local_addresses: LocalAddresses,
    /// The zero of the millisecond clock the guards use.
    epoch: Instant,
    refusal_log: RefusalLog,
    /// The token the socket is registered under, to add and drop writable interest (the
    /// registry comes with each `drive`: a clone of it would cost a descriptor per socket).
    registration: Option<Token>,
    /// Writable interest is registered (only while replies wait).
    watching_writable: bool,
    readable: bool,
    /// Assumed until a send would block: interest in writability is registered only then.
    writable: bool,
}

impl UdpEndpoint {
    /// Wraps a bound, non-blocking socket. `answers` is its service (`None`: echo);
    /// `queue_limit` bounds the waiting replies; `loop_guard` says which peers the echo-loop
    /// guard watches. On a wildcard bind, pktinfo is turned on so that replies leave from the
    /// address each request was sent to.
    pub(crate) fn new(
        socket: UdpSocket,
        answers: Option<DatagramAnswers>,
        queue_limit: usize,
        loop_guard: LoopGuard,
    ) -> io::Result<Self> {
        let local = socket.local_addr()?;
        let ipv6 = local.is_ipv6();
        let pktinfo = local.ip().is_unspecified();
        if pktinfo {
            batch_io::enable_pktinfo(&socket, ipv6)?;
        }
        // Room for bursts from many sockets: the default (about 208 KiB) holds three
        // maximum-size datagrams. Best effort: the kernel caps it at `net.core.rmem_max`, and
        // memory is only used while datagrams wait.
        if let Err(e) = socket2::SockRef::from(&socket).set_recv_buffer_size(RECV_BUFFER) {
            log::debug!("udp: cannot set SO_RCVBUF: {e}");
        }
        Ok(UdpEndpoint {
            socket,
            local,
            answers,
            recv: RecvBatch::new(pktinfo, ipv6),
            send: SendBatch::new(ipv6),
            queue: ReplyQueue::new(queue_limit),
            written: Vec::new(),
            planned: Vec::with_capacity(BATCH),
            loops: LoopBreaker::default(),
            loop_guard,
            local_addresses: LocalAddresses::default(),
            epoch: Instant::now(),
            refusal_log: RefusalLog::default(),
            registration: None,
            watching_writable: false,
            readable: false,
            writable: true,
        })
    }

    /// Registers the socket with `registry` under `token`, for readability only. Writable
    /// interest is added while replies wait for room and dropped when they are gone: on
    /// Linux every datagram sent frees send-buffer room, which with writable interest would
    /// queue an epoll event per batch and cost the next `epoll_wait` a spurious return.
    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.socket, token, Interest::READABLE)?;
        self.registration = Some(token);
        Ok(())
    }

    /// Adds or drops writable interest so that it is registered exactly while replies wait
    /// (two `epoll_ctl` calls per overload episode, none in the steady state).
    fn watch_writable(&mut self, registry: &Registry, wanted: bool) {
        if wanted == self.watching_writable {
            return;
        }
        let Some(token) = self.registration else {
            return;
        };
        let interest = match wanted {
            true => Interest::READABLE | Interest::WRITABLE,
            false => Interest::READABLE,
        };
        match registry.reregister(&mut self.socket, token, interest) {
            Ok(()) => self.watching_writable = wanted,
            // Replies then wait for the next readable event, which flushes first.
            Err(e) => log::warn!("udp: cannot change the socket's poll interest: {e}"),
        }
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Replies waiting in the queue now.
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Records readiness reported by the poller, until a call says `WouldBlock`.
    pub(crate) fn on_readiness(&mut self, ready: Readiness) {
        self.readable |= ready.readable;
        self.writable |= ready.writable;
    }

    /// Sends queued replies, then answers up to `budget` datagrams. Returns true when work
    /// is left that no new event will announce (the budget ran out, or replies wait on a
    /// writable socket), so the reactor runs it again next turn. `registry` is the one the
    /// socket was registered with.
    pub(crate) fn drive(
        &mut self,
        registry: &Registry,
        budget: usize,
        now: Instant,
        stats: &mut Stats,
    ) -> bool {
        self.flush_queue(stats);
        let mut left = budget;
        while self.readable && left > 0 {
            let wanted = left.min(BATCH);
            match self.recv.recv(&self.socket, wanted) {
                Ok(count) => {
                    left -= count.max(1);
                    // Short of what was asked: the socket is drained, and the next datagram
                    // raises a new edge.
                    self.readable = count == wanted;
                    self.answer_batch(count, now, stats);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Reported once per call; the next call sees the next datagram.
                    log::debug!("udp recvmmsg: {e}");
                    left -= 1;
                }
            }
        }
        self.watch_writable(registry, !self.queue.is_empty());
        (self.readable && left == 0) || (self.writable && !self.queue.is_empty())
    }

    /// Runs the guards and the service over the `count` datagrams just received, then sends
    /// the replies (or queues what the socket would not take).
    fn answer_batch(&mut self, count: usize, now: Instant, stats: &mut Stats) {
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        self.written.clear();
        // A service's oversized reply (never sent: longer than a datagram) grew the buffer
        // past what a batch of sendable replies needs; give that memory back.
        if self.written.capacity() > MAX_BATCH_REPLIES {
            self.written = Vec::new();
        }
        self.planned.clear();
        for index in 0..count {
            let Some((meta, bytes)) = self.recv.datagram(index) else {
                break;
            };
            stats.udp_datagrams_in += 1;
            stats.udp_bytes_in += meta.len as u64;
            if meta.truncated {
                stats.record_udp_drop(UdpDrop::Truncated, 1);
                continue;
            }
            let peer = canonical_peer(meta.peer);
            let local_addresses = &mut self.local_addresses;
            let is_local = |ip| local_addresses.contains(ip, now_ms, batch_io::interface_addresses);
            if let Some(refusal) = refuse_reply(peer, self.local, meta.destination, is_local) {
                stats.record_udp_drop(drop_reason(refusal), 1);
                continue;
            }
            // Loopback peers skip the table entirely: no lookup, no entry.
            let watched = self.loop_guard.watches(peer.ip());
            let fingerprint = match watched.then(|| self.loops.check(peer, bytes, now_ms)) {
                None => None,
                Some(Ok(fingerprint)) => Some(fingerprint),
                Some(Err(refusal)) => {
                    stats.record_udp_drop(drop_reason(refusal), 1);
                    if self.refusal_log.should_log(peer, now_ms) {
                        warn_refused(peer, stats);
                    }
                    continue;
                }
            };
            let reply_bytes = match self.answers.as_mut() {
                None => {
                    if let Some(fingerprint) = fingerprint {
                        self.loops.record(fingerprint, now_ms);
                    }
                    ReplyBytes::Slot(index)
                }
                Some(answers) => {
                    let start = self.written.len();
                    match answers.answer(peer.ip(), bytes, now, &mut self.written) {
                        Answered::Reply => {
                            let range = start..self.written.len();
                            if watched {
                                let reply = &self.written[range.clone()];
                                let reply_fingerprint = self.loops.fingerprint(peer, reply);
                                self.loops.record(reply_fingerprint, now_ms);
                            }
                            ReplyBytes::Written(range)
                        }
                        Answered::Limited => {
                            stats.record_udp_drop(UdpDrop::RateLimited, 1);
                            continue;
                        }
                        Answered::Unanswered => {
                            stats.record_udp_drop(UdpDrop::Unanswered, 1);
                            continue;
                        }
                    }
                }
            };
            self.planned.push(PlannedReply {
                bytes: reply_bytes,
                to: peer,
                from: meta.reply_from,
            });
        }
        if self.planned.is_empty() {
            return;
        }

        let batch: Vec<Reply<'_>> = self
            .planned
            .iter()
            .map(|planned| Reply {
                bytes: match &planned.bytes {
                    ReplyBytes::Slot(index) => self.recv.datagram(*index).map_or(&[][..], |d| d.1),
                    ReplyBytes::Written(range) => &self.written[range.clone()],
                },
                to: planned.to,
                from: planned.from,
            })
            .collect();
        let batch = &batch[..];
        let mut handled = 0;
        if self.queue.is_empty() && self.writable {
            let (send, socket) = (&mut self.send, &self.socket);
            let outcome = send_all(|replies| send.send(socket, replies), batch, stats);
            handled = outcome.handled;
            self.writable = !outcome.would_block;
        }
        for reply in &batch[handled..] {
            if !self.queue.push(reply) {
                stats.record_udp_drop(UdpDrop::QueueFull, 1);
            }
        }
    }

    /// Sends waiting replies, a batch per `sendmmsg`, until none wait or the socket is full.
    fn flush_queue(&mut self, stats: &mut Stats) {
        while self.writable && !self.queue.is_empty() {
            let (send, socket) = (&mut self.send, &self.socket);
            let (batch, count) = self.queue.front();
            let outcome = send_all(|replies| send.send(socket, replies), &batch[..count], stats);
            self.queue.pop(outcome.handled);
            self.writable = !outcome.would_block;
        }
    }
}

/// What [`send_all`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SendOutcome {
    /// Replies dealt with from the front: sent, or dropped on their own error.
    handled: usize,
    /// The socket would block: the rest must wait for the next writable edge.
    would_block: bool,
}

/// Sends `replies` in order through `send` (one `sendmmsg` per call). A partial send resumes
/// after the replies the kernel took; an error other than `WouldBlock`/`EINTR` is the first
/// unsent reply's own (a bad destination, a datagram too long): that reply is dropped and
/// counted, and sending goes on with the next.
fn send_all(
    mut send: impl FnMut(&[Reply<'_>]) -> io::Result<Sent>,
    replies: &[Reply<'_>],
    stats: &mut Stats,
) -> SendOutcome {
    let mut handled = 0;
    while handled < replies.len() {
        match send(&replies[handled..]) {
            Ok(sent) => {
                stats.udp_datagrams_out += (sent.count - sent.short) as u64;
                stats.udp_bytes_out += sent.bytes;
                stats.record_udp_drop(UdpDrop::SendError, sent.short as u64);
                handled += sent.count;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return SendOutcome {
                    handled,
                    would_block: true,
                };
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::debug!("udp sendmmsg to {}: {e}", replies[handled].to);
                stats.record_udp_drop(UdpDrop::SendError, 1);
                handled += 1;
            }
        }
    }
    SendOutcome {
        handled,
        would_block: false,
    }
}

fn drop_reason(refusal: Refusal) -> UdpDrop {
    match refusal {
        Refusal::PrivilegedPort => UdpDrop::PrivilegedPort,
        Refusal::OwnAddress => UdpDrop::OwnAddress,
        Refusal::EchoLoop => UdpDrop::Loop,
    }
}

/// Says what the loop guard saw and did (the caller logs each peer once per period).
fn warn_refused(peer: SocketAddr, stats: &Stats) {
    log::warn!(
        "udp: identical datagrams from {peer}, {} in a row, each right after our echo of the \
         last, as two echo servers in a loop send them: refused one to end a possible loop (a \
         client that repeats its payload loses 1 in {} this way; --udp-loop-guard off stops \
         it); {} refused so far; this peer is not logged again for {} s",
        guard::LOOP_BOUNCES,
        guard::LOOP_BOUNCES + 1,
        stats.udp_dropped_loop,
        guard::REFUSAL_LOG_PERIOD_MS / 1_000,
    );
}

/// A v4-mapped sender (on a dual-stack socket) as plain IPv4; others unchanged (an IPv6
/// sender keeps its scope id, which link-local replies need).
fn canonical_peer(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => peer,
        },
        SocketAddr::V4(_) => peer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn replies(lengths: &[usize]) -> Vec<Vec<u8>> {
        lengths.iter().map(|&len| vec![7; len]).collect()
    }

    fn as_replies(payloads: &[Vec<u8>]) -> Vec<Reply<'_>> {
        payloads
            .iter()
            .map(|bytes| Reply {
                bytes,
                to: "127.0.0.1:4000".parse().unwrap(),
                from: None,
            })
            .collect()
    }

    /// A scripted kernel: each call takes at most `take[i]` replies or fails with `fail[i]`.
    fn scripted(script: Vec<io::Result<usize>>) -> impl FnMut(&[Reply<'_>]) -> io::Result<Sent> {
        let mut script = script.into_iter();
        move |replies| {
            let take = script
                .next()
                .unwrap_or(Err(io::ErrorKind::WouldBlock.into()))?;
            let taken = &replies[..take.min(replies.len())];
            Ok(Sent {
                count: taken.len(),
                short: 0,
                bytes: taken.iter().map(|r| r.bytes.len() as u64).sum(),
            })
        }
    }

    #[test]
    fn a_partial_sendmmsg_resumes_where_the_kernel_stopped() {
        let payloads = replies(&[1, 2, 3, 4, 5]);
        let mut stats = Stats::default();
        let outcome = send_all(
            scripted(vec![Ok(2), Ok(1), Ok(5)]),
            &as_replies(&payloads),
            &mut stats,
        );
        assert_eq!(
            outcome,
            SendOutcome {
                handled: 5,
                would_block: false
            }
        );
        assert_eq!(stats.udp_datagrams_out, 5);
        assert_eq!(stats.udp_bytes_out, 15);
    }

    #[test]
    fn an_error_drops_one_reply_and_would_block_keeps_the_rest() {
        let payloads = replies(&[1, 2, 3, 4, 5]);
        let mut stats = Stats::default();
        let script = vec![
            Ok(1),
            Err(io::Error::from_raw_os_error(nix::libc::EMSGSIZE)),
            Err(io::ErrorKind::Interrupted.into()),
            Ok(1),
            Err(io::ErrorKind::WouldBlock.into()),
        ];
        let outcome = send_all(scripted(script), &as_replies(&payloads), &mut stats);
        assert_eq!(
            outcome,
            SendOutcome {
                handled: 3,
                would_block: true
            }
        );
        assert_eq!(stats.udp_datagrams_out, 2);
        assert_eq!(stats.udp_bytes_out, 1 + 3);
        assert_eq!(stats.udp_dropped_send_error, 1);
    }

    #[test]
    fn a_short_send_counts_as_failed_not_echoed() {
        let payloads = replies(&[10]);
        let mut stats = Stats::default();
        let short = |_: &[Reply<'_>]| {
            Ok(Sent {
                count: 1,
                short: 1,
                bytes: 0,
            })
        };
        let outcome = send_all(short, &as_replies(&payloads), &mut stats);
        assert_eq!(outcome.handled, 1);
        assert_eq!(
            (stats.udp_datagrams_out, stats.udp_dropped_send_error),
            (0, 1)
        );
    }

    /// An endpoint on loopback answering with `kind`, and a client socket for it.
    fn endpoint_serving(kind: crate::service::ServiceKind) -> (UdpEndpoint, std::net::UdpSocket) {
        let socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let answers = DatagramAnswers::new(kind, None);
        let endpoint = UdpEndpoint::new(socket, Some(answers), 8, LoopGuard::Auto).unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        (endpoint, client)
    }

    /// Drives `endpoint` (bounded: a second or so) until it has received `count` datagrams.
    fn drive_until_received(endpoint: &mut UdpEndpoint, count: u64, stats: &mut Stats) {
        let poll = mio::Poll::new().unwrap();
        for _ in 0..1_000 {
            if stats.udp_datagrams_in == count {
                return;
            }
            endpoint.on_readiness(Readiness::READABLE);
            endpoint.drive(poll.registry(), 64, Instant::now(), stats);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A service other than echo, through a real socket: replies of its own bytes, replies
    /// equal to their request, and silence, in the order the requests came, each counted.
    #[test]
    fn a_service_decides_the_bytes_of_each_reply() {
        use crate::service::{Output, Service, ServiceKind};
        struct Reverse;
        impl Service for Reverse {
            fn on_input(&mut self, _input: &[u8], _out: &mut Output<'_>) {}
            fn on_datagram(&mut self, request: &[u8], out: &mut Output<'_>) -> bool {
                match request {
                    b"quiet" => return false,
                    b"same" => out.write(request),
                    bytes => out.write(&bytes.iter().rev().copied().collect::<Vec<u8>>()),
                }
                true
            }
        }
        let kind = ServiceKind::custom("reverse", || Box::new(Reverse));
        let (mut endpoint, client) = endpoint_serving(kind);
        for request in [&b"abc"[..], b"quiet", b"same", b"xy"] {
            client.send_to(request, endpoint.local_addr()).unwrap();
        }
        let mut stats = Stats::default();
        drive_until_received(&mut endpoint, 4, &mut stats);
        let mut buf = [0u8; 16];
        for want in [&b"cba"[..], b"same", b"yx"] {
            let (len, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..len], from), (want, endpoint.local_addr()));
        }
        assert_eq!((stats.udp_datagrams_in, stats.udp_datagrams_out), (4, 3));
        assert_eq!((stats.udp_dropped, stats.udp_dropped_unanswered), (1, 1));
    }

    /// A reply longer than a datagram is not sent (counted as unanswered), and the memory it
    /// took is not kept once the next batch comes.
    #[test]
    fn an_oversized_reply_is_dropped_and_its_memory_given_back() {
        use crate::service::{Output, Service, ServiceKind};
        struct Flood;
        impl Service for Flood {
            fn on_input(&mut self, input: &[u8], out: &mut Output<'_>) {
                match input {
                    b"flood" => out.write(&vec![0; 4 << 20]),
                    other => out.write(other),
                }
            }
        }
        let kind = ServiceKind::custom("flood", || Box::new(Flood));
        let (mut endpoint, client) = endpoint_serving(kind);
        let mut stats = Stats::default();
        for (request, datagrams_in) in [(&b"flood"[..], 1), (b"small", 2)] {
            client.send_to(request, endpoint.local_addr()).unwrap();
            drive_until_received(&mut endpoint, datagrams_in, &mut stats);
        }
        let mut buf = [0u8; 16];
        let (len, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"small", "the flood got no reply");
        assert_eq!(stats.udp_dropped_unanswered, 1);
        assert!(endpoint.written.capacity() <= MAX_BATCH_REPLIES);
    }

    #[test]
    fn mapped_peers_become_ipv4_and_scope_ids_stay() {
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:5000".parse().unwrap();
        assert_eq!(canonical_peer(mapped), "10.0.0.1:5000".parse().unwrap());
        let scoped = SocketAddr::V6(std::net::SocketAddrV6::new(
            "fe80::1".parse().unwrap(),
            5000,
            0,
            3,
        ));
        assert_eq!(canonical_peer(scoped), scoped);
    }
}
