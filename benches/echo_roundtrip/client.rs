//! The comparison's client: built to keep a server saturated rather than to measure latency.
//! One `mio::Poll`, non-blocking connections, and each connection keeps exactly one message in
//! flight on its own, sending the next as soon as the whole echo of the last has arrived (no
//! lock-step across connections, so no round-trip bubbles). A message counts when its whole
//! echo has arrived.
//!
//! Bulk payloads are moved without copying (`tee`/`splice` out of a pipe that holds the
//! message once, `recv(MSG_TRUNC)` in): a copying client costs as much per message as the
//! servers do and would saturate first. So echoed contents are not compared while it runs
//! (bulk echoes never even reach user space); instead [`Client::verify`] ends each run by
//! letting every echo finish, checking every connection got back as many bytes as it sent,
//! and echoing one message of distinct content per connection through plain `write`/`read`,
//! compared byte for byte, which catches a misaligned or corrupted stream. The tests in
//! `tests/` verify every byte.
//!
//! Linux only: `tee`, `splice` and TCP's `MSG_TRUNC`, through `rustix`'s safe wrappers.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use echoloop_testkit::rng::hash64;
use mio::{Events, Interest, Poll, Token};
use rustix::net::RecvFlags;
use rustix::pipe::{PipeFlags, SpliceFlags};

/// Messages at least this large are moved without copying (see [`Payload::Spliced`]); smaller
/// ones are written and read plainly ([`Payload::Copied`]).
///
/// Measured for the client at the two sizes this bench uses. 64 B: plain costs 3.7–3.9 µs of
/// client CPU per message, spliced 4.0–4.2 µs; copying 64 bytes is nearly free, and splicing
/// adds a syscall (`tee`) and pipe bookkeeping per send. 64 KiB: plain costs about 15 µs, as
/// much as a server, spliced about 10 µs. The crossover in between was not measured: one page
/// (the unit in which a pipe holds data) is a guess at it.
const ZERO_COPY_FROM: usize = 4096;

/// How long the end-of-run drain and verified round may take before the run is failed.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where every connection's outgoing message comes from, and how echoes are taken in.
enum Payload {
    /// Plain `write` from this buffer, plain `read` into the client's scratch buffer.
    Copied(Vec<u8>),
    /// Zero-copy: the read end of a pipe that holds the message once and is never drained.
    /// Sending `tee`s it into the connection's staging pipe (duplicating page references, not
    /// bytes) and `splice`s from there into the socket; echoes are discarded by
    /// `recv(MSG_TRUNC)`, which Linux TCP consumes without copying them to user space.
    /// Without this the client copies each bulk message twice, as much work as the server
    /// does for it, and would saturate first.
    Spliced(OwnedFd),
}

impl Payload {
    /// The payload for `size`-byte messages: spliced from [`ZERO_COPY_FROM`] bytes on.
    fn new(size: usize) -> Payload {
        let message = vec![0xa5_u8; size];
        if size < ZERO_COPY_FROM {
            return Payload::Copied(message);
        }
        let source = Pipe::new(size);
        let mut written = 0;
        while written < size {
            written += rustix::io::write(&source.write, &message[written..])
                .expect("write the message into the source pipe (it holds at least one message)");
        }
        // The write end can close: the bytes stay readable, and `tee` never consumes them.
        Payload::Spliced(source.read)
    }
}

/// Both ends of a non-blocking pipe that can hold at least one message.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new(size: usize) -> Pipe {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
            .expect("create a pipe");
        // The default capacity (64 KiB) fits a 64 KiB message; grow it for larger ones. A
        // staging pipe must take a whole `tee` of the source, so both get the same capacity.
        let capacity = rustix::pipe::fcntl_getpipe_size(&write).expect("read the pipe size");
        if capacity < size {
            rustix::pipe::fcntl_setpipe_size(&write, size).expect("grow the pipe to one message");
        }
        Pipe { read, write }
    }
}

/// One connection of the comparison client. It has exactly one message in flight: the next
/// is sent as soon as the whole echo of the previous one has arrived.
struct Flow {
    stream: mio::net::TcpStream,
    /// With [`Payload::Spliced`]: the bytes of the current message not yet in the socket. A
    /// splice can stop part way; the rest stays here and goes first when the socket is
    /// writable again, which is why each connection has its own.
    staging: Option<Pipe>,
    /// Bytes of the current message not yet handed to the socket.
    unsent: usize,
    /// Bytes of the current message's echo not yet received.
    unreceived: usize,
    /// Totals over the connection's life, for the end-of-run check.
    sent: u64,
    received: u64,
}

