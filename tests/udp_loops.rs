//! UDP echo loops, end to end: a forged datagram must not make the server echo itself, nor
//! start an endless ping-pong between two exposed echo servers, while real clients lose
//! nothing on loopback (whatever their payload) and at most 0.1% beyond it.
//!
//! The forged-source and exposed-address cases run inside a private network namespace (this
//! test thread calls `unshare(CLONE_NEWNET)`, which needs root, and brings up its own
//! loopback, with test addresses 10.200.0.x on it, using `ip`): forged packets are raw IPv4
//! (IP_HDRINCL), and nothing leaves the namespace. Where that is not possible they print why
//! and pass as skipped; `scripts/stress.sh` runs them too.

use std::io::Read;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use echoloop::{Config, LoopGuard};
use echoloop_testkit::{TestServer, IO_TIMEOUT};
use nix::sched::{unshare, CloneFlags};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// A forged loop must be dead within a second (the figure). It is checked in the
/// servers' CPU time: a loop's life on the wire when each server has a core. On a loaded
/// machine the wall clock also counts every bounce's wait for a CPU: 40 busy loops on 2 cores
/// stretched the burst of 10 loops from about 80 ms to 1.3-1.9 s and a single loop to 0.5 s,
/// with the guard working exactly as on an idle machine (the same bounces, the same CPU).
const LOOP_DEADLINE: Duration = Duration::from_secs(1);

/// Runs `body` on a thread of its own inside a fresh network namespace with loopback up, or
/// prints why it cannot and returns (skipped). Panics in `body` fail the test.
fn in_private_netns(test: &str, body: impl FnOnce() + Send + 'static) {
    let outcome = thread::spawn(move || -> Result<(), String> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
        ip(&["link", "set", "lo", "up"])?;
        body();
        Ok(())
    })
    .join();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(why)) => eprintln!("skipped {test}: {why} (needs root and `ip`)"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    match Command::new("ip").args(args).status() {
        Ok(status) if status.success() => Ok(()),
        other => Err(format!("ip {}: {other:?}", args.join(" "))),
    }
}

