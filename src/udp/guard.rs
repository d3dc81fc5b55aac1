//! Which datagrams get no reply, and why: the UDP reflection and loop guards, without sockets.
//!
//! Echo on UDP is a classic reflection amplifier and loop partner, so three guards stand
//! before every reply (each refusal has its own counter):
//!
//! 1. **Privileged source port** (0 or below 1024): echo, chargen and daytime live there; no
//!    echo-chargen loop (FreeBSD's and NetBSD's inetd refuse the same).
//! 2. **Our own address.** A datagram "from" this very socket would make us echo ourselves
//!    forever. Addresses are compared in canonical form (a v4-mapped `::ffff:127.0.0.1` is
//!    `127.0.0.1`). On a specific bind, the own address is the bound one. On a wildcard bind
//!    the socket *is* every local address with its port, so a source with our port is our own
//!    when it equals the datagram's destination (from `IP_PKTINFO`), is a loopback address
//!    (all of 127.0.0.0/8 and `::1` are local), or is in the machine's interface-address list
//!    ([`LocalAddresses`], fetched only when such a datagram arrives and at most once a second).
//!    A source with another port is never this socket, so legitimate traffic costs one port
//!    comparison.
//! 3. **Echo loops with another server** ([`LoopBreaker`]), for the peers that
//!    [`LoopGuard`](crate::LoopGuard) names (by default every peer beyond loopback). Two echo
//!    servers that are sent one forged datagram bounce it forever; neither sees its own
//!    address. What marks the loop is that the partner sends back exactly the datagram we
//!    just sent it, again and again. Each reply leaves a fingerprint of (peer, bytes) in a
//!    small table; a datagram from that peer with the same fingerprint is a *bounce*, and the
//!    [`LOOP_BOUNCES`]th bounce in a row (each within [`LOOP_WINDOW_MS`] of the last) is
//!    refused, which ends the loop: one forged datagram between two exposed servers dies
//!    after 1,024 round trips (2,049 datagrams on the wire, 9 ms, in a network namespace,
//!    release build; `tests/udp_loops.rs` prints the figure).
//!
//!    Real clients mostly send new data (a sequence number, a timestamp: `echoloop-bench`,
//!    `ping`), so they never bounce. A client that sends the *same* bytes again and again,
//!    faster than once a second, is on the wire indistinguishable from a loop partner (a
//!    burst of identical datagrams is also what a loop of several forged copies looks like:
//!    each refusal is a datagram the peer did not get back, whoever it is), and loses one
//!    datagram in [`LOOP_BOUNCES`] + 1 (0.098%), counted in `udp_dropped_loop` and logged
//!    once per peer per [`REFUSAL_LOG_PERIOD_MS`]. The threshold is that trade-off: at 64 a
//!    single loop died in 1.75 ms, but such a client lost 1.5%; at 1,024 it loses under
//!    0.1%, and the price is paid by loops: one forged datagram makes 2,048 datagrams before
//!    it dies instead of 128, and a burst of forged copies dies within a second only up to
//!    about 100 copies instead of 700 (10 died in 52 ms; a larger burst still dies, a copy
//!    per 1,024 bounces).
//!    Loopback peers are not watched at all: a loopback source cannot arrive from another
//!    host, and forging one takes privileges on this machine.
//!
//!    A per-source token bucket was considered and not used: one `echoloop-bench udp` socket
//!    at full speed sends as fast as a two-server loop bounces (both are bound by the same
//!    round trip), so no rate that spares the first stops the second; and a bucket slows a
//!    loop rather than ending it. A threshold that grows for a peer after each refusal was
//!    considered too: a loop fed by an attacker who forges one more copy after each refusal
//!    looks exactly like a client that resends after a loss, so the worst case is the cap,
//!    whatever the start; one fixed threshold says that plainly.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};

/// Why a datagram gets no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Source port 0 or below 1024.
    PrivilegedPort,
    /// The datagram came from the server's own address (a loop with ourselves).
    OwnAddress,
    /// The peer keeps sending back the datagram we just sent it (a loop with another server,
    /// or a client that repeats its payload: the two look the same).
    EchoLoop,
}

