//! Tiny echo servers for the load generator's tests: blocking std sockets on 127.0.0.1:0,
//! a thread per TCP connection, optionally faulty in one precise way. Every loop is bounded
//! in time, and dropping a server stops and joins all its threads, so each test stops what
//! it starts. `Echoloop` is the real server, in process, for the checks it must pass.

#![allow(dead_code)]

pub mod broken;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// No test server lives longer than this, whatever the test does.
const LIFETIME: Duration = Duration::from_secs(30);
/// Socket timeouts, so that threads notice the stop flag.
const TICK: Duration = Duration::from_millis(20);

/// How a TCP server misbehaves: exactly once per server, at stream offset `at` of the
/// first connection that gets there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A correct echo server.
    None,
    /// Flip one bit of the byte at `at`.
    FlipByte { at: u64 },
    /// Do not echo the byte at `at`.
    DropByte { at: u64 },
    /// Echo the byte at `at` twice.
    DuplicateByte { at: u64 },
    /// Swap the byte at `at` (or the first later one within the chunk that differs from its
    /// successor, so the swap is never a no-op) with the next one.
    SwapBytes { at: u64 },
}

/// A test server's background thread: runs until its stop flag is raised (or for
/// [`LIFETIME`]); dropping it raises the flag and joins, so each test stops what it starts.
pub struct Background {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Runs `body` with the stop flag on a new thread.
    pub fn spawn(body: impl FnOnce(Arc<AtomicBool>) + Send + 'static) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        Background {
            stop,
            thread: Some(std::thread::spawn(move || body(s))),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds a non-blocking listener on 127.0.0.1, port 0.
#[track_caller]
pub fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind test server");
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

/// Accepts until `stop` (or [`LIFETIME`]), handing each connection and the server's birth
/// time to `spawn`, which starts its thread; joins them all before returning.
pub fn accept_each(
    listener: TcpListener,
    stop: &AtomicBool,
    mut spawn: impl FnMut(TcpStream, Instant) -> JoinHandle<()>,
) {
    let born = Instant::now();
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) && born.elapsed() < LIFETIME {
        match listener.accept() {
            Ok((sock, _)) => {
                conns.push(spawn(sock, born));
                // Reap finished connection threads so churn tests stay small.
                conns.retain(|h| !h.is_finished());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in conns {
        let _ = h.join();
    }
}

/// A running TCP echo server.
pub struct TcpEcho {
    pub addr: SocketAddr,
    /// Bytes echoed (written back), for cross-checking the generator's totals.
    pub echoed: Arc<AtomicU64>,
    _server: Background,
}

impl TcpEcho {
    /// Starts a server with `fault` on 127.0.0.1, port 0.
    #[track_caller]
    pub fn start(fault: Fault) -> TcpEcho {
        let (listener, addr) = listener();
        let echoed = Arc::new(AtomicU64::new(0));
        let fired = Arc::new(AtomicBool::new(false));
        let e = echoed.clone();
        let server = Background::spawn(move |stop| {
            accept_each(listener, &stop, |sock, born| {
                let (s, e, f) = (stop.clone(), e.clone(), fired.clone());
                std::thread::spawn(move || serve(sock, fault, &f, &s, &e, born))
            })
        });
        TcpEcho {
            addr,
            echoed,
            _server: server,
        }
    }
}

fn serve(
    mut sock: TcpStream,
    fault: Fault,
    fired: &AtomicBool,
    stop: &AtomicBool,
    echoed: &AtomicU64,
    born: Instant,
) {
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(TICK));
    let _ = sock.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = sock.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(64 * 1024 + 1);
    let mut offset = 0u64;
    while !stop.load(Ordering::Relaxed) && born.elapsed() < LIFETIME {
        let n = match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(_) => return,
        };
        out.clear();
        out.extend_from_slice(&buf[..n]);
        apply(fault, fired, offset, &mut out);
        offset += n as u64;
        if sock.write_all(&out).is_err() {
            return;
        }
        echoed.fetch_add(out.len() as u64, Ordering::Relaxed);
    }
    // The client half-closed (or we stop): close our side too.
    let _ = sock.shutdown(Shutdown::Write);
}

/// Applies the fault to the chunk that starts at stream offset `offset`, once per server.
fn apply(fault: Fault, fired: &AtomicBool, offset: u64, chunk: &mut Vec<u8>) {
    let at = match fault {
        Fault::None => return,
        Fault::FlipByte { at }
        | Fault::DropByte { at }
        | Fault::DuplicateByte { at }
        | Fault::SwapBytes { at } => at,
    };
    let end = offset + chunk.len() as u64;
    if at < offset || at >= end || fired.load(Ordering::Relaxed) {
        return;
    }
    let i = (at - offset) as usize;
    let i = match fault {
        // Find a pair that actually changes when swapped.
        Fault::SwapBytes { .. } => {
            match (i..chunk.len().saturating_sub(1)).find(|&j| chunk[j] != chunk[j + 1]) {
                Some(j) => j,
                None => return,
            }
        }
        _ => i,
    };
    if fired.swap(true, Ordering::Relaxed) {
        return;
    }
    match fault {
        Fault::FlipByte { .. } => chunk[i] ^= 0x01,
        Fault::DropByte { .. } => {
            chunk.remove(i);
        }
        Fault::DuplicateByte { .. } => chunk.insert(i, chunk[i]),
        Fault::SwapBytes { .. } => chunk.swap(i, i + 1),
        Fault::None => {}
    }
}

/// A running UDP echo server that drops every `drop_every`-th datagram (0 = none), or the
/// first few from each peer ([`UdpEcho::dropping_first`]).
pub struct UdpEcho {
    pub addr: SocketAddr,
    pub dropped: Arc<AtomicU64>,
    _server: Background,
}

impl UdpEcho {
    /// Starts a UDP echo server on 127.0.0.1, port 0, that drops every `drop_every`-th
    /// datagram it receives (0 = none).
    #[track_caller]
    pub fn start(drop_every: u64) -> UdpEcho {
        let mut count = 0u64;
        UdpEcho::dropping(move |_| {
            count += 1;
            drop_every > 0 && count % drop_every == 0
        })
    }

    /// Starts a UDP echo server on 127.0.0.1, port 0, that drops the first `per_peer`
    /// datagrams from each peer (source address) and echoes the rest. The loss this causes
    /// does not depend on timing: it happens however few datagrams a run gets to send, and
    /// early in the run, so a generator whose loss timeout is shorter than its run has
    /// given up on those datagrams before the run ends and does not wait for them.
    #[track_caller]
    pub fn dropping_first(per_peer: u64) -> UdpEcho {
        let mut seen = std::collections::HashMap::<SocketAddr, u64>::new();
        UdpEcho::dropping(move |from| {
            let count = seen.entry(from).or_insert(0);
            *count += 1;
            *count <= per_peer
        })
    }

    /// Starts the server; `drop(from)` says whether to drop the datagram just received.
    #[track_caller]
    fn dropping(mut drop: impl FnMut(SocketAddr) -> bool + Send + 'static) -> UdpEcho {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind udp test server");
        sock.set_read_timeout(Some(TICK)).expect("udp timeout");
        let addr = sock.local_addr().expect("local addr");
        let dropped = Arc::new(AtomicU64::new(0));
        let d = dropped.clone();
        let server = Background::spawn(move |s| {
            let born = Instant::now();
            let mut buf = vec![0u8; 65_536];
            while !s.load(Ordering::Relaxed) && born.elapsed() < LIFETIME {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if drop(from) {
                    d.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let _ = sock.send_to(&buf[..n], from);
            }
        });
        UdpEcho {
            addr,
            dropped,
            _server: server,
        }
    }
}

/// Runs the real binary with `args`; bounded by the run's own duration and drain.
#[track_caller]
pub fn bench(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_echoloop-bench"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("run echoloop-bench")
}

/// A loopback port with nothing listening (bound, then released).
pub fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// echoloop on 127.0.0.1, port 0, stopped and joined on drop.
pub struct Echoloop {
    pub addr: SocketAddr,
    stop: echoloop::ShutdownHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Echoloop {
    #[track_caller]
    pub fn start() -> Echoloop {
        let config = echoloop::Config {
            port: 0,
            ..Default::default()
        };
        let server = echoloop::Server::bind(config).expect("bind echoloop");
        let addr = server.tcp_addr().expect("tcp address");
        let stop = server.shutdown_handle();
        let thread = std::thread::spawn(move || {
            server.run().expect("echoloop runs");
        });
        Echoloop {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echoloop {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
