//! Loopback echo round trips: echoloop against a minimal tokio `current_thread` echo server,
//! measured the same way in the same run.
//!
//! Two parts:
//! 1. Criterion groups: one round = every connection sends one message and reads it back,
//!    for 1 and 64 connections, 64 B and 64 KiB messages.
//! 2. A fixed-duration comparison with CPU accounting: ping-pong (64 B, 50 connections) and
//!    bulk (64 KiB, 10 connections). Each server runs on a thread pinned to core 0, the client
//!    on core 1; the server thread's CPU time comes from `/proc/self/task/TID/stat` (utime +
//!    stime), so CPU per echoed message is the server's own cost, unblurred by the client.
//!
//! Run: `cargo bench --bench echo_roundtrip` (add `-- --quick` style criterion flags as usual;
//! `ECHO_COMPARE_SECS` sets the comparison's duration per case, default 3).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};

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

/// One round: every connection sends `message`, then every connection reads it back.
fn round(clients: &mut [TcpStream], message: &[u8], buf: &mut [u8]) {
    for client in clients.iter_mut() {
        client.write_all(message).expect("write");
    }
    for client in clients.iter_mut() {
        client.read_exact(&mut buf[..message.len()]).expect("read");
        debug_assert_eq!(&buf[..message.len()], message);
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

/// What one fixed-duration case measured against one server.
struct Measured {
    messages: u64,
    elapsed: Duration,
    server_cpu: Duration,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }
    fn cpu_ns_per_message(&self) -> f64 {
        self.server_cpu.as_nanos() as f64 / self.messages.max(1) as f64
    }
}

fn measure(target: &Target, connections: usize, size: usize, duration: Duration) -> Measured {
    let mut clients = connect_all(target.addr, connections);
    let message = vec![0xa5_u8; size];
    let mut buf = vec![0u8; size];
    for _ in 0..50 {
        round(&mut clients, &message, &mut buf); // warm up
    }
    let cpu_before = thread_cpu(target.tid);
    let started = Instant::now();
    let mut rounds = 0u64;
    while started.elapsed() < duration {
        round(&mut clients, &message, &mut buf);
        rounds += 1;
    }
    let elapsed = started.elapsed();
    let server_cpu = thread_cpu(target.tid).saturating_sub(cpu_before);
    Measured {
        messages: rounds * connections as u64,
        elapsed,
        server_cpu,
    }
}

fn compare(targets: &[Target]) {
    let secs = std::env::var("ECHO_COMPARE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let repeats = 3;
    let duration = Duration::from_secs_f64(secs);
    println!(
        "\ncomparison: server pinned to core {SERVER_CORE}, client to core {CLIENT_CORE}; \
         {repeats} interleaved runs of {secs} s per server and case, medians"
    );
    println!(
        "{:<18} {:>9} {:>12} {:>10} {:>12}",
        "case", "server", "msgs/s", "MiB/s", "cpu ns/msg"
    );
    for &(label, connections, size) in
        &[("pingpong 64B x50", 50, 64), ("bulk 64KiB x10", 10, 65_536)]
    {
        // Interleave the servers (A B A B ...) so a noisy neighbour hurts both alike.
        let mut runs: Vec<Vec<Measured>> = targets.iter().map(|_| Vec::new()).collect();
        for _ in 0..repeats {
            for (target, runs) in targets.iter().zip(runs.iter_mut()) {
                runs.push(measure(target, connections, size, duration));
            }
        }
        let medians: Vec<(f64, f64)> = runs
            .iter()
            .map(|runs| {
                let rate = median(runs.iter().map(Measured::per_second).collect());
                let cpu = median(runs.iter().map(Measured::cpu_ns_per_message).collect());
                (rate, cpu)
            })
            .collect();
        for (target, &(rate, cpu)) in targets.iter().zip(&medians) {
            let mib = rate * size as f64 / (1 << 20) as f64;
            println!(
                "{label:<18} {:>9} {rate:>12.0} {mib:>10.1} {cpu:>12.0}",
                target.name
            );
        }
        if let [(our_rate, our_cpu), (their_rate, their_cpu)] = medians[..] {
            println!(
                "{label:<18} {:>9} {:>11.2}x {:>10} {:>11.2}x",
                "ratio",
                our_rate / their_rate,
                "",
                our_cpu / their_cpu
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