/// `ip` with a v4-mapped IPv6 address unwrapped to IPv4: the form in which to compare.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// The first two guards: decides whether `peer` may get a reply from a socket bound to `bound`
/// that received the datagram at `destination` (from pktinfo, when known). `is_local` answers
/// whether an address belongs to this machine; it is asked only on a wildcard bind, for a
/// source that has our port and is neither the destination nor a loopback address.
pub(crate) fn refuse_reply(
    peer: SocketAddr,
    bound: SocketAddr,
    destination: Option<IpAddr>,
    is_local: impl FnOnce(IpAddr) -> bool,
) -> Option<Refusal> {
    if peer.port() < 1024 {
        return Some(Refusal::PrivilegedPort);
    }
    if peer.port() != bound.port() {
        return None; // another port is never this socket
    }
    let source = canonical(peer.ip());
    let bound_ip = canonical(bound.ip());
    let own = if bound_ip.is_unspecified() {
        // Linux delivers datagrams sent to 0.0.0.0 or :: locally, so those count as ours too.
        Some(source) == destination.map(canonical)
            || source.is_loopback()
            || source.is_unspecified()
            || is_local(source)
    } else {
        source == bound_ip
    };
    own.then_some(Refusal::OwnAddress)
}

/// How long the interface-address list is trusted before it is fetched again.
pub(crate) const LOCAL_ADDRESSES_TTL_MS: u64 = 1_000;

/// The machine's addresses (canonical), as last fetched, and when.
#[derive(Debug, Default)]
pub(crate) struct LocalAddresses {
    addresses: Vec<IpAddr>,
    fetched_at_ms: Option<u64>,
}

impl LocalAddresses {
    /// Whether `ip` is one of the machine's addresses. Calls `fetch` first when the list is
    /// older than [`LOCAL_ADDRESSES_TTL_MS`] (or was never fetched); a failed fetch keeps the
    /// old list.
    pub(crate) fn contains<E>(
        &mut self,
        ip: IpAddr,
        now_ms: u64,
        fetch: impl FnOnce() -> Result<Vec<IpAddr>, E>,
    ) -> bool {
        let stale = self.fetched_at_ms.map_or(true, |at| {
            now_ms.saturating_sub(at) >= LOCAL_ADDRESSES_TTL_MS
        });
        if stale {
            self.fetched_at_ms = Some(now_ms);
            if let Ok(addresses) = fetch() {
                self.addresses = addresses.into_iter().map(canonical).collect();
            }
        }
        self.addresses.contains(&canonical(ip))
    }
}

/// The bounce that is refused: this many times in a row the same datagram came back.
pub(crate) const LOOP_BOUNCES: u32 = 1_024;
/// Bounces further apart than this do not make a streak (a loop bounces within a round trip).
pub(crate) const LOOP_WINDOW_MS: u64 = 1_000;
/// Fingerprints remembered: 1,024 sets of 4 (96 KiB). Four ways per set, the stalest
/// replaced, so loops whose fingerprints share a set do not evict each other; only thousands
/// of different datagrams looping at once start to evict their own entries.
const SETS: usize = 1_024;
const WAYS: usize = 4;

/// A (peer, bytes) fingerprint: 64 bits of a keyed hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint(u64);

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    fingerprint: u64,
    /// When we last sent this datagram to this peer, or it last bounced back.
    last_ms: u64,
    bounces: u32,
}

/// The third guard: recognises a partner that sends back exactly what we sent it. A small
/// set-associative table: an eviction only forgets an entry (a loop then needs a few more
/// bounces), it never refuses a datagram that did not bounce.
#[derive(Debug)]
pub(crate) struct LoopBreaker {
    table: Box<[Entry]>,
    /// Keys the hash so that a remote sender cannot aim at a slot.
    seed: u64,
}

impl Default for LoopBreaker {
    fn default() -> Self {
        LoopBreaker {
            table: vec![Entry::default(); SETS * WAYS].into_boxed_slice(),
            seed: RandomState::new().hash_one(0x6563_686f_6c6f_6f70_u64),
        }
    }
}