/// Sends one UDP datagram with a forged source, as a raw IPv4 packet.
fn forge(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) {
    let socket = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(nix::libc::IPPROTO_RAW)),
    )
    .expect("raw socket (root in a private namespace)");
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut packet = Vec::with_capacity(total);
    // IPv4 header; with IP_HDRINCL the kernel fills in the checksum (and the id when zero).
    packet.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    packet[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    packet.extend_from_slice(&from.ip().octets());
    packet.extend_from_slice(&to.ip().octets());
    // UDP header; checksum 0 means "none" over IPv4.
    packet.extend_from_slice(&from.port().to_be_bytes());
    packet.extend_from_slice(&to.port().to_be_bytes());
    packet.extend_from_slice(&(udp_len as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    socket
        .send_to(&packet, &SockAddr::from(SocketAddr::V4(to)))
        .expect("send the forged datagram");
}

/// The server's loop threshold, `LOOP_BOUNCES`, read from its definition in
/// src/udp/guard.rs (the constant is crate-private), so the figures here follow it.
fn loop_bounces() -> u64 {
    const GUARD: &str = include_str!("../src/udp/guard.rs");
    let definition = GUARD
        .lines()
        .find_map(|line| line.split_once("const LOOP_BOUNCES: u32 = "))
        .expect("src/udp/guard.rs defines LOOP_BOUNCES")
        .1;
    let value = definition.trim_end_matches(';').replace('_', "");
    value
        .parse()
        .unwrap_or_else(|_| panic!("LOOP_BOUNCES = {definition:?} is not a number"))
}

/// Addresses for "exposed" servers and clients: beyond loopback, but on the namespace's `lo`.
const EXPOSED: [&str; 3] = ["10.200.0.1", "10.200.0.2", "10.200.0.3"];

/// Puts the [`EXPOSED`] addresses on the namespace's loopback device.
fn add_exposed_addresses() {
    for address in EXPOSED {
        ip(&["addr", "add", &format!("{address}/32"), "dev", "lo"]).expect("add an address");
    }
}

/// An in-process UDP-only server on `bind`, port 0.
fn udp_server(bind: &str) -> TestServer {
    guarded_server(bind, LoopGuard::default())
}

/// An in-process UDP-only server on `bind`, port 0, with the loop guard set to `guard`.
fn guarded_server(bind: &str, guard: LoopGuard) -> TestServer {
    let config = Config {
        tcp: false,
        udp_loop_guard: guard,
        ..Config::default()
    };
    TestServer::bound_to(bind.parse().unwrap(), config)
}

fn v4(ip: &str, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip.parse().unwrap(), port)
}

/// `--bind ::` and a datagram "from" 127.0.0.1:PORT to itself: the source arrives v4-mapped
/// (`::ffff:127.0.0.1`), and must still be recognised as the server's own address.
#[test]
fn dual_stack_server_does_not_echo_itself_via_a_mapped_source() {
    in_private_netns("dual_stack_server_does_not_echo_itself", || {
        let server = udp_server("::");
        let own = v4("127.0.0.1", server.udp().port());
        forge(own, own, b"loop me");
        server.wait_for("the datagram refused", |s| s.udp_dropped_own_address >= 1);
        let stats = server.stop();
        assert_eq!(stats.udp_dropped_own_address, 1, "{stats}");
        assert_eq!(stats.udp_datagrams_out, 0, "{stats}");
    });
}

/// `--bind 0.0.0.0` and datagrams "from" another local address (not loopback) of the
/// machine: to itself (pktinfo says the destination is the source), and to 127.0.0.1 (only
/// the interface-address list knows the source is ours).
#[test]
fn wildcard_server_knows_every_local_address() {
    in_private_netns("wildcard_server_knows_every_local_address", || {
        ip(&["addr", "add", "10.200.0.1/32", "dev", "lo"]).expect("add an address");
        let server = udp_server("0.0.0.0");
        let other = v4("10.200.0.1", server.udp().port());
        forge(other, other, b"to itself");
        forge(other, v4("127.0.0.1", server.udp().port()), b"to loopback");
        server.wait_for("both datagrams refused", |s| s.udp_dropped_own_address >= 2);
        let stats = server.stop();
        assert_eq!(stats.udp_dropped_own_address, 2, "{stats}");
        assert_eq!(stats.udp_datagrams_out, 0, "{stats}");
    });
}

/// Watches every UDP packet on the namespace's loopback (a raw socket gets a copy of each),
/// on a thread of its own, counting the packets between two ports and the time from the first
/// to the last.
struct Watcher {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<(u64, Duration)>>,
}

/// A watcher that has been told the loops are over stops after this long without a packet.
const WATCH_QUIET: Duration = Duration::from_millis(100);
/// A watcher never watches longer than this, whatever the test does.
const WATCH_LIMIT: Duration = Duration::from_secs(60);

impl Watcher {
    /// Starts watching packets between ports `a` and `b`; returns once its socket is open, so
    /// that it sees every packet sent after.
    fn start(a: u16, b: u16) -> Watcher {
        let done = Arc::new(AtomicBool::new(false));
        let told = Arc::clone(&done);
        let (open, opened) = mpsc::channel();
        let thread = thread::spawn(move || {
            let socket =
                Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)).expect("raw socket");
            socket.set_read_timeout(Some(WATCH_QUIET)).unwrap();
            open.send(()).expect("the test waits for the socket");
            let (mut count, mut first, mut last) = (0, None, None);
            let started = Instant::now();
            let mut buf = [0u8; 2048];
            while started.elapsed() < WATCH_LIMIT {
                let Ok(len) = (&socket).read(&mut buf) else {
                    // Quiet: over if the test says the loops are; otherwise a pause (a loaded
                    // machine can hold both servers back for longer than WATCH_QUIET).
                    if told.load(Ordering::SeqCst) {
                        break;
                    }
                    continue;
                };
                let packet = &buf[..len];
                let header = usize::from(packet[0] & 0x0f) * 4;
                let port = |at: usize| u16::from_be_bytes([packet[at], packet[at + 1]]);
                let (from, to) = (port(header), port(header + 2));
                if (from, to) == (a, b) || (from, to) == (b, a) {
                    let now = Instant::now();
                    first.get_or_insert(now);
                    last = Some(now);
                    count += 1;
                }
            }
            let lifetime = match (first, last) {
                (Some(first), Some(last)) => last - first,
                _ => Duration::ZERO,
            };
            (count, lifetime)
        });
        opened.recv().expect("the watcher opens its socket");
        Watcher {
            done,
            thread: Some(thread),
        }
    }

    /// The loops are over: reads what is still on its way, then returns how many packets
    /// passed between the two ports and the time from the first to the last.
    fn finish(mut self) -> (u64, Duration) {
        self.done.store(true, Ordering::SeqCst);
        let thread = self.thread.take().expect("watching");
        thread.join().expect("watcher")
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

/// Waits until servers `a` and `b` together have refused `loops` datagrams as loops: each
/// refusal ends one loop, so then none is left on the wire. Bounded ([`TestServer::wait_for`]).
#[track_caller]
fn wait_for_refusals(a: &TestServer, b: &TestServer, loops: u64) {
    a.wait_for(&format!("{loops} loops refused"), |a_now| {
        a_now.udp_dropped_loop + b.snapshot().udp_dropped_loop >= loops
    });
}

/// One datagram forged "from" one exposed echo server to another: the loop dies within a
/// second, in one refusal, after at most LOOP_BOUNCES round trips; the figures are printed.
#[test]
fn a_single_forged_loop_dies_within_a_second() {
    in_private_netns("a_single_forged_loop_dies_within_a_second", || {
        add_exposed_addresses();
        let (a, b) = (udp_server(EXPOSED[0]), udp_server(EXPOSED[1]));
        forged_loops_die(
            a,
            b,
            EXPOSED[0],
            EXPOSED[1],
            &[b"one forged datagram".to_vec()],
        );
    });
}

/// With `--udp-loop-guard on`, a forged loop between two servers on loopback dies too.
#[test]
fn with_the_guard_on_a_loopback_loop_dies_too() {
    in_private_netns("with_the_guard_on_a_loopback_loop_dies_too", || {
        let a = guarded_server("127.0.0.1", LoopGuard::On);
        let b = guarded_server("127.0.0.2", LoopGuard::On);
        forged_loops_die(a, b, "127.0.0.1", "127.0.0.2", &[b"one forged".to_vec()]);
    });
}

/// Two exposed echo servers, one datagram forged "from" the first to the second and a burst
/// of 9 different ones, so that 10 loops run at once: all die within a second, each in one
/// refusal after at most LOOP_BOUNCES round trips.
#[test]
fn a_burst_of_forged_loops_between_two_servers_dies_within_a_second() {
    in_private_netns("a_burst_of_forged_loops_dies_within_a_second", || {
        add_exposed_addresses();
        let (a, b) = (udp_server(EXPOSED[0]), udp_server(EXPOSED[1]));
        let mut payloads = vec![b"ping-pong forever?".to_vec()];
        payloads.extend((0..9u8).map(|i| vec![i; 300]));
        forged_loops_die(a, b, EXPOSED[0], EXPOSED[1], &payloads);
    });
}

/// Forges one datagram per payload from server `a` (on `a_ip`) to server `b` (on `b_ip`),
/// one loop each, and watches them on the wire until the servers have refused one datagram
/// per loop. Checks that each loop ended in exactly one refusal after at most LOOP_BOUNCES
/// round trips, and that all of them cost the two servers less than [`LOOP_DEADLINE`] of
/// CPU; prints the figures, with the loops' life on the wall clock.
#[track_caller]
fn forged_loops_die(a: TestServer, b: TestServer, a_ip: &str, b_ip: &str, payloads: &[Vec<u8>]) {
    let loops = payloads.len() as u64;
    let (a_port, b_port) = (a.udp().port(), b.udp().port());
    let cpu_before = a.cpu_time() + b.cpu_time();
    let watcher = Watcher::start(a_port, b_port);
    for payload in payloads {
        forge(v4(a_ip, a_port), v4(b_ip, b_port), payload);
    }
    wait_for_refusals(&a, &b, loops);
    let cpu = a.cpu_time() + b.cpu_time() - cpu_before;
    let (packets, lifetime) = watcher.finish();
    let (a, b) = (a.stop(), b.stop());
    let bounced = a.udp_datagrams_in + b.udp_datagrams_in;
    let refused = a.udp_dropped_loop + b.udp_dropped_loop;
    eprintln!(
        "{loops} forged loop(s): {packets} datagrams on the wire, {refused} refused as loops, \
         dead {lifetime:?} after the first, {cpu:?} of the servers' CPU"
    );
    assert_eq!(refused, loops, "every loop ends in one refusal: {a} / {b}");
    assert!(
        cpu < LOOP_DEADLINE,
        "the loops cost the servers {cpu:?} of CPU"
    );
    // Each loop lives at most LOOP_BOUNCES round trips (both servers count a bounce).
    let limit = loops * 2 * (loop_bounces() + 1);
    assert!(bounced <= limit, "{bounced} datagrams > {limit}: {a} / {b}");
    assert!(
        packets >= 2,
        "the watcher saw the loops ({packets} packets)"
    );
}

/// Ping-pong with one constant payload from `client` to `server`, `count` times; a datagram
/// that gets no reply within `wait` is lost. Returns how many were lost.
fn constant_ping_pong(client: &UdpSocket, server: SocketAddr, count: u32, wait: Duration) -> u32 {
    client.set_read_timeout(Some(wait)).unwrap();
    let payload = [0x5a; 64];
    let mut buf = [0u8; 128];
    let mut lost = 0;
    for _ in 0..count {
        client.send_to(&payload, server).unwrap();
        match client.recv_from(&mut buf) {
            Ok((len, _)) => assert_eq!(&buf[..len], &payload[..]),
            Err(e) if echoloop_testkit::is_timeout(&e) => lost += 1,
            Err(e) => panic!("recv: {e}"),
        }
    }
    lost
}

/// `window` datagrams of one constant payload in flight from `client` to `server`, `count`
/// in all; returns how many came back (each is checked).
fn constant_window(client: &UdpSocket, server: SocketAddr, count: u32, window: u32) -> u32 {
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let payload = [0xa5; 64];
    let mut buf = [0u8; 128];
    let (mut sent, mut received) = (0, 0);
    while sent < window.min(count) {
        client.send_to(&payload, server).unwrap();
        sent += 1;
    }
    while received < sent {
        let Ok((len, _)) = client.recv_from(&mut buf) else {
            break; // the rest are lost
        };
        assert_eq!(&buf[..len], &payload[..]);
        received += 1;
        if sent < count {
            client.send_to(&payload, server).unwrap();
            sent += 1;
        }
    }
    received
}

/// The simple benchmark client: the same 64 bytes again and again, in ping-pong and with 64
/// in flight (4 sockets at once), on loopback with the default guard: nothing is refused.
#[test]
fn a_constant_payload_on_loopback_is_never_refused() {
    let server = udp_server("127.0.0.1");
    let target = server.udp();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let lost = constant_ping_pong(&client, target, 5_000, IO_TIMEOUT);
    let windowed: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                let client = UdpSocket::bind("127.0.0.1:0").unwrap();
                constant_window(&client, target, 5_000, 64)
            })
        })
        .collect();
    let echoed: u32 = windowed
        .into_iter()
        .map(|t| t.join().expect("client"))
        .sum();
    let stats = server.stop();
    assert_eq!(lost, 0, "{stats}");
    assert_eq!(stats.udp_dropped_loop, 0, "{stats}");
    assert_eq!(echoed, 4 * 5_000, "{stats}");
    assert_eq!(stats.udp_datagrams_out, 5 * 5_000);
}

