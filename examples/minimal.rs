//! The smallest reactor that does echoloop's job: read it first. One thread and one
//! `mio::Poll` serve a TCP listener, every connection (kept in a `Slab`) and a UDP socket on the
//! same port. Nothing here blocks, so a client that writes 10 MB before reading anything (the
//! tutorials' deadlock client) gets all of it back.
//!
//! ```sh
//! cargo run --example minimal                  # 127.0.0.1:7007
//! cargo run --example minimal -- 127.0.0.1:0   # any free port; the first line says which
//! ```
//!
//! What this leaves out, and the echoloop file that adds each (the tour, `src/tour.rs`, walks
//! from here through them):
//! - one turn as a named sequence, teardown after the batch: `src/reactor/mod.rs`
//! - a connection's lifecycle as a state machine (half-close, draining, lingering close):
//!   `src/connection/`
//! - limits (connections, per-source, descriptors): `src/reactor/admission.rs`,
//!   `src/descriptors.rs`; a global memory budget: `src/reactor/memory.rs`
//! - budgets per wakeup, so one fast client cannot starve the rest: `src/reactor/turn.rs`
//! - idle and stall timeouts, and every other timer (one deadline registry):
//!   `src/reactor/deadlines.rs`
//! - graceful shutdown from another thread or a signal: `src/reactor/shutdown.rs`
//! - zero copy (`splice(2)` through a pipe): `src/zero_copy.rs`, `src/reactor/pipes.rs`
//! - services other than echo: `src/service/`; UDP batches, guards and a reply queue: `src/udp/`
//! - reactor groups (one per thread, one port): `src/group.rs`
//! - counters and metrics: `src/stats.rs`, `src/metrics/`

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

/// The listener and the UDP socket sit at reserved tokens; a connection's token is its slab key.
const LISTENER: Token = Token(usize::MAX);
const UDP: Token = Token(usize::MAX - 1);
/// Stop reading a connection whose unsent output reaches this (backpressure). It must exceed
/// what a write-before-read client sends minus what the kernel buffers, or that client and
/// this server wait for each other forever: 16 MiB covers the tutorials' 10 MB.
const MAX_PENDING: usize = 16 << 20;

struct Conn {
    socket: TcpStream,
    /// Bytes read but not yet written back.
    pending: VecDeque<u8>,
    /// The peer sent FIN: flush `pending`, then close.
    read_closed: bool,
    /// Whether WRITABLE is registered, i.e. whether `pending` was non-empty last time.
    wants_write: bool,
}

fn main() {
    let arg = std::env::args().nth(1);
    let addr = arg.as_deref().unwrap_or("127.0.0.1:7007");
    let result = match addr.parse() {
        Ok(addr) => serve(addr),
        Err(e) => Err(io::Error::new(
            ErrorKind::InvalidInput,
            format!("{addr}: {e}"),
        )),
    };
    if let Err(e) = result {
        eprintln!("minimal: {e}"); // a bad address or a port in use: one line, exit 1
        std::process::exit(1);
    }
}

/// Binds `addr` (TCP and UDP, one port) and serves forever.
fn serve(addr: SocketAddr) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?; // the real port when asked for port 0
    let mut udp = UdpSocket::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    poll.registry()
        .register(&mut udp, UDP, Interest::READABLE)?;
    println!("{addr}"); // the first line of stdout: where to connect

    let mut conns: Slab<Conn> = Slab::new();
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        // One turn: wait for readiness, then handle every event in the batch. mio is
        // edge-triggered: an event is reported once, so each handler works until WouldBlock.
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            match event.token() {
                LISTENER => accept_all(&listener, &mut conns, &poll)?,
                UDP => echo_datagrams(&udp, &mut scratch),
                Token(key) => {
                    // Events can be spurious, or stale for a key just reused: `drive` only
                    // acts on what the socket says, so either is harmless.
                    let Some(conn) = conns.get_mut(key) else {
                        continue;
                    };
                    if drive(conn, &mut scratch, &poll, Token(key)).unwrap_or(true) {
                        // Done (or failed): removing the slab entry drops the socket, which
                        // closes it and deregisters it from the poll.
                        conns.remove(key);
                    }
                }
            }
        }
    }
}

/// Accepts until WouldBlock. An accept error (out of descriptors, aborted handshake) ends
/// this round only: the server must not die of one client.
fn accept_all(listener: &TcpListener, conns: &mut Slab<Conn>, poll: &Poll) -> io::Result<()> {
    loop {
        let (mut socket, _) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("accept: {e}");
                return Ok(());
            }
        };
        let entry = conns.vacant_entry();
        poll.registry()
            .register(&mut socket, Token(entry.key()), Interest::READABLE)?;
        let (pending, read_closed, wants_write) = (VecDeque::new(), false, false);
        entry.insert(Conn {
            socket,
            pending,
            read_closed,
            wants_write,
        });
    }
}

/// Works one connection until the socket would block both ways; `Ok(true)` once it is done.
/// Reads and writes alternate (a chunk read is written on the next pass), so output flows while
/// the client sends, and one that does not read only grows `pending` (to about `MAX_PENDING`).
fn drive(conn: &mut Conn, scratch: &mut [u8], poll: &Poll, token: Token) -> io::Result<bool> {
    loop {
        // Write first: the oldest bytes leave before more are read.
        while !conn.pending.is_empty() {
            let (front, _) = conn.pending.as_slices();
            match conn.socket.write(front) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => drop(conn.pending.drain(..n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if conn.read_closed || conn.pending.len() >= MAX_PENDING {
            break; // nothing more to read, or backpressure: read again once output drains
        }
        match conn.socket.read(scratch) {
            Ok(0) => conn.read_closed = true,
            Ok(n) => conn.pending.extend(&scratch[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    if conn.read_closed && conn.pending.is_empty() {
        return Ok(true);
    }
    // Ask for WRITABLE only while output waits, and change the registration only when that
    // changes (an `epoll_ctl` per event would cost a syscall each time). A connection stopped
    // by backpressure always has output waiting, so a writable edge will drive it again.
    let wants_write = !conn.pending.is_empty();
    if wants_write != conn.wants_write {
        let interest = match wants_write {
            true => Interest::READABLE | Interest::WRITABLE,
            false => Interest::READABLE,
        };
        poll.registry()
            .reregister(&mut conn.socket, token, interest)?;
        conn.wants_write = wants_write;
    }
    Ok(false)
}

/// Echoes datagrams until WouldBlock. A reply the socket will not take now is dropped (UDP
/// may lose datagrams anyway); a failed send never ends the loop.
fn echo_datagrams(udp: &UdpSocket, scratch: &mut [u8]) {
    loop {
        match udp.recv_from(scratch) {
            Ok((n, peer)) => {
                let _ = udp.send_to(&scratch[..n], peer);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => continue, // e.g. ICMP port unreachable from an earlier reply
        }
    }
}