impl LoopBreaker {
    /// Checks a datagram from `peer` before answering it. `Err(EchoLoop)` refuses it (and
    /// forgets the streak, so a loop ends here); `Ok` gives its fingerprint, which an echo
    /// passes to [`LoopBreaker::record`] unchanged.
    pub(crate) fn check(
        &mut self,
        peer: SocketAddr,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Fingerprint, Refusal> {
        let fingerprint = self.fingerprint(peer, bytes);
        let set = self.set(fingerprint);
        let Some(entry) = set.iter_mut().find(|e| e.fingerprint == fingerprint.0) else {
            return Ok(fingerprint);
        };
        if now_ms.saturating_sub(entry.last_ms) <= LOOP_WINDOW_MS {
            entry.bounces += 1;
            entry.last_ms = now_ms;
            if entry.bounces >= LOOP_BOUNCES {
                *entry = Entry::default();
                return Err(Refusal::EchoLoop);
            }
        } else {
            entry.bounces = 0; // too late to be a bounce: a new streak starts at the reply
        }
        Ok(fingerprint)
    }

    /// Notes a reply about to be sent (its fingerprint from [`LoopBreaker::fingerprint`], or
    /// from `check` when the reply repeats the request).
    pub(crate) fn record(&mut self, fingerprint: Fingerprint, now_ms: u64) {
        let set = self.set(fingerprint);
        if let Some(entry) = set.iter_mut().find(|e| e.fingerprint == fingerprint.0) {
            entry.last_ms = now_ms;
            return;
        }
        // An empty way has last_ms 0 and fingerprint 0: the stalest way is replaced.
        if let Some(stalest) = set
            .iter_mut()
            .min_by_key(|e| (e.fingerprint != 0, e.last_ms))
        {
            *stalest = Entry {
                fingerprint: fingerprint.0,
                last_ms: now_ms,
                bounces: 0,
            };
        }
    }

    fn set(&mut self, fingerprint: Fingerprint) -> &mut [Entry] {
        let start = (fingerprint.0 as usize & (SETS - 1)) * WAYS;
        &mut self.table[start..start + WAYS]
    }

    /// A keyed 64-bit hash of the peer (canonical) and the whole payload: a multiply-rotate
    /// over 8-byte words, far cheaper than the syscalls around it even at 64 KiB.
    pub(crate) fn fingerprint(&self, peer: SocketAddr, bytes: &[u8]) -> Fingerprint {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let mix = |h: u64, word: u64| (h ^ word).wrapping_mul(K).rotate_left(31);
        let mut h = mix(self.seed, peer.port() as u64 ^ ((bytes.len() as u64) << 16));
        h = match canonical(peer.ip()) {
            IpAddr::V4(v4) => mix(h, u32::from(v4) as u64),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                mix(mix(h, bits as u64), (bits >> 64) as u64)
            }
        };
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut array = [0u8; 8];
            array.copy_from_slice(word);
            h = mix(h, u64::from_le_bytes(array));
        }
        let mut tail = [0u8; 8];
        tail[..words.remainder().len()].copy_from_slice(words.remainder());
        h = mix(h, u64::from_le_bytes(tail));
        // Final avalanche (from splitmix64), so the low bits that pick the slot depend on all.
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Fingerprint((h ^ (h >> 31)) | 1) // never 0, the empty entry's value
    }
}

/// A peer refused as a loop partner is logged at most once per this period.
pub(crate) const REFUSAL_LOG_PERIOD_MS: u64 = 10_000;
/// Peers logged per period at most; refusals from further peers are only counted, so a
/// flood of peers cannot flood the log.
const LOGGED_PEERS: usize = 16;

/// Decides which loop refusals are logged: the first from each peer in each period of
/// [`REFUSAL_LOG_PERIOD_MS`], for at most [`LOGGED_PEERS`] peers a period. (A streak is
/// refused once per [`LOOP_BOUNCES`] bounces, so a client that repeats its payload would
/// otherwise log many times a second.)
#[derive(Debug, Default)]
pub(crate) struct RefusalLog {
    period_start_ms: u64,
    logged: Vec<SocketAddr>,
}

