//! Loopback echo round trips: echoloop against a minimal tokio `current_thread` echo server,
//! measured the same way in the same run.
//!
//! Two parts:
//! 1. Criterion groups: one round = every connection sends one message and reads it back,
//!    for 1 and 64 connections, 64 B and 64 KiB messages.
//! 2. A fixed-duration comparison with CPU accounting: ping-pong (64 B, 50 connections) and
//!    bulk (64 KiB, 10 connections), plus ping-pong in lock-step rounds (below). Each server runs on a thread pinned to core 0, the client
//!    on core 1; each thread's CPU time comes from `/proc/self/task/TID/stat` (utime +
//!    stime), so CPU per echoed message is the server's own cost, unblurred by the client, and
//!    the client's cost and busy share sit beside it to show which side saturated.
//!
//! The comparison's client is built to keep the server saturated rather than to measure
//! latency: one `mio::Poll`, non-blocking connections, and each connection keeps exactly one
//! message in flight on its own, sending the next as soon as the whole echo of the last has
//! arrived (no lock-step across connections, so no round-trip bubbles). A message counts when
//! its whole echo has arrived. After a 300 ms warm-up, the measured window starts.
//!
//! For 64 B messages no client is cheaper than a server: both make one `write` and one `read`
//! per message, so the saturating client is the ceiling and throughput comes out equal for
//! any two servers (compare CPU per message instead). The "lockstep" case therefore also runs
//! ping-pong the way the criterion groups do: one round = every connection writes, then every
//! connection reads its echo (compared byte for byte). Neither side saturates there; the
//! throughput reflects how quickly a server turns a burst of messages around.
//!
//! In the bulk case the payload itself is moved without copying (`tee`/`splice` out of a pipe
//! that holds it once, `recv(MSG_TRUNC)` in): a copying client costs as much per message as
//! the servers do and would saturate first. So echoed contents are not compared during the
//! measured window (bulk echoes never even reach user space); instead each run ends by letting
//! every echo finish, checking every connection got back as many bytes as it sent, and echoing
//! one message of distinct content per connection through plain `write`/`read`, compared byte
//! for byte, which catches a misaligned or corrupted stream. The tests in `tests/` verify
//! every byte.
//!
//! Linux only, like the pinning and `/proc` accounting around it: the zero-copy client uses
//! `tee`, `splice` and TCP's `MSG_TRUNC` (through `rustix`'s safe wrappers).
//!
//! Run: `cargo bench --bench echo_roundtrip` (add `-- --quick` style criterion flags as usual;
//! `ECHO_COMPARE_SECS` sets the comparison's duration per case, default 3;
//! `ECHO_COMPARE_REPEATS` the number of interleaved runs, default 5). A filter that
//! matches no criterion group (`-- nomatch`) runs only the comparison.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use mio::{Events, Interest, Poll, Token};
use rustix::net::RecvFlags;
use rustix::pipe::{PipeFlags, SpliceFlags};

#[path = "../examples/tokio_echo.rs"]
#[allow(dead_code)]
mod tokio_echo;

const SERVER_CORE: usize = 0;
const CLIENT_CORE: usize = 1;

/// A server under test, running on its own pinned thread.
struct Target {
    name: &'static str,
    addr: SocketAddr,
    tid: i32,
    stop: Option<echoloop::ShutdownHandle>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.shutdown();
        }
    }
}

fn start_echoloop() -> Target {
    let config = echoloop::Config {
        port: 0,
        udp: false,
        ..Default::default()
    };
    let server = echoloop::Server::bind(config).expect("bind echoloop");
    let addr = server.tcp_addr().expect("tcp on");
    let stop = server.shutdown_handle();
    let (tid_tx, tid_rx) = mpsc::channel();
    std::thread::spawn(move || {
        pin_current_thread(SERVER_CORE);
        let _ = tid_tx.send(current_tid());
        server.run()
    });
    Target {
        name: "echoloop",
        addr,
        tid: tid_rx.recv().expect("server thread id"),
        stop: Some(stop),
    }
}

fn start_tokio() -> Target {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind tokio");
    let addr = listener.local_addr().expect("addr");
    let (tid_tx, tid_rx) = mpsc::channel();
    std::thread::spawn(move || {
        pin_current_thread(SERVER_CORE);
        let _ = tid_tx.send(current_tid());
        tokio_echo::serve_std(listener)
    });
    Target {
        name: "tokio",
        addr,
        tid: tid_rx.recv().expect("server thread id"),
        stop: None, // the process ends with the bench; a detached runtime thread is fine
    }
}

fn connect_all(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let stream = TcpStream::connect(addr).expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            stream
        })
        .collect()
}