impl Flow {
    /// Puts the next `size`-byte message in flight.
    fn start_message(&mut self, payload: &Payload, size: usize) {
        debug_assert!(
            self.unsent == 0 && self.unreceived == 0,
            "one message at a time"
        );
        if let Payload::Spliced(source) = payload {
            let staging = self
                .staging
                .as_ref()
                .expect("spliced flows have a staging pipe");
            // The staging pipe is empty (the previous message left it whole) and as large as
            // the source, so the whole message fits.
            let teed = rustix::pipe::tee(source, &staging.write, size, SpliceFlags::NONBLOCK)
                .expect("tee the message into the staging pipe");
            assert_eq!(teed, size, "tee duplicated only part of the message");
        }
        self.unsent = size;
        self.unreceived = size;
    }

    /// Moves this connection's message out and its echo in until the socket would block;
    /// with `next` set, a completed echo starts the next message at once. Returns how many
    /// echoes completed.
    ///
    /// mio's readiness is edge-triggered, and its contract is that a source is reported
    /// again only once an operation on it has returned `WouldBlock`. So this loop stops only
    /// when every direction with work to do has said so; a finished echo starts the next
    /// message here, not on some later event.
    fn drive(&mut self, payload: &Payload, size: usize, scratch: &mut [u8], next: bool) -> u64 {
        let mut completed = 0;
        loop {
            let mut progress = false;
            if self.unsent > 0 {
                match self.send(payload) {
                    Ok(0) => panic!("comparison client: a send moved no bytes"),
                    Ok(n) => {
                        self.unsent -= n;
                        self.sent += n as u64;
                        progress = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => progress = true,
                    Err(e) => panic!("comparison client: send failed: {e}"),
                }
            }
            if self.unreceived > 0 {
                match self.receive(payload, scratch) {
                    Ok(0) => panic!("comparison client: the server closed a connection"),
                    Ok(n) => {
                        self.unreceived -= n;
                        self.received += n as u64;
                        progress = true;
                        if self.unreceived == 0 {
                            completed += 1;
                            if next {
                                self.start_message(payload, size);
                            }
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => progress = true,
                    Err(e) => panic!("comparison client: receive failed: {e}"),
                }
            }
            if !progress {
                return completed;
            }
        }
    }

    /// One non-blocking send of (the rest of) the current message.
    fn send(&mut self, payload: &Payload) -> io::Result<usize> {
        match payload {
            Payload::Copied(message) => self.stream.write(&message[message.len() - self.unsent..]),
            Payload::Spliced(_) => {
                let staging = self
                    .staging
                    .as_ref()
                    .expect("spliced flows have a staging pipe");
                let flags = SpliceFlags::NONBLOCK;
                Ok(rustix::pipe::splice(
                    &staging.read,
                    None,
                    &self.stream,
                    None,
                    self.unsent,
                    flags,
                )?)
            }
        }
    }

    /// One non-blocking receive of at most the rest of the current echo: never past it, so
    /// a server that echoed too much leaves the surplus in the socket for the verified round
    /// to trip over.
    fn receive(&mut self, payload: &Payload, scratch: &mut [u8]) -> io::Result<usize> {
        let len = self.unreceived.min(scratch.len());
        let buf = &mut scratch[..len];
        match payload {
            Payload::Copied(_) => self.stream.read(buf),
            Payload::Spliced(_) => {
                // On TCP, MSG_TRUNC consumes up to `buf.len()` bytes without writing `buf`,
                // and the second count is how many it consumed.
                let flags = RecvFlags::TRUNC | RecvFlags::DONTWAIT;
                let (_, consumed) = rustix::net::recv(&self.stream, buf, flags)?;
                Ok(consumed)
            }
        }
    }
}

/// The comparison client: one `mio::Poll` over non-blocking connections, each registered
/// once for both directions and each keeping one message in flight independently of the
/// others (no lock-step across connections), so the server always has work queued.
pub struct Client {
    poll: Poll,
    events: Events,
    flows: Vec<Flow>,
    payload: Payload,
    size: usize,
    /// Receive buffer: read into with [`Payload::Copied`], only sized with `MSG_TRUNC`.
    scratch: Vec<u8>,
    /// Echoes completed so far, over all connections.
    pub completed: u64,
}

impl Client {
    /// Connects `connections` flows to `addr` and puts a first message in flight on each.
    pub fn connect(addr: SocketAddr, connections: usize, size: usize) -> Client {
        let poll = Poll::new().expect("create the client's poll");
        let payload = Payload::new(size);
        let flows = (0..connections)
            .map(|i| {
                let stream = TcpStream::connect(addr).expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                stream.set_nonblocking(true).expect("non-blocking");
                let mut stream = mio::net::TcpStream::from_std(stream);
                let interest = Interest::READABLE | Interest::WRITABLE;
                poll.registry()
                    .register(&mut stream, Token(i), interest)
                    .expect("register a client connection");
                let staging = matches!(payload, Payload::Spliced(_)).then(|| Pipe::new(size));
                Flow {
                    stream,
                    staging,
                    unsent: 0,
                    unreceived: 0,
                    sent: 0,
                    received: 0,
                }
            })
            .collect();
        let mut client = Client {
            poll,
            events: Events::with_capacity(1024),
            flows,
            payload,
            size,
            scratch: vec![0; size],
            completed: 0,
        };
        for flow in &mut client.flows {
            flow.start_message(&client.payload, size);
            client.completed += flow.drive(&client.payload, size, &mut client.scratch, true);
        }
        client
    }

    /// Keeps every connection busy until `deadline`.
    pub fn run_until(&mut self, deadline: Instant) {
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.poll_once(left, true);
        }
    }

    /// Waits for events for at most `timeout` and drives the connections that have them.
    fn poll_once(&mut self, timeout: Duration, next: bool) {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => return,
            Err(e) => panic!("comparison client: poll failed: {e}"),
        }
        for event in self.events.iter() {
            let flow = &mut self.flows[event.token().0];
            self.completed += flow.drive(&self.payload, self.size, &mut self.scratch, next);
        }
    }

    /// Ends the run honestly. The bulk payload was moved without being looked at, so this
    /// checks what the measured window could not: lets every in-flight echo finish (none
    /// lost), checks each connection got back exactly as many bytes as it sent, then sends
    /// each connection a message of its own through plain `write` and compares the echo
    /// byte for byte, which fails if any stream is misaligned or corrupted. Panics on failure.
    pub fn verify(mut self) {
        let deadline = Instant::now() + VERIFY_TIMEOUT;
        while self.flows.iter().any(|f| f.unsent > 0 || f.unreceived > 0) {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| {
                    panic!(
                        "comparison client: echoes still missing {VERIFY_TIMEOUT:?} after the run"
                    )
                });
            self.poll_once(left, false);
        }
        for (i, mut flow) in self.flows.into_iter().enumerate() {
            assert_eq!(
                flow.sent, flow.received,
                "connection {i}: {} bytes sent but {} echoed",
                flow.sent, flow.received
            );
            self.poll
                .registry()
                .deregister(&mut flow.stream)
                .expect("deregister a client connection");
            let mut stream = TcpStream::from(flow.stream);
            stream.set_nonblocking(false).expect("blocking");
            stream
                .set_read_timeout(Some(VERIFY_TIMEOUT))
                .expect("timeout");
            stream
                .set_write_timeout(Some(VERIFY_TIMEOUT))
                .expect("timeout");
            let message = verification_message(i, self.size);
            stream
                .write_all(&message)
                .unwrap_or_else(|e| panic!("connection {i}: verified send failed: {e}"));
            let mut echo = vec![0; self.size];
            stream
                .read_exact(&mut echo)
                .unwrap_or_else(|e| panic!("connection {i}: verified echo did not arrive: {e}"));
            if let Some(at) = message.iter().zip(&echo).position(|(a, b)| a != b) {
                panic!("connection {i}: verified echo differs at byte {at} (misaligned stream?)");
            }
        }
    }
}

/// A message that differs from every other connection's and from shifts of itself: byte `i`
/// of connection `c` is a hash of `(c, i)`.
fn verification_message(connection: usize, size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| hash64(((connection as u64) << 32) | i as u64) as u8)
        .collect()
}
