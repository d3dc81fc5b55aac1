//! UDP checks (with `--udp`): exact replies at the sizes where servers go wrong (0 bytes, one
//! Ethernet MTU and one byte over, a buffer size, the IPv4 maximum), exactly one reply per
//! request, and no reply delivered to another client's socket.

use super::compare::compare_datagram;
use super::verdict::CheckResult;
use super::Ctx;
use crate::options::MAX_UDP_PAYLOAD;
use crate::payload::{Pattern, Rng};
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// The sizes of `udp-sizes`: empty, one byte, the largest payload in a 1500-byte Ethernet
/// frame and one more, a common buffer size, and the IPv4 maximum.
const SIZES: [usize; 6] = [0, 1, 1472, 1473, 8192, MAX_UDP_PAYLOAD];
/// Sends of one datagram before it counts as unanswered (UDP may lose a datagram).
const TRIES: usize = 3;
/// How long to listen for a second reply after the first.
const DUPLICATE_WINDOW: Duration = Duration::from_millis(100);
/// Largest reply we can tell apart from a maximal one (a reply longer than any request).
const RECV_BUF: usize = 65_536;

/// A UDP socket connected to `target`, so only the target's replies reach it, with a
/// receive timeout.
fn socket(target: SocketAddr, timeout: Duration) -> io::Result<UdpSocket> {
    let local: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal address")
    } else {
        "[::]:0".parse().expect("literal address")
    };
    let sock = UdpSocket::bind(local)?;
    sock.connect(target)?;
    sock.set_read_timeout(Some(timeout))?;
    Ok(sock)
}

/// Receives one reply, `None` on timeout. A refused port (ICMP) is an error.
fn recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match sock.recv(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
        Err(e) => Err(e),
    }
}

fn reply_timeout(ctx: &Ctx) -> Duration {
    ctx.limits.io.min(Duration::from_secs(1))
}

/// `udp-sizes`: each size from its own socket; the reply must be exact and single.
pub(crate) fn sizes(ctx: &Ctx) -> CheckResult {
    let figure = format!(
        "sizes {} echoed exactly, one reply each",
        SIZES.map(|s| s.to_string()).join(", ")
    );
    for (i, &len) in SIZES.iter().enumerate() {
        if let Err(why) = one_size(ctx, i, len) {
            return CheckResult::fail("udp-sizes", figure, format!("size {len}: {why}"));
        }
    }
    CheckResult::pass("udp-sizes", figure)
}

fn one_size(ctx: &Ctx, i: usize, len: usize) -> Result<(), String> {
    let timeout = reply_timeout(ctx);
    let sock = socket(ctx.target, timeout).map_err(|e| format!("socket: {e}"))?;
    let mut request = vec![0u8; len];
    Pattern::new(ctx.key(i as u64)).fill(0, &mut request);
    let mut buf = vec![0u8; RECV_BUF];
    for _ in 0..TRIES {
        sock.send(&request).map_err(|e| format!("send: {e}"))?;
        let Some(n) = recv(&sock, &mut buf).map_err(|e| format!("no UDP echo: {e}"))? else {
            continue;
        };
        compare_datagram(&request, &buf[..n])?;
        // One request, one reply: listen a little longer for a second one.
        sock.set_read_timeout(Some(DUPLICATE_WINDOW))
            .map_err(|e| format!("socket: {e}"))?;
        if let Ok(Some(m)) = recv(&sock, &mut buf) {
            return Err(format!("a second reply ({m} bytes) to one request"));
        }
        return Ok(());
    }
    Err(format!(
        "no reply to {TRIES} sends within {:.1} s each",
        timeout.as_secs_f64()
    ))
}

/// Header of a `udp-crosstalk` datagram: the sending socket and the sequence number.
const TAG: usize = 8;

fn datagram(ctx: &Ctx, sock: u32, seq: u32, rng: &mut Rng) -> Vec<u8> {
    let len = TAG + 8 + (rng.next_u64() % 1000) as usize;
    let mut d = vec![0u8; len];
    d[..4].copy_from_slice(&sock.to_le_bytes());
    d[4..8].copy_from_slice(&seq.to_le_bytes());
    Pattern::new(ctx.key(u64::from(sock) << 32 | u64::from(seq))).fill(0, &mut d[TAG..]);
    d
}

