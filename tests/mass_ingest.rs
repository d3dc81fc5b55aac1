//! Mass ingest with default flags: many clients write 64 MiB each and never
//! read, while a ping-pong probe beside them measures how long the server leaves it waiting.
//! Every writer is read into the server until backpressure and the memory budget stop it
//! (about 1.8 GiB for 100 writers). A turn of the event loop that served all of them at once
//! stretched the probe's round trip from well under a millisecond to tens of milliseconds,
//! until a turn's work was bounded as a whole (`src/reactor/turn.rs`).
//!
//! `cargo test` runs a smaller version with a generous bound; the full scenario with the
//! target figures (100 writers: probe p99 under 5 ms, max under 20 ms) is
//! `mass_ingest_100_writers`, ignored here and run in release mode by `scripts/stress.sh`.
//! Figures are printed (`-- --nocapture`); `ECHOLOOP_INGEST_BIN=path/to/echoloop` runs the
//! same scenario against another build, and `ECHOLOOP_INGEST_WRITERS=N` changes the count.
//! Loopback and port 0 only; the writers run on one thread (mio), so the probe never waits
//! behind a hundred runnable client threads.

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use echoloop_testkit::child::{bin_from_env, ChildProcess};
use echoloop_testkit::connect_nodelay;
use echoloop_testkit::measure::{ms, one_at_a_time, quantile};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

const BIN: &str = env!("CARGO_BIN_EXE_echoloop");

/// What one run measured.
struct Figures {
    probe_p50: Duration,
    probe_p90: Duration,
    probe_p99: Duration,
    probe_max: Duration,
    /// Bytes the writers got into the server, in total.
    ingested: u64,
    /// Ingest rate until the writers were stopped by backpressure.
    ingest_mib_per_s: f64,
}

/// The writers: `count` connections on one thread, each writing up to `per_writer` bytes and
/// never reading, until `stop`. `total` counts the bytes written so far.
fn write_without_reading(
    addr: std::net::SocketAddr,
    count: usize,
    per_writer: u64,
    total: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut poll = Poll::new().expect("poll");
        let mut writers: Vec<(TcpStream, u64)> = (0..count)
            .map(|i| {
                let mut stream = TcpStream::connect(addr).expect("connect writer");
                poll.registry()
                    .register(&mut stream, Token(i), Interest::WRITABLE)
                    .expect("register writer");
                (stream, 0)
            })
            .collect();
        let chunk = vec![0x5a_u8; 256 * 1024];
        let mut events = Events::with_capacity(count.max(1));
        let mut ready: Vec<usize> = (0..count).collect();
        while !stop.load(Ordering::Relaxed) {
            for i in ready.drain(..) {
                let (stream, written) = &mut writers[i];
                while *written < per_writer {
                    let want = chunk.len().min((per_writer - *written) as usize);
                    match stream.write(&chunk[..want]) {
                        Ok(n) => {
                            *written += n as u64;
                            total.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => break, // WouldBlock: wait for the next edge; or a reset
                    }
                }
            }
            let _ = poll.poll(&mut events, Some(Duration::from_millis(10)));
            ready.extend(events.iter().map(|e| e.token().0));
        }
    })
}