impl RefusalLog {
    /// Whether the refusal of a datagram from `peer` at `now_ms` should be logged.
    pub(crate) fn should_log(&mut self, peer: SocketAddr, now_ms: u64) -> bool {
        if now_ms.saturating_sub(self.period_start_ms) >= REFUSAL_LOG_PERIOD_MS {
            self.period_start_ms = now_ms;
            self.logged.clear();
        }
        if self.logged.contains(&peer) || self.logged.len() >= LOGGED_PEERS {
            return false;
        }
        self.logged.push(peer);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn never_local(_: IpAddr) -> bool {
        false
    }

    #[test]
    fn privileged_and_zero_source_ports_get_no_reply() {
        let bound = addr("127.0.0.1:7007");
        for port in [0, 19, 1023] {
            let peer = SocketAddr::new(bound.ip(), port);
            assert_eq!(
                refuse_reply(peer, bound, None, never_local),
                Some(Refusal::PrivilegedPort)
            );
        }
        assert_eq!(
            refuse_reply(addr("127.0.0.1:1024"), bound, None, never_local),
            None
        );
    }

    #[test]
    fn own_address_on_a_specific_bind_is_compared_canonically() {
        let bound = addr("127.0.0.1:7007");
        let own = Some(Refusal::OwnAddress);
        assert_eq!(refuse_reply(bound, bound, None, never_local), own);
        assert_eq!(
            refuse_reply(addr("[::ffff:127.0.0.1]:7007"), bound, None, never_local),
            own
        );
        let mapped = addr("[::ffff:127.0.0.1]:7007");
        assert_eq!(refuse_reply(bound, mapped, None, never_local), own);
        // Another address with our port is another socket: the loop breaker's business.
        assert_eq!(
            refuse_reply(addr("127.0.0.2:7007"), bound, None, never_local),
            None
        );
        let v6 = addr("[::1]:7007");
        assert_eq!(refuse_reply(v6, v6, None, never_local), own);
    }

    /// The first loop: `--bind ::`, a datagram "from" 127.0.0.1:PORT arrives as
    /// `::ffff:127.0.0.1`.
    #[test]
    fn wildcard_bind_knows_a_v4_mapped_loopback_source() {
        let any6 = addr("[::]:7007");
        let dst = Some("::ffff:127.0.0.1".parse().unwrap());
        assert_eq!(
            refuse_reply(addr("[::ffff:127.0.0.1]:7007"), any6, dst, never_local),
            Some(Refusal::OwnAddress)
        );
        assert_eq!(
            refuse_reply(addr("[::ffff:127.0.0.1]:7008"), any6, dst, never_local),
            None
        );
    }

    /// The second loop: `--bind 0.0.0.0`, a datagram "from" another local address to
    /// itself: the source equals the destination pktinfo reports, or is in the list.
    #[test]
    fn wildcard_bind_knows_every_local_address() {
        let any = addr("0.0.0.0:7007");
        let other: IpAddr = "10.1.2.3".parse().unwrap();
        let from_other = SocketAddr::new(other, 7007);
        assert_eq!(
            refuse_reply(from_other, any, Some(other), never_local),
            Some(Refusal::OwnAddress)
        );
        // Sent to 127.0.0.1 "from" 10.1.2.3: only the address list knows 10.1.2.3 is ours.
        let to_loopback = Some("127.0.0.1".parse().unwrap());
        assert_eq!(
            refuse_reply(from_other, any, to_loopback, |ip| ip == other),
            Some(Refusal::OwnAddress)
        );
        assert_eq!(
            refuse_reply(from_other, any, to_loopback, never_local),
            None
        );
        for loopback in ["127.0.0.1:7007", "127.9.9.9:7007", "0.0.0.0:7007"] {
            assert_eq!(
                refuse_reply(addr(loopback), any, to_loopback, never_local),
                Some(Refusal::OwnAddress),
                "{loopback}"
            );
        }
    }

    #[test]
    fn the_address_list_is_fetched_rarely_and_compared_canonically() {
        let mut local = LocalAddresses::default();
        let fetches = std::cell::Cell::new(0);
        let fetch = || -> Result<Vec<IpAddr>, ()> {
            fetches.set(fetches.get() + 1);
            Ok(vec!["::ffff:10.0.0.1".parse().unwrap()])
        };
        assert!(local.contains("10.0.0.1".parse().unwrap(), 0, fetch));
        assert!(!local.contains("10.0.0.2".parse().unwrap(), 999, fetch));
        assert_eq!(fetches.get(), 1);
        assert!(local.contains("10.0.0.1".parse().unwrap(), 1_000, fetch));
        assert_eq!(fetches.get(), 2);
        // A failed fetch keeps what was known.
        assert!(local.contains("10.0.0.1".parse().unwrap(), 5_000, || Err(())));
    }

    /// Two servers bouncing one datagram: the one that sees it come back LOOP_BOUNCES times
    /// refuses it; the loop ends there.
    #[test]
    fn a_datagram_that_keeps_coming_back_is_refused() {
        let mut breaker = LoopBreaker::default();
        let partner = addr("127.0.0.2:7007");
        let datagram = b"forged once";
        let mut answered = 0;
        for round in 0..2 * u64::from(LOOP_BOUNCES) {
            match breaker.check(partner, datagram, round / 50) {
                Ok(fingerprint) => {
                    breaker.record(fingerprint, round / 50);
                    answered += 1;
                }
                Err(refusal) => {
                    assert_eq!(refusal, Refusal::EchoLoop);
                    break;
                }
            }
        }
        assert_eq!(answered, LOOP_BOUNCES);
    }

    /// A client that repeats one payload (ping-pong or many in flight: each datagram is one
    /// more bounce) is refused one datagram in LOOP_BOUNCES + 1: under 0.1%.
    #[test]
    fn a_repeated_payload_loses_under_a_thousandth() {
        let mut breaker = LoopBreaker::default();
        let client = addr("192.0.2.7:40000");
        let sent = 100_000u64;
        let refused = (0..sent)
            .filter(|&i| match breaker.check(client, &[7; 64], i / 100) {
                Ok(fingerprint) => {
                    breaker.record(fingerprint, i / 100);
                    false
                }
                Err(_) => true,
            })
            .count() as u64;
        assert_eq!(refused, sent / (u64::from(LOOP_BOUNCES) + 1));
        assert!(refused * 1_000 <= sent, "{refused} of {sent}");
    }

    /// A loop of several datagrams (forged in a burst) is recognised datagram by datagram.
    #[test]
    fn interleaved_loops_are_each_refused() {
        let mut breaker = LoopBreaker::default();
        let partner = addr("[::1]:9000");
        let datagrams: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 100]).collect();
        let mut alive = vec![true; datagrams.len()];
        for _round in 0..=LOOP_BOUNCES {
            for (datagram, alive) in datagrams.iter().zip(alive.iter_mut()) {
                if !*alive {
                    continue;
                }
                match breaker.check(partner, datagram, 7) {
                    Ok(fingerprint) => breaker.record(fingerprint, 7),
                    Err(_) => *alive = false,
                }
            }
        }
        assert!(alive.iter().all(|alive| !alive));
    }

    /// What real clients send: new bytes every time (a sequence number), or the same bytes
    /// slowly, or the same bytes from another socket. None of it is ever refused.
    #[test]
    fn clients_that_send_new_data_are_never_refused() {
        let mut breaker = LoopBreaker::default();
        let client = addr("127.0.0.1:40000");
        for seq in 0..100_000u64 {
            let mut datagram = [0u8; 64];
            datagram[..8].copy_from_slice(&seq.to_le_bytes());
            let fingerprint = breaker.check(client, &datagram, seq / 100).unwrap();
            breaker.record(fingerprint, seq / 100);
        }
        // The same heartbeat every 1.5 s never builds a streak.
        for beat in 0..100u64 {
            let now = beat * 1_500;
            let fingerprint = breaker.check(client, b"heartbeat", now).unwrap();
            breaker.record(fingerprint, now);
        }
        // The same bytes from many sockets: each socket is its own peer.
        for port in 2_000..3_000u16 {
            let peer = SocketAddr::new(client.ip(), port);
            let fingerprint = breaker.check(peer, b"same", 0).unwrap();
            breaker.record(fingerprint, 0);
        }
    }

    /// A client repeating its payload for a minute is refused about every 1,025 datagrams,
    /// but logged once per period; a crowd of peers logs a bounded number of lines.
    #[test]
    fn refusals_are_logged_once_per_peer_per_period() {
        let mut log = RefusalLog::default();
        let (a, b) = (addr("10.0.0.1:5000"), addr("10.0.0.2:5000"));
        let logged_a: Vec<u64> = (0..60_000u64)
            .step_by(25)
            .filter(|&now| log.should_log(a, now))
            .collect();
        assert_eq!(logged_a, [0, 10_000, 20_000, 30_000, 40_000, 50_000]);
        assert!(log.should_log(b, 59_000), "another peer has its own turn");
        assert!(!log.should_log(b, 59_001));
        let crowd = (0..1_000u16)
            .filter(|&port| log.should_log(SocketAddr::new(a.ip(), 10_000 + port), 60_000))
            .count();
        assert_eq!(crowd, LOGGED_PEERS);
    }

    #[test]
    fn fingerprints_tell_peers_and_bytes_apart_and_see_v4_mapped_as_v4() {
        let breaker = LoopBreaker::default();
        let a = addr("127.0.0.1:5000");
        let fp = |peer, bytes: &[u8]| breaker.fingerprint(peer, bytes);
        assert_eq!(fp(a, b"x"), fp(addr("[::ffff:127.0.0.1]:5000"), b"x"));
        assert_ne!(fp(a, b"x"), fp(addr("127.0.0.1:5001"), b"x"));
        assert_ne!(fp(a, b"x"), fp(a, b"y"));
        assert_ne!(fp(a, b""), fp(a, b"\0"));
        assert_ne!(fp(a, &[0; 9]), fp(a, &[0; 10]));
    }
}