/// With `--udp-loop-guard on`, loopback peers are watched too: the same client loses one
/// datagram in LOOP_BOUNCES + 1, no more.
#[test]
fn with_the_guard_on_a_constant_payload_on_loopback_loses_one_in_1025() {
    let server = guarded_server("127.0.0.1", LoopGuard::On);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let count = 2 * loop_bounces() as u32 + 100;
    let lost = constant_ping_pong(&client, server.udp(), count, Duration::from_millis(200));
    let stats = server.stop();
    assert_eq!(u64::from(lost), stats.udp_dropped_loop, "{stats}");
    assert_eq!(stats.udp_dropped_loop, 2, "{stats}");
}

/// Beyond loopback the guard watches: a constant-payload client in ping-pong loses at most
/// 0.1% (one in LOOP_BOUNCES + 1), and the server says so once, not per refusal.
#[test]
fn a_constant_payload_beyond_loopback_loses_at_most_a_thousandth() {
    in_private_netns("a_constant_payload_beyond_loopback_loses_at_most", || {
        add_exposed_addresses();
        let server = udp_server(EXPOSED[0]);
        let client = UdpSocket::bind(format!("{}:0", EXPOSED[2])).unwrap();
        let count = 5_000;
        let lost = constant_ping_pong(&client, server.udp(), count, Duration::from_millis(200));
        let stats = server.stop();
        eprintln!("constant payload beyond loopback: {lost} of {count} lost");
        assert_eq!(u64::from(lost), stats.udp_dropped_loop, "{stats}");
        assert!(lost * 1_000 <= count, "{lost} of {count} lost: {stats}");
        assert!(lost >= 1, "the guard watches exposed peers: {stats}");
    });
}

