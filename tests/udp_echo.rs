//! UDP echo end to end: each datagram comes back whole, from the empty one to the largest
//! IPv4 allows. Loopback, port 0, with receive timeouts.

use std::net::UdpSocket;

use echoloop_testkit::{assert_same, pattern, TestServer, IO_TIMEOUT};

/// Sizes 0, 1, 1472 (one Ethernet frame), 8192 and 65,507 (the IPv4 maximum) are echoed
/// byte-exact to the sender.
#[test]
fn datagrams_of_every_size_are_echoed_whole() {
    let server = TestServer::start();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let sizes = [0, 1, 1472, 8192, 65_507];
    let mut buf = vec![0u8; 70_000];
    for len in sizes {
        let data = pattern(len);
        client.send_to(&data, server.udp()).unwrap();
        let (got, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(from, server.udp());
        assert_same(&buf[..got], &data);
    }
    let stats = server.stop();
    assert_eq!(stats.udp_datagrams_in, sizes.len() as u64);
    assert_eq!(stats.udp_datagrams_out, sizes.len() as u64);
    assert_eq!(stats.udp_bytes_out, sizes.iter().sum::<usize>() as u64);
}

/// TCP and UDP share one port, even when the port is picked by the kernel.
#[test]
fn tcp_and_udp_share_the_port() {
    let server = TestServer::start();
    assert_eq!(server.tcp().port(), server.udp().port());
    assert_ne!(server.tcp().port(), 0);
}