/// One round: every connection sends `message`, then every connection reads it back and
/// checks it.
fn round(clients: &mut [TcpStream], message: &[u8], buf: &mut [u8]) {
    for client in clients.iter_mut() {
        client.write_all(message).expect("write");
    }
    for client in clients.iter_mut() {
        client.read_exact(&mut buf[..message.len()]).expect("read");
        assert_eq!(&buf[..message.len()], message, "echo differs");
    }
}

fn criterion_groups(c: &mut Criterion, targets: &[Target]) {
    let mut group = c.benchmark_group("echo_round");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for &(connections, size) in &[(1, 64), (1, 65_536), (64, 64), (64, 65_536)] {
        group.throughput(Throughput::Bytes((connections * size) as u64));
        for target in targets {
            let mut clients = connect_all(target.addr, connections);
            let message = vec![0x5a_u8; size];
            let mut buf = vec![0u8; size];
            let id = BenchmarkId::new(target.name, format!("{connections}conn/{size}B"));
            group.bench_function(id, |b| {
                b.iter(|| round(&mut clients, &message, &mut buf));
            });
        }
    }
    group.finish();
}

/// Load driven before the measured window opens, so connections are established and the
/// socket buffers, caches and branch predictors of both sides are warm.
const WARM_UP: Duration = Duration::from_millis(300);

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

/// What one fixed-duration case measured against one server.
struct Measured {
    messages: u64,
    elapsed: Duration,
    server_cpu: Duration,
    client_cpu: Duration,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }
    fn server_ns_per_message(&self) -> f64 {
        self.server_cpu.as_nanos() as f64 / self.messages.max(1) as f64
    }
    fn client_ns_per_message(&self) -> f64 {
        self.client_cpu.as_nanos() as f64 / self.messages.max(1) as f64
    }
    /// Share of the window the server thread was on a CPU: near 100% means it saturated.
    fn server_busy(&self) -> f64 {
        100.0 * self.server_cpu.as_secs_f64() / self.elapsed.as_secs_f64()
    }
    /// Share of the window the client thread was on a CPU.
    fn client_busy(&self) -> f64 {
        100.0 * self.client_cpu.as_secs_f64() / self.elapsed.as_secs_f64()
    }
}

/// Connects `connections` flows of `size`-byte messages, drives them for [`WARM_UP`], then
/// measures `duration`: echoed messages, and the CPU time of the server's thread and of this
/// (the client's) thread over exactly that window. The run ends with [`Client::verify`].
fn measure(target: &Target, connections: usize, size: usize, duration: Duration) -> Measured {
    let client_tid = current_tid();
    let mut client = Client::connect(target.addr, connections, size);
    client.run_until(Instant::now() + WARM_UP);

    let messages_before = client.completed;
    let server_before = thread_cpu(target.tid);
    let client_before = thread_cpu(client_tid);
    let started = Instant::now();
    client.run_until(started + duration);
    let elapsed = started.elapsed();
    let server_cpu = thread_cpu(target.tid).saturating_sub(server_before);
    let client_cpu = thread_cpu(client_tid).saturating_sub(client_before);
    let messages = client.completed - messages_before;

    client.verify();
    Measured {
        messages,
        elapsed,
        server_cpu,
        client_cpu,
    }
}

/// [`measure`] with lock-step rounds ([`round`]) instead of the saturating client.
fn measure_lockstep(
    target: &Target,
    connections: usize,
    size: usize,
    duration: Duration,
) -> Measured {
    let client_tid = current_tid();
    let mut clients = connect_all(target.addr, connections);
    let message: Vec<u8> = (0..size).map(|i| splitmix64(i as u64) as u8).collect();
    let mut buf = vec![0u8; size];
    let warm_until = Instant::now() + WARM_UP;
    while Instant::now() < warm_until {
        round(&mut clients, &message, &mut buf);
    }
    let server_before = thread_cpu(target.tid);
    let client_before = thread_cpu(client_tid);
    let started = Instant::now();
    let mut rounds = 0u64;
    while started.elapsed() < duration {
        round(&mut clients, &message, &mut buf);
        rounds += 1;
    }
    let elapsed = started.elapsed();
    Measured {
        messages: rounds * connections as u64,
        elapsed,
        server_cpu: thread_cpu(target.tid).saturating_sub(server_before),
        client_cpu: thread_cpu(client_tid).saturating_sub(client_before),
    }
}

/// How the comparison's client drives a case.
#[derive(Clone, Copy)]
enum Style {
    /// [`measure`]: every connection independently keeps one message in flight.
    Saturating,
    /// [`measure_lockstep`]: rounds of write-all, then read-all.
    Lockstep,
}

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
struct Client {
    poll: Poll,
    events: Events,
    flows: Vec<Flow>,
    payload: Payload,
    size: usize,
    /// Receive buffer: read into with [`Payload::Copied`], only sized with `MSG_TRUNC`.
    scratch: Vec<u8>,
    /// Echoes completed so far, over all connections.
    completed: u64,
}