/// 50 sockets in ping-pong as fast as they can, and one ping at a time from another: every
/// datagram is echoed; the loop guard refuses nothing (each datagram carries new bytes).
#[test]
fn clients_at_full_speed_lose_nothing() {
    let server = udp_server("127.0.0.1");
    let target = server.udp();
    let (sockets, round_trips) = (50usize, 400u32);
    let clients: Vec<_> = (0..sockets)
        .map(|index| {
            thread::spawn(move || {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                let mut buf = [0u8; 128];
                for seq in 0..round_trips {
                    let mut payload = [index as u8; 64];
                    payload[..4].copy_from_slice(&seq.to_le_bytes());
                    socket.send_to(&payload, target).unwrap();
                    let (len, _) = socket.recv_from(&mut buf).unwrap();
                    assert_eq!(&buf[..len], &payload[..]);
                }
            })
        })
        .collect();
    let ping = UdpSocket::bind("127.0.0.1:0").unwrap();
    ping.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut buf = [0u8; 128];
    for seq in 0..200u32 {
        let payload = format!("ping {seq}");
        ping.send_to(payload.as_bytes(), target).unwrap();
        let (len, _) = ping.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], payload.as_bytes());
    }
    for client in clients {
        client.join().expect("client");
    }
    let stats = server.stop();
    assert_eq!(stats.udp_dropped(), 0, "{stats}");
    assert_eq!(
        stats.udp_datagrams_out,
        sockets as u64 * u64::from(round_trips) + 200
    );
}
