//! UDP mode: datagrams with sequence numbers, checked for corruption, loss, duplication and
//! reordering. [`SeqTracker`] is the sans-IO bookkeeping of one socket; `run` is the
//! thread's loop over its sockets.
//!
//! Datagram layout: `seq` (u64, little endian), then payload bytes from the pattern keyed by
//! (socket key, seq). Its length is also a function of (socket key, seq), so the receiver
//! can check the whole datagram without keeping a copy: a corrupted sequence number shows
//! up as a payload or length mismatch.
//!
//! Pacing: with `--rate`, an open-loop timetable per thread (like TCP rate mode); otherwise
//! a window of outstanding datagrams per socket. A datagram unanswered for the loss timeout
//! frees its window slot (UDP may lose it); if it arrives later it still counts as received,
//! just without a latency sample. Loss is final only at the end: `sent - received` after the
//! drain. Each socket is `connect()`ed, so the kernel filters out datagrams from any other
//! address and reports ICMP port-unreachable as `ECONNREFUSED` (counted as connect errors).
//!
//! Syscalls: the generator must cost less per datagram than the server it measures, or it
//! measures itself. So each socket is read with `recvmmsg` (a batch that comes back short has
//! drained the socket, so no extra call meets `EAGAIN`: one call per echo in ping-pong instead
//! of two), and writable interest is registered only while a socket's send buffer is full (on
//! Linux every datagram sent frees room, so permanent writable interest queues an epoll event
//! per send).

use super::options::{Options, SizeSpec, UDP_HEADER};
use super::pacer::Pacer;
use super::payload::{derive_key, Pattern};
use super::schedule::Schedule;
use super::stats::Stats;
use super::{Plan, Shared, INTERRUPTED_DRAIN, STOP_CHECK};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Registry, Token};
use nix::sys::socket::{self, MsgFlags, MultiHeaders, SockaddrStorage};
use std::io::IoSliceMut;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Large enough for the largest UDP payload, so nothing is silently truncated.
const BUF: usize = 64 * 1024;
/// Datagrams per `recvmmsg`: more than ping-pong's one, few enough that the receive slots
/// (`RECV_BATCH` x [`BUF`]) stay small.
const RECV_BATCH: usize = 8;
/// How often sockets are checked for datagrams past the loss timeout.
const EXPIRE_SCAN: Duration = Duration::from_millis(10);
/// Rate mode: in-flight datagrams per socket we keep send times for.
const RATE_RING: usize = 4096;
/// Salt so that datagram sizes and payload bytes come from independent streams.
const SIZE_SALT: u64 = 0x0da7_a6e5_1ce5_0001;

/// A datagram that cannot be the echo of one we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt;

#[derive(Debug, Clone, Copy)]
struct Slot {
    seq: u64,
    intended: Instant,
    sent: Instant,
    /// Sent, not yet received nor expired.
    live: bool,
}

/// Sequence bookkeeping of one UDP socket.
#[derive(Debug)]
pub struct SeqTracker {
    key: u64,
    size: SizeSpec,
    next_seq: u64,
    /// One bit per sequence number ever sent: received yet? Grows with the run (1 bit per
    /// datagram, amortised doubling), which makes duplicate detection exact.
    seen: Vec<u64>,
    max_seen: Option<u64>,
    /// Send times of the most recent datagrams, indexed by `seq % len`.
    ring: Vec<Slot>,
    /// Every sequence number below this one is received or expired.
    oldest: u64,
    outstanding: usize,
    /// Datagrams sent, distinct datagrams received (for the loss count).
    sent: u64,
    received: u64,
}

impl SeqTracker {
    /// A tracker for the socket with payload key `key`, keeping send times for up to
    /// `ring` datagrams in flight (rounded up to a power of two).
    pub fn new(key: u64, size: SizeSpec, ring: usize, now: Instant) -> SeqTracker {
        let n = ring.max(2).next_power_of_two();
        SeqTracker {
            key,
            size,
            next_seq: 0,
            seen: Vec::new(),
            max_seen: None,
            ring: vec![
                Slot {
                    seq: u64::MAX,
                    intended: now,
                    sent: now,
                    live: false,
                };
                n
            ],
            oldest: 0,
            outstanding: 0,
            sent: 0,
            received: 0,
        }
    }