impl Client {
    /// Connects `connections` flows to `addr` and puts a first message in flight on each.
    fn connect(addr: SocketAddr, connections: usize, size: usize) -> Client {
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
    fn run_until(&mut self, deadline: Instant) {
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
    fn verify(mut self) {
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
        .map(|i| splitmix64(((connection as u64) << 32) | i as u64) as u8)
        .collect()
}

/// SplitMix64's output function: a cheap, well-mixed hash of one word.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn compare(targets: &[Target]) {
    let secs = std::env::var("ECHO_COMPARE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let repeats: usize = std::env::var("ECHO_COMPARE_REPEATS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let duration = Duration::from_secs_f64(secs);
    println!(
        "\ncomparison: server pinned to core {SERVER_CORE}, client to core {CLIENT_CORE}; \
         {repeats} interleaved runs of {secs} s per server and case, medians; \
         busy = CPU time / wall time of that side's thread"
    );
    println!(
        "{:<18} {:>9} {:>10} {:>8} {:>11} {:>6} {:>11} {:>6}",
        "case", "server", "msgs/s", "MiB/s", "srv ns/msg", "busy", "cli ns/msg", "busy"
    );
    let cases = [
        ("pingpong 64B x50", 50, 64, Style::Saturating),
        ("lockstep 64B x50", 50, 64, Style::Lockstep),
        ("bulk 64KiB x10", 10, 65_536, Style::Saturating),
    ];
    for (label, connections, size, style) in cases {
        // Interleave the servers (A B A B ...) so a noisy neighbour hurts both alike.
        let mut runs: Vec<Vec<Measured>> = targets.iter().map(|_| Vec::new()).collect();
        for _ in 0..repeats {
            for (target, runs) in targets.iter().zip(runs.iter_mut()) {
                runs.push(match style {
                    Style::Saturating => measure(target, connections, size, duration),
                    Style::Lockstep => measure_lockstep(target, connections, size, duration),
                });
            }
        }
        let column =
            |runs: &[Measured], f: fn(&Measured) -> f64| median(runs.iter().map(f).collect());
        let medians: Vec<(f64, f64)> = runs
            .iter()
            .map(|runs| {
                let rate = column(runs, Measured::per_second);
                let server_cpu = column(runs, Measured::server_ns_per_message);
                (rate, server_cpu)
            })
            .collect();
        for ((target, runs), &(rate, server_cpu)) in targets.iter().zip(&runs).zip(&medians) {
            let mib = rate * size as f64 / (1 << 20) as f64;
            let server_busy = column(runs, Measured::server_busy);
            let client_cpu = column(runs, Measured::client_ns_per_message);
            let client_busy = column(runs, Measured::client_busy);
            println!(
                "{label:<18} {:>9} {rate:>10.0} {mib:>8.1} {server_cpu:>11.0} {server_busy:>5.0}% \
                 {client_cpu:>11.0} {client_busy:>5.0}%",
                target.name
            );
        }
        if let [(our_rate, our_cpu), (their_rate, their_cpu)] = medians[..] {
            println!(
                "{label:<18} {:>9} {:>9.2}x {:>8} {:>10.2}x",
                "ratio",
                our_rate / their_rate,
                "",
                our_cpu / their_cpu
            );
        }
        if let [ours, theirs] = &runs[..] {
            // Each interleaved pair's ratios, so the spread behind the medians is visible.
            let pairs = |f: fn(&Measured) -> f64| -> Vec<String> {
                ours.iter()
                    .zip(theirs)
                    .map(|(a, b)| format!("{:.2}", f(a) / f(b)))
                    .collect()
            };
            println!(
                "{label:<18} per pair: msgs/s ratio [{}], server ns/msg ratio [{}]",
                pairs(Measured::per_second).join(" "),
                pairs(Measured::server_ns_per_message).join(" ")
            );
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// utime + stime of one thread of this process, from `/proc/self/task/TID/stat`.
fn thread_cpu(tid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 overall: 12 and 13 after "pid (comm)".
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / per_second)
}

fn current_tid() -> i32 {
    // SAFETY: gettid has no preconditions and touches no memory.
    unsafe { libc::gettid() }
}

fn pin_current_thread(core: usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if core >= cores {
        return; // a one-core machine: nothing to pin apart
    }
    // SAFETY: `set` is a zeroed, properly sized cpu_set_t on our stack; CPU_SET writes inside
    // it, and sched_setaffinity(0, ..) only reads it for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn main() {
    pin_current_thread(CLIENT_CORE);
    let targets = [start_echoloop(), start_tokio()];
    let mut criterion = Criterion::default().configure_from_args();
    criterion_groups(&mut criterion, &targets);
    criterion.final_summary();
    compare(&targets);
}
