//! UDP in batches, end to end: bursts keep their order per source and their exact lengths,
//! several maximum-size datagrams in one batch come back whole, the reply queue stays
//! bounded, and on a wildcard bind each reply leaves from the address its request was sent to
//! (pktinfo). Loopback, port 0, receive timeouts, bounded loops.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use echoloop::Config;
use echoloop_testkit::{assert_same, pattern, TestServer, IO_TIMEOUT};

/// The length of datagram `seq` of socket `socket`: small and medium, and one of 60,000.
fn length(socket: usize, seq: usize) -> usize {
    match seq {
        7 => 60_000,
        _ => [0, 1, 64, 1_472, 9_000][(socket * 7 + seq) % 5],
    }
}

/// Bytes of datagram `seq` of socket `socket`: its sequence number first, then a pattern.
fn datagram(socket: usize, seq: usize) -> Vec<u8> {
    let mut bytes = pattern(length(socket, seq).max(8));
    bytes[..4].copy_from_slice(&(seq as u32).to_le_bytes());
    bytes[4..8].copy_from_slice(&(socket as u32).to_le_bytes());
    bytes.truncate(length(socket, seq).max(8));
    bytes
}

fn client(timeout: Duration) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(timeout)).unwrap();
    // Room for a whole burst of large replies in the kernel while the test is busy sending.
    socket2::SockRef::from(&socket)
        .set_recv_buffer_size(4 << 20)
        .unwrap();
    socket
}

/// 20 sockets each send a burst of 30 datagrams of mixed sizes without waiting, so batches
/// hold many sources and several 60 KB datagrams; each socket gets its replies in order, each
/// exactly as long as its request. (The whole burst, about 3 MB with the kernel's overhead,
/// fits the server's 4 MiB receive buffer where `net.core.rmem_max` allows it, as here.)
#[test]
fn bursts_from_many_sockets_come_back_in_order_and_whole() {
    let server = TestServer::start();
    let (sockets, per_socket) = (20, 30);
    let clients: Vec<UdpSocket> = (0..sockets).map(|_| client(IO_TIMEOUT)).collect();
    for seq in 0..per_socket {
        for (index, socket) in clients.iter().enumerate() {
            socket.send_to(&datagram(index, seq), server.udp()).unwrap();
        }
    }
    let mut buf = vec![0u8; 70_000];
    for (index, socket) in clients.iter().enumerate() {
        for seq in 0..per_socket {
            let (len, from) = socket.recv_from(&mut buf).unwrap();
            assert_eq!(from, server.udp());
            assert_same(&buf[..len], &datagram(index, seq));
        }
    }
    let stats = server.stop();
    let total = (sockets * per_socket) as u64;
    assert_eq!(stats.udp_datagrams_in, total);
    assert_eq!(stats.udp_datagrams_out, total, "{stats}");
    assert_eq!(stats.udp_dropped(), 0, "{stats}");
}

/// Eight 65,507-byte datagrams (the IPv4 maximum) land in the same receive batch and each
/// comes back whole.
#[test]
fn maximum_size_datagrams_in_one_batch_are_not_truncated() {
    let server = TestServer::start();
    let socket = client(IO_TIMEOUT);
    let payloads: Vec<Vec<u8>> = (0..8u8)
        .map(|i| {
            let mut bytes = pattern(65_507);
            bytes[0] = i;
            bytes
        })
        .collect();
    for payload in &payloads {
        socket.send_to(payload, server.udp()).unwrap();
    }
    let mut buf = vec![0u8; 70_000];
    for payload in &payloads {
        let (len, _) = socket.recv_from(&mut buf).unwrap();
        assert_same(&buf[..len], payload);
    }
    let stats = server.stop();
    assert_eq!(stats.udp_dropped_truncated, 0);
    assert_eq!(stats.udp_bytes_out, 8 * 65_507);
}

/// With a reply queue of 4 and a burst of 2,000 datagrams, every datagram is accounted for:
/// echoed, or dropped and counted (queue full, or a send error); none is echoed short.
#[test]
fn every_datagram_of_a_burst_is_accounted_for() {
    let server = TestServer::with_config(Config {
        udp_queue_datagrams: 4,
        ..Config::default()
    });
    let socket = client(Duration::from_millis(500));
    for seq in 0..2_000 {
        socket.send_to(&datagram(0, seq), server.udp()).unwrap();
    }
    let mut buf = vec![0u8; 70_000];
    let mut received = 0u64;
    while let Ok((len, _)) = socket.recv_from(&mut buf) {
        let seq = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
        assert_same(&buf[..len], &datagram(0, seq));
        received += 1;
    }
    let stats = server.stop();
    assert_eq!(
        stats.udp_datagrams_out + stats.udp_dropped_queue_full + stats.udp_dropped_send_error,
        stats.udp_datagrams_in,
        "{stats}"
    );
    assert!(received <= stats.udp_datagrams_out);
}

/// A UDP-only server bound to the wildcard `bind`.
fn wildcard(bind: &str) -> TestServer {
    let config = Config {
        tcp: false,
        ..Config::default()
    };
    TestServer::bound_to(bind.parse().unwrap(), config)
}

/// Sends to the server's port at `to` from a socket bound to `from` and checks that the echo
/// comes back from exactly that address.
#[track_caller]
fn assert_reply_from(server: &TestServer, from: &str, to: &str) {
    let socket = UdpSocket::bind(from).unwrap();
    socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let target = SocketAddr::new(to.parse::<IpAddr>().unwrap(), server.udp().port());
    let payload = pattern(100);
    socket.send_to(&payload, target).unwrap();
    let mut buf = [0u8; 200];
    let (len, source) = socket.recv_from(&mut buf).unwrap();
    assert_same(&buf[..len], &payload);
    assert_eq!(
        source, target,
        "the reply must leave from the address it was sent to"
    );
}

/// `--bind 0.0.0.0`: a datagram sent to 127.0.0.2 (loopback covers 127.0.0.0/8) from a
/// client on 127.0.0.1 is answered from 127.0.0.2, not from the address routing would pick.
/// Only traffic on loopback; the wildcard bind lasts for the test.
#[test]
fn wildcard_ipv4_replies_leave_from_the_address_they_were_sent_to() {
    let server = wildcard("0.0.0.0");
    assert_reply_from(&server, "127.0.0.1:0", "127.0.0.2");
    assert_reply_from(&server, "127.0.0.1:0", "127.0.0.1");
    assert_reply_from(&server, "127.0.0.3:0", "127.0.0.4");
}

/// `--bind ::` (dual stack): IPv4 requests arrive v4-mapped, and their replies still leave
/// from the IPv4 address they were sent to; IPv6 ones from `::1`.
#[test]
fn wildcard_dual_stack_replies_leave_from_the_address_they_were_sent_to() {
    let server = wildcard("::");
    assert_reply_from(&server, "127.0.0.1:0", "127.0.0.2");
    if UdpSocket::bind("[::1]:0").is_ok() {
        assert_reply_from(&server, "[::1]:0", "::1");
    }
}