/// `udp-crosstalk`: several sockets send in rounds (one datagram each per round); every
/// reply must be the receiving socket's own request, once. A lost datagram is counted
/// (UDP may lose), and more than 5% lost fails.
pub(crate) fn crosstalk(ctx: &Ctx) -> CheckResult {
    let (sockets, rounds) = (ctx.profile.udp_sockets, ctx.profile.udp_per_socket);
    let total = sockets * rounds;
    let figure = |lost: usize| {
        format!(
            "{sockets} sockets x {rounds} datagrams, each reply to its own sender ({lost} lost)"
        )
    };
    let timeout = reply_timeout(ctx);
    let socks: Vec<UdpSocket> = match (0..sockets).map(|_| socket(ctx.target, timeout)).collect() {
        Ok(s) => s,
        Err(e) => return CheckResult::fail("udp-crosstalk", figure(0), format!("socket: {e}")),
    };
    let mut rng = Rng::new(ctx.seed);
    let mut answered = vec![vec![false; rounds]; sockets];
    let mut buf = vec![0u8; RECV_BUF];
    let mut sent = vec![Vec::new(); sockets];
    let deadline = Instant::now() + ctx.limits.deadline;
    let mut lost = 0;
    for round in 0..rounds {
        for (s, sock) in socks.iter().enumerate() {
            let d = datagram(ctx, s as u32, round as u32, &mut rng);
            if let Err(e) = sock.send(&d) {
                let why = format!("socket {s}: send: {e}");
                return CheckResult::fail("udp-crosstalk", figure(lost), why);
            }
            sent[s].push(d);
        }
        // One wait per round, shared by its sockets, so a silent server costs one timeout
        // per round at most.
        let until = Instant::now() + timeout;
        for (s, sock) in socks.iter().enumerate() {
            // Read until this round's reply is in (late replies of earlier rounds may come
            // first).
            while !answered[s][round] {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
                    break;
                }
                let n = match recv(sock, &mut buf) {
                    Ok(Some(n)) => n,
                    Ok(None) => break,
                    Err(e) => {
                        let why = format!("socket {s}: no UDP echo: {e}");
                        return CheckResult::fail("udp-crosstalk", figure(lost), why);
                    }
                };
                if let Err(why) = judge_reply(s, &buf[..n], &sent, &mut answered) {
                    return CheckResult::fail("udp-crosstalk", figure(lost), why);
                }
            }
        }
        lost = answered
            .iter()
            .map(|a| a[..=round].iter().filter(|x| !**x).count())
            .sum::<usize>();
        // More than 5% lost (of the whole run) fails; no need to go on once that is certain,
        // nor past the deadline.
        if lost * 20 > total || Instant::now() > deadline {
            let why = format!(
                "{lost} of {} datagrams sent got no reply within {:.1} s",
                (round + 1) * sockets,
                timeout.as_secs_f64()
            );
            return CheckResult::fail("udp-crosstalk", figure(lost), why);
        }
    }
    CheckResult::pass("udp-crosstalk", figure(lost))
}

/// Checks a reply that reached socket `at`: it must carry one of that socket's requests,
/// exact, and the first reply to it.
fn judge_reply(
    at: usize,
    reply: &[u8],
    sent: &[Vec<Vec<u8>>],
    answered: &mut [Vec<bool>],
) -> Result<(), String> {
    if reply.len() < TAG {
        return Err(format!(
            "socket {at}: a {}-byte reply carries no request's tag",
            reply.len()
        ));
    }
    let from = u32::from_le_bytes([reply[0], reply[1], reply[2], reply[3]]) as usize;
    let seq = u32::from_le_bytes([reply[4], reply[5], reply[6], reply[7]]) as usize;
    let Some(request) = sent.get(from).and_then(|s| s.get(seq)) else {
        return Err(format!(
            "socket {at}: a reply of {} bytes tagged socket {from}, datagram {seq} matches no \
             request sent",
            reply.len()
        ));
    };
    if from != at {
        return Err(format!(
            "socket {at} received the reply to socket {from}'s datagram {seq}: replies crossed"
        ));
    }
    compare_datagram(request, reply)
        .map_err(|why| format!("socket {at}, datagram {seq}: {why}"))?;
    if std::mem::replace(&mut answered[at][seq], true) {
        return Err(format!(
            "socket {at}, datagram {seq}: a second reply to one request"
        ));
    }
    Ok(())
}