    /// Datagrams sent and not yet received nor expired.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Sent minus distinct received: the loss, once the drain is over.
    pub fn unanswered(&self) -> u64 {
        self.sent - self.received
    }

    /// False when the next datagram would overwrite the send time of one still in flight.
    pub fn can_send(&self) -> bool {
        self.next_seq - self.oldest < self.ring.len() as u64
    }

    fn datagram_len(&self, seq: u64) -> usize {
        self.size.pick(derive_key(self.key ^ SIZE_SALT, seq))
    }

    /// Writes the next datagram into `buf` (at least `BUF` bytes) and returns its length.
    pub fn fill_next(&self, buf: &mut [u8]) -> usize {
        let seq = self.next_seq;
        let len = self.datagram_len(seq);
        buf[..UDP_HEADER].copy_from_slice(&seq.to_le_bytes());
        Pattern::new(derive_key(self.key, seq)).fill(0, &mut buf[UDP_HEADER..len]);
        len
    }

    /// The datagram from [`fill_next`](Self::fill_next) went out at `now`.
    pub fn on_sent(&mut self, intended: Instant, now: Instant) {
        let seq = self.next_seq;
        let word = (seq / 64) as usize;
        if word >= self.seen.len() {
            self.seen.push(0);
        }
        let mask = self.ring.len() as u64 - 1;
        self.ring[(seq & mask) as usize] = Slot {
            seq,
            intended,
            sent: now,
            live: true,
        };
        self.next_seq += 1;
        self.outstanding += 1;
        self.sent += 1;
    }

    /// Checks one echoed datagram received at `now` and records it in `stats`.
    pub fn on_datagram(
        &mut self,
        data: &[u8],
        now: Instant,
        stats: &mut Stats,
    ) -> Result<(), Corrupt> {
        let Some(header) = data.first_chunk::<UDP_HEADER>() else {
            return Err(Corrupt);
        };
        let seq = u64::from_le_bytes(*header);
        if seq >= self.next_seq || data.len() != self.datagram_len(seq) {
            return Err(Corrupt);
        }
        if Pattern::new(derive_key(self.key, seq))
            .verify(0, &data[UDP_HEADER..])
            .is_err()
        {
            return Err(Corrupt);
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen[word] & bit != 0 {
            stats.udp.duplicates += 1;
            return Ok(());
        }
        self.seen[word] |= bit;
        self.received += 1;
        stats.udp.received += 1;
        match self.max_seen {
            Some(max) if seq < max => stats.udp.reordered += 1,
            _ => self.max_seen = Some(seq),
        }
        let mask = self.ring.len() as u64 - 1;
        let slot = &mut self.ring[(seq & mask) as usize];
        if slot.seq == seq && slot.live {
            slot.live = false;
            self.outstanding -= 1;
            stats.round_trip(slot.intended, slot.sent, now, data.len() as u64);
        }
        self.advance_oldest();
        Ok(())
    }

    /// Frees the window slots of datagrams unanswered for `timeout`.
    pub fn expire(&mut self, now: Instant, timeout: Duration) {
        let mask = self.ring.len() as u64 - 1;
        while self.oldest < self.next_seq {
            let slot = &mut self.ring[(self.oldest & mask) as usize];
            if slot.live {
                if now.saturating_duration_since(slot.sent) < timeout {
                    break;
                }
                slot.live = false;
                self.outstanding -= 1;
            }
            self.oldest += 1;
        }
    }

    fn advance_oldest(&mut self) {
        let mask = self.ring.len() as u64 - 1;
        while self.oldest < self.next_seq && !self.ring[(self.oldest & mask) as usize].live {
            self.oldest += 1;
        }
    }
}

struct Sock {
    sock: UdpSocket,
    token: Token,
    tracker: SeqTracker,
    /// Assumed until a send would block; writable interest is registered only then.
    writable: bool,
}

impl Sock {
    /// Registers writable interest exactly while the socket is known to be full.
    fn watch_writable(&mut self, registry: &Registry) {
        let interest = match self.writable {
            true => Interest::READABLE,
            false => Interest::READABLE | Interest::WRITABLE,
        };
        if let Err(e) = registry.reregister(&mut self.sock, self.token, interest) {
            // Without writable interest the socket is retried on its next readable event.
            log::debug!("udp: cannot change poll interest: {e}");
        }
    }
}

/// Receive slots and `mmsghdr`s for one thread's `recvmmsg` calls.
struct RecvBatch {
    slots: Vec<u8>,
    headers: MultiHeaders<SockaddrStorage>,
}

impl RecvBatch {
    fn new() -> RecvBatch {
        RecvBatch {
            slots: vec![0; RECV_BATCH * BUF],
            headers: MultiHeaders::preallocate(RECV_BATCH, None),
        }
    }

