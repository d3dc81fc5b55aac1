//! What the kernel holds for one TCP connection on this host: its send queue (bytes written
//! and not yet in the peer's receive buffer, unacknowledged) and its receive queue (bytes that
//! arrived and were not read), from `/proc/net/tcp` and `/proc/net/tcp6`.
//!
//! `deadlock-10m` needs this: a client that writes 10 MiB before reading finishes writing
//! whether the server read the bytes or only the socket buffers between them held them, and
//! loopback's buffers hold about that much. Where the server's socket is on this host (a
//! loopback target), its receive queue says which: a server that stopped reading leaves bytes
//! there for good. Linux only; elsewhere nothing is visible and the check says so.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The two queues of one socket, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queues {
    /// Written, not yet acknowledged (on loopback: not yet in the peer's receive buffer).
    pub send: u64,
    /// Arrived, not yet read by the socket's owner.
    pub recv: u64,
}

/// The queues of the socket whose local address is `local` and peer `remote`, if this host
/// has it (in this network namespace).
pub fn of(local: SocketAddr, remote: SocketAddr) -> Option<Queues> {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        find(&text, local, remote)
    })
}

/// The entry for `local` -> `remote` in the text of `/proc/net/tcp` or `tcp6`. IPv4 peers of
/// a dual-stack socket appear there as IPv4-mapped IPv6 addresses, and match either way.
pub fn find(text: &str, local: SocketAddr, remote: SocketAddr) -> Option<Queues> {
    text.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace().skip(1);
        let l = parse_addr(fields.next()?)?;
        let r = parse_addr(fields.next()?)?;
        let _state = fields.next()?;
        let (tx, rx) = fields.next()?.split_once(':')?;
        if same(l, local) && same(r, remote) {
            Some(Queues {
                send: u64::from_str_radix(tx, 16).ok()?,
                recv: u64::from_str_radix(rx, 16).ok()?,
            })
        } else {
            None
        }
    })
}

fn same(a: SocketAddr, b: SocketAddr) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && canon(a.ip()) == canon(b.ip())
}

/// `0100007F:1F90` (IPv4) or 32 hex digits `:PORT` (IPv6). The kernel prints each 32-bit word
/// of the address as a native-endian integer, the port in host order.
fn parse_addr(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as Linux prints them on a little-endian machine (the tests of the address
    /// encoding only hold there; the live test below holds everywhere).
    #[cfg(target_endian = "little")]
    #[test]
    fn entries_are_found_by_both_ends() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                  0: 0100007F:1F90 0100007F:C350 01 00000010:0009A000 00:00000000 00000000     0        0 1 1\n\
                  1: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n";
        let server: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let client: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        assert_eq!(
            find(v4, server, client),
            Some(Queues {
                send: 16,
                recv: 0x9a000
            })
        );
        assert_eq!(find(v4, client, server), Some(Queues { send: 0, recv: 0 }));
        assert_eq!(find(v4, server, "127.0.0.1:1".parse().unwrap()), None);
        // A dual-stack listener's connection from 127.0.0.1, in tcp6.
        let v6 = "header\n\
                  0: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:C350 01 00000000:00000400 00:0 0 0 0 1\n";
        assert_eq!(
            find(v6, server, client),
            Some(Queues {
                send: 0,
                recv: 1024
            })
        );
    }

    /// A real connection on loopback: bytes written and not read show in the receiver's
    /// queue, then leave it once read.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_live_connection_shows_its_unread_bytes() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(&[7u8; 1000]).unwrap();
        let (c, s) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        let mut seen = None;
        for _ in 0..200 {
            seen = of(s, c);
            if seen.is_some_and(|q| q.recv == 1000) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(seen.map(|q| q.recv), Some(1000), "{seen:?}");
        let mut buf = [0u8; 1000];
        server.read_exact(&mut buf).unwrap();
        assert_eq!(of(s, c).map(|q| q.recv), Some(0));
    }
}
