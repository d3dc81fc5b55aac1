//! Deliberately broken echo servers for the `check` tests, each wrong in one way that real
//! servers have been: mixing one connection's data into another's, truncating at 64 KiB,
//! forgetting the rest of a short write, closing with unread input (RST), never reading
//! while a write is pending (deadlock), truncating UDP datagrams, and never answering at all.
//!
//! Blocking std sockets on 127.0.0.1:0, a thread per connection; every loop is bounded in
//! time, and dropping a server stops and joins its threads.

use super::{accept_each, listener, Background, LIFETIME, TICK};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a TCP server is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// While three or more connections are open, also writes every eighth chunk it reads
    /// into another open connection (as a buffer reused too early would).
    MixesConnections,
    /// Echoes the first 64 KiB of each connection, then reads and discards the rest.
    TruncatesAt64K,
    /// Writes each chunk once on a non-blocking socket and forgets what did not fit.
    DropsShortWriteRemainder,
    /// Closes a connection after 512 KiB although more input is waiting (the kernel sends
    /// RST, destroying echoes in flight).
    ClosesWithUnreadInput,
    /// Blocks in its write until the client reads, never reading meanwhile; small socket
    /// buffers so it hangs well below 10 MiB.
    NeverReadsWhileWriting,
    /// Accepts nothing, reads nothing: connections sit in the backlog.
    Hangs,
}

/// Open connections, for the server that mixes them.
type Registry = Arc<Mutex<Vec<(u64, TcpStream)>>>;

/// A running broken TCP server.
pub struct BrokenTcp {
    pub addr: SocketAddr,
    _server: Background,
}

impl BrokenTcp {
    #[track_caller]
    pub fn start(broken: Broken) -> BrokenTcp {
        let (listener, addr) = listener();
        let server = Background::spawn(move |stop| {
            if broken == Broken::Hangs {
                // Connections complete in the kernel's backlog and are never accepted.
                let born = Instant::now();
                while !stop.load(Ordering::Relaxed) && born.elapsed() < LIFETIME {
                    std::thread::sleep(TICK);
                }
                return drop(listener);
            }
            let registry: Registry = Arc::default();
            let mixed = Arc::new(AtomicU64::new(0));
            let mut id = 0u64;
            accept_each(listener, &stop, |sock, born| {
                id += 1;
                let (s, r, m, id) = (stop.clone(), registry.clone(), mixed.clone(), id);
                std::thread::spawn(move || serve(sock, broken, id, &r, &m, &s, born))
            })
        });
        BrokenTcp {
            addr,
            _server: server,
        }
    }
}

fn serve(
    mut sock: TcpStream,
    broken: Broken,
    id: u64,
    registry: &Registry,
    mixed: &AtomicU64,
    stop: &AtomicBool,
    born: Instant,
) {
    let _ = sock.set_nodelay(true);
    let _ = sock.set_read_timeout(Some(TICK));
    let _ = sock.set_write_timeout(Some(Duration::from_secs(10)));
    if broken == Broken::NeverReadsWhileWriting {
        let s = socket2::SockRef::from(&sock);
        let _ = s.set_recv_buffer_size(64 << 10);
        let _ = s.set_send_buffer_size(64 << 10);
    }
    if broken == Broken::DropsShortWriteRemainder {
        let _ = sock.set_nonblocking(true);
    }
    if let Ok(clone) = sock.try_clone() {
        if let Ok(mut r) = registry.lock() {
            r.push((id, clone));
        }
    }
    let mut buf = vec![0u8; 64 << 10];
    let mut echoed = 0usize;
    while !stop.load(Ordering::Relaxed) && born.elapsed() < LIFETIME {
        let n = match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if broken == Broken::DropsShortWriteRemainder {
                    std::thread::sleep(Duration::from_millis(1));
                }
                continue;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let chunk = &buf[..n];
        let ok = match broken {
            Broken::TruncatesAt64K => {
                let keep = n.min((64usize << 10).saturating_sub(echoed));
                sock.write_all(&chunk[..keep]).is_ok()
            }
            // One write; whatever the socket did not take is gone.
            Broken::DropsShortWriteRemainder => {
                !matches!(sock.write(chunk), Err(e) if e.kind() != ErrorKind::WouldBlock)
            }
            Broken::ClosesWithUnreadInput if echoed + n > 512 << 10 => {
                // Dropping the socket with input unread makes the kernel send RST.
                let _ = sock.write_all(chunk);
                break;
            }
            Broken::MixesConnections => {
                mix(id, chunk, registry, mixed);
                sock.write_all(chunk).is_ok()
            }
            _ => sock.write_all(chunk).is_ok(),
        };
        if !ok {
            break;
        }
        echoed += n;
    }
    if let Ok(mut r) = registry.lock() {
        r.retain(|(i, _)| *i != id);
    }
    let _ = sock.shutdown(Shutdown::Write);
}

/// Writes every eighth `chunk` (counted across the server) into another open connection
/// too, when at least three are open (so one-at-a-time checks never see it).
fn mix(id: u64, chunk: &[u8], registry: &Registry, chunks: &AtomicU64) {
    let Ok(r) = registry.lock() else { return };
    if r.len() < 3 || chunks.fetch_add(1, Ordering::Relaxed) % 8 != 7 {
        return;
    }
    if let Some((_, victim)) = r.iter().rev().find(|(i, _)| *i != id) {
        let _ = (&*victim).write_all(chunk);
    }
}

/// A UDP echo server that replies with at most the first 1,472 bytes of each datagram (a
/// receive buffer sized for one Ethernet frame).
pub struct TruncatingUdp {
    pub addr: SocketAddr,
    _server: Background,
}

impl TruncatingUdp {
    #[track_caller]
    pub fn start() -> TruncatingUdp {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind udp server");
        sock.set_read_timeout(Some(TICK)).expect("udp timeout");
        let addr = sock.local_addr().expect("local addr");
        let server = Background::spawn(move |stop| {
            let born = Instant::now();
            let mut buf = [0u8; 1472];
            while !stop.load(Ordering::Relaxed) && born.elapsed() < LIFETIME {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&buf[..n], from);
                }
            }
        });
        TruncatingUdp {
            addr,
            _server: server,
        }
    }
}