/// Runs the scenario against a default-flags server: the probe pings (64 bytes, 1 ms apart)
/// until the writers have made no progress for a second (all stopped by backpressure), or
/// for `cap` at most. Only round trips that started while the ingest was still growing count.
fn mass_ingest(writers: usize, cap: Duration) -> Figures {
    // Another build can be measured the same way, for a before/after comparison.
    let server = ChildProcess::spawn_tcp_echo(&bin_from_env(BIN, "ECHOLOOP_INGEST_BIN"));
    let addr = server.listening().tcp();
    let mut probe = connect_nodelay(addr);
    let (total, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let cpu_before = server.cpu_time();
    let started = Instant::now();
    let writing = write_without_reading(
        addr,
        writers,
        64 << 20,
        Arc::clone(&total),
        Arc::clone(&stop),
    );
    let mut samples: Vec<(Instant, Duration)> = Vec::new();
    let (mut last_total, mut last_growth) = (0, started);
    let (ping, mut pong) = ([7u8; 64], [0u8; 64]);
    while started.elapsed() < cap && last_growth.elapsed() < Duration::from_secs(1) {
        let at = Instant::now();
        probe.write_all(&ping).expect("probe write");
        probe.read_exact(&mut pong).expect("probe echo");
        samples.push((at, at.elapsed()));
        assert_eq!(pong, ping, "probe echo differs");
        let now_total = total.load(Ordering::Relaxed);
        if now_total != last_total || writers == 0 && started.elapsed() < Duration::from_secs(2) {
            (last_total, last_growth) = (now_total, Instant::now());
        }
        thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    writing.join().expect("writers");
    let cpu = (server.cpu_time() - cpu_before).as_secs_f64();
    let peak_mib = server.memory_kib("VmHWM") as f64 / 1024.0;
    drop(probe);
    server.stop();

    let ingest = last_growth.duration_since(started);
    let mut latencies: Vec<Duration> = samples
        .iter()
        .filter(|(at, _)| *at <= last_growth)
        .map(|&(_, took)| took)
        .collect();
    let mib = last_total as f64 / (1 << 20) as f64;
    let figures = Figures {
        probe_p50: quantile(&mut latencies, 0.50),
        probe_p90: quantile(&mut latencies, 0.90),
        probe_p99: quantile(&mut latencies, 0.99),
        probe_max: quantile(&mut latencies, 1.0),
        ingested: last_total,
        ingest_mib_per_s: mib / ingest.as_secs_f64(),
    };
    eprintln!(
        "mass ingest: {writers} writers x 64 MiB, default flags: {mib:.0} MiB in {:.2} s \
         ({:.0} MiB/s; server CPU {cpu:.2} s = {:.2} s per GiB, peak RSS {peak_mib:.0} MiB); \
         probe {} round trips meanwhile: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ingest.as_secs_f64(),
        figures.ingest_mib_per_s,
        cpu * 1024.0 / mib.max(1.0),
        latencies.len(),
        ms(figures.probe_p50),
        ms(figures.probe_p99),
        ms(figures.probe_max),
    );
    figures
}

/// The number from the environment variable `name`, else `default`.
fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// 32 writers (about 1.3 GiB ingested, in a debug build). Before turns were bounded as a
/// whole, a turn served them all at once and the probe's typical round trip took as long:
/// p50 16-68 ms (p99 51-297 ms). Now it waits at most for the turn in progress: p50 under
/// 1 ms. The median is asserted because it is what changed by an order of magnitude; the tail
/// of a two-core machine shared with other builds moves with their load (the tight figures
/// are in `mass_ingest_100_writers`), so it only gets a sanity bound, on the p90: a fast
/// ingest leaves the probe a few dozen round trips or fewer, so its p99 is its maximum, which
/// one segment retransmitted after a second on a loaded machine decides (seen: 14 round
/// trips, p50 1.1 ms, max 1,094 ms).
#[test]
fn mass_ingest_leaves_the_probe_responsive() {
    let _turn = one_at_a_time();
    let writers = env_or("ECHOLOOP_INGEST_WRITERS", 32) as usize;
    let f = mass_ingest(writers, Duration::from_secs(60));
    assert!(
        f.ingested > (writers as u64) << 20,
        "the writers got data in"
    );
    assert!(
        f.probe_p50 < Duration::from_millis(5),
        "probe p50 {:.1} ms while {writers} clients push at once",
        ms(f.probe_p50)
    );
    assert!(
        f.probe_p90 < Duration::from_millis(150),
        "probe p90 {:.1} ms while {writers} clients push at once",
        ms(f.probe_p90)
    );
}

/// The scenario of the issue: 100 writers, with the target figures (probe p99 under 5 ms and
/// max under 20 ms). Run in release mode on an otherwise quiet machine: other processes'
/// load shows up in the probe's maximum.
#[test]
#[ignore = "stress: run by scripts/stress.sh (release)"]
fn mass_ingest_100_writers() {
    let _turn = one_at_a_time();
    let writers = env_or("ECHOLOOP_INGEST_WRITERS", 100) as usize;
    let f = mass_ingest(writers, Duration::from_secs(60));
    assert!(
        f.ingested > (writers as u64) << 20,
        "the writers got data in"
    );
    assert!(
        f.probe_p99 < Duration::from_millis(5) && f.probe_max < Duration::from_millis(20),
        "probe p99 {:.2} ms, max {:.2} ms (target: under 5 and 20 ms)",
        ms(f.probe_p99),
        ms(f.probe_max)
    );
}
