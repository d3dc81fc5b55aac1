//! Loopback echo round trips: echoloop against a minimal tokio `current_thread` echo server
//! (`echoloop_testkit::tokio_echo`), measured the same way in the same run.
//!
//! Two parts:
//! 1. Criterion groups: one round = every connection sends one message and reads it back,
//!    for 1 and 64 connections, 64 B and 64 KiB messages.
//! 2. A fixed-duration comparison with CPU accounting: ping-pong (64 B, 50 connections) and
//!    bulk (64 KiB, 10 connections), plus ping-pong in lock-step rounds (below). Each server
//!    runs on a thread pinned to core 0, the client on core 1; each thread's CPU time comes
//!    from `/proc/self/task/TID/stat` (utime + stime), so CPU per echoed message is the
//!    server's own cost, unblurred by the client, and the client's cost and busy share sit
//!    beside it to show which side saturated.
//!
//! The comparison's client ([`client::Client`]) keeps every connection's one message in
//! flight independently, so the server is saturated; after a 300 ms warm-up, the measured
//! window starts, and each run ends with a verified round.
//!
//! For 64 B messages no client is cheaper than a server: both make one `write` and one `read`
//! per message, so the saturating client is the ceiling and throughput comes out equal for
//! any two servers (compare CPU per message instead). The "lockstep" case therefore also runs
//! ping-pong the way the criterion groups do: one round = every connection writes, then every
//! connection reads its echo (compared byte for byte). Neither side saturates there; the
//! throughput reflects how quickly a server turns a burst of messages around.
//!
//! Linux only, like the pinning and `/proc` accounting.
//!
//! Run: `cargo bench --bench echo_roundtrip` (add `-- --quick` style criterion flags as usual;
//! `ECHO_COMPARE_SECS` sets the comparison's duration per case, default 3;
//! `ECHO_COMPARE_REPEATS` the number of interleaved runs, default 5). A filter that
//! matches no criterion group (`-- nomatch`) runs only the comparison.

mod client;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use client::Client;
use criterion::{BenchmarkId, Criterion, Throughput};
use echoloop_testkit::pinning::{current_tid, pin_current_thread};
use echoloop_testkit::procfs::{self, Task};
use echoloop_testkit::rng::hash64;
use echoloop_testkit::tokio_echo;

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
    let message: Vec<u8> = (0..size).map(|i| hash64(i as u64) as u8).collect();
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

/// utime + stime of one thread of this process.
fn thread_cpu(tid: i32) -> Duration {
    procfs::cpu_time(Task::Thread(tid)).expect("read a thread's CPU time from /proc")
}

fn main() {
    pin_current_thread(CLIENT_CORE);
    let targets = [start_echoloop(), start_tokio()];
    let mut criterion = Criterion::default().configure_from_args();
    criterion_groups(&mut criterion, &targets);
    criterion.final_summary();
    compare(&targets);
}