    /// Reads up to [`RECV_BATCH`] datagrams from `sock` in one call and hands each one's bytes
    /// to `each`. Returns how many were read; fewer than [`RECV_BATCH`] means the socket is
    /// drained.
    fn recv(&mut self, sock: &UdpSocket, mut each: impl FnMut(&[u8])) -> io::Result<usize> {
        let mut lengths = [0usize; RECV_BATCH];
        let count = {
            let mut chunks = self.slots.chunks_exact_mut(BUF);
            let mut iovs: [[IoSliceMut<'_>; 1]; RECV_BATCH] =
                std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
            let results = socket::recvmmsg(
                sock.as_raw_fd(),
                &mut self.headers,
                iovs.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )?;
            let mut count = 0;
            for (length, msg) in lengths.iter_mut().zip(results) {
                *length = msg.bytes;
                count += 1;
            }
            count
        };
        for (slot, &length) in self.slots.chunks_exact(BUF).zip(&lengths[..count]) {
            each(&slot[..length.min(BUF)]);
        }
        Ok(count)
    }
}

/// Runs one UDP worker thread to completion and returns what it measured.
pub(crate) fn run(
    opts: &Options,
    plan: &Plan,
    window: usize,
    shared: &Shared,
) -> io::Result<Stats> {
    let mut poll = Poll::new()?;
    let mut pacer = match plan.rate {
        Some(_) => Pacer::precise(&poll, opts.spin)?,
        None => Pacer::coarse(),
    };
    let mut ticker = shared.ticker(plan.start);
    let mut stats = Stats::new(plan.measure_start);
    let mut recv_batch = RecvBatch::new();
    let mut wbuf = vec![0u8; BUF];
    let ring = if plan.rate.is_some() {
        RATE_RING
    } else {
        window
    };
    let unspecified = match opts.target.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let mut socks = Vec::with_capacity(plan.connections);
    for i in 0..plan.connections {
        let started = Instant::now();
        let opened = UdpSocket::bind(SocketAddr::new(unspecified, 0)).and_then(|mut s| {
            s.connect(opts.target)?;
            poll.registry()
                .register(&mut s, Token(socks.len()), Interest::READABLE)?;
            Ok(s)
        });
        match opened {
            Ok(sock) => {
                stats.connected(started.elapsed());
                let key = derive_key(opts.seed, plan.first_id + i as u64);
                socks.push(Sock {
                    sock,
                    token: Token(socks.len()),
                    tracker: SeqTracker::new(key, opts.size, ring, started),
                    writable: true,
                });
            }
            Err(e) => stats.connect_failed(&e),
        }
    }

    if socks.is_empty() {
        if let Some(t) = &mut ticker {
            t.finish(Instant::now(), &mut stats);
        }
        return Ok(stats);
    }
    let mut sched = plan.rate.map(|r| Schedule::new(plan.start, r));
    let mut rr = 0usize;
    let mut draining: Option<Instant> = None;
    let mut end = plan.end;
    let mut next_expire = plan.start;
    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        if let Some(t) = &mut ticker {
            t.tick(now, &mut stats);
        }
        let interrupted = draining.is_none() && now < end && shared.stop.load(Relaxed);
        if interrupted {
            end = now;
            stats.stopped_at = Some(now);
        }
        if now >= next_expire {
            next_expire = now + EXPIRE_SCAN;
            for s in &mut socks {
                s.tracker.expire(now, opts.loss_timeout);
            }
            if let Some(deadline) = draining {
                if now >= deadline || socks.iter().all(|s| s.tracker.outstanding() == 0) {
                    break;
                }
            }
        }
        let mut rate_blocked = false;
        if draining.is_none() {
            if let Some(sched) = &mut sched {
                // Open loop: every datagram due goes out now, round-robin, stamped with its
                // intended time; a socket that cannot take it passes it to the next.
                while sched.is_due(now) && sched.next_due() < end {
                    let mut sent = false;
                    for _ in 0..socks.len() {
                        rr = (rr + 1) % socks.len();
                        let s = &mut socks[rr];
                        if send_one(s, &mut wbuf, sched.next_due(), now, &mut stats) {
                            sent = true;
                            break;
                        }
                        if !s.writable {
                            s.watch_writable(poll.registry());
                        }
                    }
                    if !sent {
                        rate_blocked = true;
                        break;
                    }
                    if now.saturating_duration_since(sched.next_due()) > Duration::from_millis(1) {
                        stats.late_sends += 1;
                    }
                    sched.advance();
                }
            } else if now < end {
                for s in &mut socks {
                    fill_window(s, window, &mut wbuf, now, &mut stats);
                    if !s.writable {
                        s.watch_writable(poll.registry());
                    }
                }
            }
            // After the timetable's last slot went out (above), stop sending.
            if now >= end {
                let wait = if interrupted {
                    opts.drain_timeout.min(INTERRUPTED_DRAIN)
                } else {
                    opts.drain_timeout
                };
                draining = Some(now + wait);
            }
        }

        let mut until = next_expire.min(draining.unwrap_or(end.min(now + STOP_CHECK)));
        if let (Some(s), false, None) = (&sched, rate_blocked, draining) {
            until = until.min(s.next_due());
        }
        if let Some(t) = &ticker {
            until = until.min(t.next_due());
        }
        pacer.poll(&mut poll, &mut events, until)?;
        for event in events.iter() {
            let now = Instant::now();
            let Some(s) = socks.get_mut(event.token().0) else {
                continue;
            };
            if event.is_writable() && !s.writable {
                s.writable = true;
                s.watch_writable(poll.registry());
            }
            if event.is_readable() || event.is_error() {
                receive_all(s, &mut recv_batch, now, &mut stats);
            }
            if draining.is_none() && sched.is_none() {
                fill_window(s, window, &mut wbuf, now, &mut stats);
                if !s.writable {
                    s.watch_writable(poll.registry());
                }
            }
        }
    }
    for s in &socks {
        stats.udp.lost += s.tracker.unanswered();
    }
    if let Some(t) = &mut ticker {
        t.finish(Instant::now(), &mut stats);
    }
    Ok(stats)
}

/// Window mode: sends until the socket has `window` datagrams outstanding.
fn fill_window(s: &mut Sock, window: usize, wbuf: &mut [u8], now: Instant, stats: &mut Stats) {
    while s.tracker.outstanding() < window && send_one(s, wbuf, now, now, stats) {}
}

/// Sends the socket's next datagram; false if the socket cannot take it now.
fn send_one(
    s: &mut Sock,
    wbuf: &mut [u8],
    intended: Instant,
    now: Instant,
    stats: &mut Stats,
) -> bool {
    if !s.writable || !s.tracker.can_send() {
        return false;
    }
    let len = s.tracker.fill_next(wbuf);
    match s.sock.send(&wbuf[..len]) {
        Ok(n) => {
            s.tracker.on_sent(intended, now);
            stats.bytes_sent += n as u64;
            stats.udp.sent += 1;
            true
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => {
            s.writable = false;
            false
        }
        // An ICMP port-unreachable for an earlier datagram, reported on this call: nothing
        // listens at the target. This datagram was not sent.
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            stats.connect_failed(&e);
            false
        }
        Err(e) => {
            log::debug!("udp send: {e}");
            stats.io_failed(&e);
            false
        }
    }
}

/// Receives until the socket is drained, checking each datagram.
fn receive_all(s: &mut Sock, batch: &mut RecvBatch, now: Instant, stats: &mut Stats) {
    let tracker = &mut s.tracker;
    loop {
        let read = batch.recv(&s.sock, |data| {
            stats.bytes_received += data.len() as u64;
            if tracker.on_datagram(data, now, stats).is_err() {
                log::warn!("corrupted or unexpected datagram of {} bytes", data.len());
                stats.mismatch();
            }
        });
        match read {
            Ok(count) if count < RECV_BATCH => return,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // The error is consumed by this call; the socket stays usable.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => stats.connect_failed(&e),
            Err(e) => {
                log::debug!("udp recv: {e}");
                stats.io_failed(&e);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(window: usize) -> (SeqTracker, Stats, Instant, Vec<u8>) {
        let t0 = Instant::now();
        let t = SeqTracker::new(77, SizeSpec::Range { min: 8, max: 100 }, window, t0);
        (t, Stats::new(t0), t0, vec![0; BUF])
    }

    /// Sends one datagram and returns its bytes.
    fn send(t: &mut SeqTracker, buf: &mut [u8], now: Instant) -> Vec<u8> {
        let n = t.fill_next(buf);
        t.on_sent(now, now);
        buf[..n].to_vec()
    }

    #[test]
    fn in_order_echo_is_clean() {
        let (mut t, mut stats, t0, mut buf) = tracker(8);
        for _ in 0..100 {
            let d = send(&mut t, &mut buf, t0);
            assert_eq!(t.on_datagram(&d, t0, &mut stats), Ok(()));
        }
        assert_eq!((stats.udp.received, stats.requests), (100, 100));
        assert_eq!((stats.udp.duplicates, stats.udp.reordered), (0, 0));
        assert_eq!((t.outstanding(), t.unanswered()), (0, 0));
    }

    #[test]
    fn loss_duplicates_and_reordering_are_counted() {
        let (mut t, mut stats, t0, mut buf) = tracker(8);
        let d: Vec<Vec<u8>> = (0..4).map(|_| send(&mut t, &mut buf, t0)).collect();
        for i in [1, 0, 0, 3] {
            t.on_datagram(&d[i], t0, &mut stats).unwrap();
        }
        assert_eq!(stats.udp.received, 3);
        assert_eq!(stats.udp.duplicates, 1);
        assert_eq!(stats.udp.reordered, 1);
        assert_eq!(t.unanswered(), 1, "datagram 2 was lost");
        assert_eq!(t.outstanding(), 1);
        t.expire(t0 + Duration::from_secs(1), Duration::from_millis(500));
        assert_eq!(t.outstanding(), 0, "expiry frees the window slot");
        // A late arrival still counts as received, without a latency sample.
        t.on_datagram(&d[2], t0, &mut stats).unwrap();
        assert_eq!((t.unanswered(), stats.requests), (0, 3));
    }

    #[test]
    fn corruption_is_caught() {
        let (mut t, mut stats, t0, mut buf) = tracker(8);
        let d = send(&mut t, &mut buf, t0);
        let mut flipped = d.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(t.on_datagram(&flipped, t0, &mut stats), Err(Corrupt));
        assert_eq!(
            t.on_datagram(&d[..d.len() - 1], t0, &mut stats),
            Err(Corrupt)
        );
        let mut bad_seq = d.clone();
        bad_seq[0] = 9;
        assert_eq!(
            t.on_datagram(&bad_seq, t0, &mut stats),
            Err(Corrupt),
            "never sent"
        );
        assert_eq!(t.on_datagram(b"abc", t0, &mut stats), Err(Corrupt));
        assert_eq!(t.on_datagram(&d, t0, &mut stats), Ok(()));
    }

    #[test]
    fn the_ring_bounds_the_datagrams_in_flight() {
        let (mut t, _, t0, mut buf) = tracker(4);
        for _ in 0..4 {
            assert!(t.can_send());
            send(&mut t, &mut buf, t0);
        }
        assert!(!t.can_send());
        t.expire(t0 + Duration::from_secs(1), Duration::from_millis(1));
        assert!(t.can_send());
    }
}
