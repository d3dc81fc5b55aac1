//! How much output the server holds for a client: a few socket buffers for a peer that reads
//! while it writes (no bufferbloat: backpressure reaches the writer, as through a plain copy
//! loop), and the full `--max-pending` allowance for a peer that writes before it reads.
//!
//! The flood (`echoloop_testkit::flood`) writes 64 KiB chunks as fast as it can on each
//! connection while reading the echo in 16 KiB reads. Before the small bound, the server
//! queued up to `--max-pending` (32 MiB) per connection for it: peak RSS 114–269 MiB for ten
//! connections, for nothing, since the echo came back no faster. `cargo test` runs a short
//! flood against the binary and bounds the server's peak RSS; `flood_against_tokio` (ignored,
//! run by `scripts/flood-compare.sh` in release mode) is the benchmark beside the tokio echo
//! server. `ECHOLOOP_FLOOD_BIN=path` measures another build of echoloop.
//!
//! Loopback and port 0 only; every client I/O call has a timeout; servers are stopped (or
//! killed on drop).

use std::process::Command;
use std::time::Duration;

use echoloop::Config;
use echoloop_testkit::child::{bin_from_env, ChildProcess};
use echoloop_testkit::flood::{flood, Flood};
use echoloop_testkit::measure::{ms, one_at_a_time};
use echoloop_testkit::{echo_with_half_close, pattern, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_echoloop");

/// One flood against a child server: the figures, and the server's RSS before it and at its
/// peak, in KiB.
struct Run {
    flood: Flood,
    baseline_kib: u64,
    peak_kib: u64,
}

/// Floods the child `server` with `conns` connections for `duration`, sampling its RSS.
fn flood_child(server: &ChildProcess, conns: usize, duration: Duration) -> Run {
    let addr = server.listening().tcp();
    let baseline_kib = server.memory_kib("VmRSS");
    let mut peak_kib = baseline_kib;
    let flood = flood(addr, conns, duration, || {
        peak_kib = peak_kib.max(server.memory_kib("VmRSS"));
    });
    // VmHWM catches a peak between samples (it includes start-up, which is below baseline).
    peak_kib = peak_kib.max(server.memory_kib("VmHWM"));
    Run {
        flood,
        baseline_kib,
        peak_kib,
    }
}

fn print(name: &str, run: &Run) {
    let f = &run.flood;
    eprintln!(
        "{name}: {:.0} MiB/s echoed, chunk latency p50 {:.2} ms p95 {:.2} ms p99 {:.2} ms; \
         server RSS {:.1} MiB before, {:.1} MiB peak",
        f.bytes_per_sec() / (1 << 20) as f64,
        ms(f.latency(0.50)),
        ms(f.latency(0.95)),
        ms(f.latency(0.99)),
        run.baseline_kib as f64 / 1024.0,
        run.peak_kib as f64 / 1024.0,
    );
}

/// How long a peer's output may make no progress before the server grants it the full
/// allowance (the server's `STOPPED_READING_AFTER`, 200 ms).
const STOPPED_READING_AFTER: Duration = Duration::from_millis(200);

/// Four flooding connections for three seconds, default flags: the server holds at most a few
/// socket buffers for each (256 KiB), so its peak RSS stays within 16 MiB of its baseline
/// (before: it queued tens of MiB per connection). Every byte comes back in order.
///
/// The bound is for a peer that *reads*: a run in which one of the flood's readers itself went
/// `STOPPED_READING_AFTER` without reading (a descheduled thread on a loaded machine) rightly
/// earns the allowance and tells nothing, so it is run again, up to three times. A run whose
/// readers all kept reading decides; so does growth in a run with no such gap. If no run is
/// conclusive the test says so and passes: the machine could not produce a reading peer.
#[test]
fn a_flood_that_reads_is_held_to_a_few_socket_buffers() {
    let _turn = one_at_a_time();
    for attempt in 1..=3 {
        let server = ChildProcess::spawn_tcp_echo(&bin_from_env(BIN, "ECHOLOOP_FLOOD_BIN"));
        let run = flood_child(&server, 4, Duration::from_secs(3));
        server.stop();
        print("echoloop flood, 4 conns x 3 s", &run);
        assert!(run.flood.echoed > 0, "the flood was echoed");
        let grew_mib = (run.peak_kib - run.baseline_kib) as f64 / 1024.0;
        let gap = run.flood.longest_read_gap;
        if grew_mib < 16.0 {
            return;
        }
        assert!(
            gap >= STOPPED_READING_AFTER,
            "server RSS grew {grew_mib:.1} MiB under a flood whose readers never paused \
             {STOPPED_READING_AFTER:?} (longest gap {gap:?})"
        );
        eprintln!(
            "attempt {attempt}: RSS grew {grew_mib:.1} MiB, but a reader paused {gap:?} \
             (the machine is loaded): inconclusive, again"
        );
    }
    eprintln!("inconclusive: in every run a flood reader paused long enough to look stopped");
}

/// The same bound seen from inside: four flooding connections against an in-process server,
/// its `pending_bytes` read every 50 ms through a `StatsHandle`. While the readers read, the
/// server never holds more than a few socket buffers per connection (256 KiB each by default;
/// 512 KiB each allowed for block rounding). As above, a run in which a reader itself paused
/// `STOPPED_READING_AFTER` is inconclusive and run again. With `max_pending_reading` raised to
/// `max_pending` (the rule before the small bound) the same flood holds many MiB: that is what
/// this test catches.
#[test]
fn a_flood_that_reads_keeps_pending_small() {
    let _turn = one_at_a_time();
    let bound = 4 * 512 * 1024;
    for attempt in 1..=3 {
        let server = echoloop::Server::bind(Config {
            bind: std::net::IpAddr::from([127, 0, 0, 1]),
            port: 0,
            ..Config::default()
        })
        .expect("bind");
        let addr = server.tcp_addr().expect("tcp");
        let (stats, stop) = (server.stats_handle(), server.shutdown_handle());
        let thread = std::thread::spawn(move || server.run());
        let mut peak_pending = 0;
        let run = flood(addr, 4, Duration::from_secs(2), || {
            if let Some(now) = stats.snapshot() {
                peak_pending = peak_pending.max(now.pending_bytes);
            }
        });
        stop.shutdown();
        thread.join().expect("server thread").expect("server run");
        let gap = run.longest_read_gap;
        eprintln!(
            "attempt {attempt}: peak pending {} KiB over 4 flooding connections, longest reader gap {gap:?}",
            peak_pending / 1024
        );
        if peak_pending <= bound {
            return;
        }
        assert!(
            gap >= STOPPED_READING_AFTER,
            "the server held {} KiB for readers that never paused {STOPPED_READING_AFTER:?}",
            peak_pending / 1024
        );
    }
    eprintln!("inconclusive: in every run a flood reader paused long enough to look stopped");
}

/// The tutorials' deadlock client, with default flags: 10 MB written before anything is read, then
/// `shutdown(SHUT_WR)`; all of it comes back. Loopback's buffers do not hold 10 MB, so the
/// server must see that this peer stopped reading and grant it the allowance.
#[test]
fn ten_megabytes_written_before_reading_come_back() {
    let server = TestServer::start();
    echo_with_half_close(server.tcp(), &pattern(10 * 1000 * 1000));
    let stats = server.stop();
    assert_eq!(stats.closed_peer, 1);
}

/// 100 MB written before anything is read, with an allowance that holds it
/// (`--max-pending 128M`): far more than the small bound, held because the peer stopped
/// reading, and all of it comes back after the half-close.
#[test]
fn a_hundred_megabytes_written_before_reading_come_back() {
    let config = Config {
        max_pending: 128 << 20,
        ..Config::default()
    };
    let server = TestServer::with_config(config);
    echo_with_half_close(server.tcp(), &pattern(100 * 1000 * 1000));
    let stats = server.stop();
    assert_eq!(stats.closed_peer, 1);
    assert_eq!(stats.tcp_bytes_out, 100 * 1000 * 1000);
}

/// The benchmark: ten connections flooding for eight seconds, echoloop (default flags) and the
/// tokio echo server (`examples/tokio_echo.rs`) in turn, `ECHOLOOP_FLOOD_ROUNDS` rounds
/// (default 3). Prints one JSON object per run on stdout. `TOKIO_ECHO_BIN` is the tokio
/// server's binary (default: the example beside this build's `echoloop`);
/// `ECHOLOOP_FLOOD_BEFORE_BIN`, if set, is a third server in each round (an older build).
#[test]
#[ignore = "benchmark: run by scripts/flood-compare.sh (release)"]
fn flood_against_tokio() {
    let _turn = one_at_a_time();
    let echoloop = bin_from_env(BIN, "ECHOLOOP_FLOOD_BIN");
    let default_tokio = std::path::Path::new(BIN)
        .with_file_name("examples")
        .join("tokio_echo");
    let tokio = std::env::var("TOKIO_ECHO_BIN")
        .unwrap_or_else(|_| default_tokio.to_string_lossy().into_owned());
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rounds = env("ECHOLOOP_FLOOD_ROUNDS", 3);
    let secs = env("ECHOLOOP_FLOOD_SECS", 8);
    let conns = env("ECHOLOOP_FLOOD_CONNS", 10) as usize;
    let mut servers = vec![("echoloop", echoloop), ("tokio", tokio)];
    if let Ok(before) = std::env::var("ECHOLOOP_FLOOD_BEFORE_BIN") {
        servers.push(("echoloop-before", before));
    }
    for round in 0..rounds {
        for (name, bin) in &servers {
            let server = match *name {
                "tokio" => ChildProcess::spawn_server(Command::new(bin).args(["--port", "0"])),
                _ => ChildProcess::spawn_tcp_echo(bin),
            };
            let run = flood_child(&server, conns, Duration::from_secs(secs));
            print(name, &run);
            let f = &run.flood;
            println!(
                "{{\"server\":\"{name}\",\"bin\":\"{bin}\",\"round\":{round},\"conns\":{conns},\
                 \"secs\":{:.3},\"echoed_bytes\":{},\"mib_per_s\":{:.1},\"p50_ms\":{:.3},\
                 \"p95_ms\":{:.3},\"p99_ms\":{:.3},\"rss_baseline_kib\":{},\"rss_peak_kib\":{}}}",
                f.duration.as_secs_f64(),
                f.echoed,
                f.bytes_per_sec() / (1 << 20) as f64,
                ms(f.latency(0.50)),
                ms(f.latency(0.95)),
                ms(f.latency(0.99)),
                run.baseline_kib,
                run.peak_kib,
            );
            drop(server); // killed: tokio_echo has no graceful shutdown
        }
    }
}
