//! Naive writers: clients that push 64 MiB each without ever reading, against the `echoloop`
//! binary at `--max-pending 1M`. The server's memory stays bounded (peak RSS from
//! `/proc/PID/status`), a probe client's round trips stay fast, and the stall timeout cuts
//! each writer off soon after it got stuck.
//!
//! Figures are printed with `eprintln!` (`cargo test --test naive_writers -- --nocapture`).
//! The larger run is `#[ignore]`d and run by `scripts/stress.sh`. Loopback and port 0 only;
//! every loop is bounded; the server is stopped with SIGTERM, or killed on drop.

use std::io::ErrorKind;
use std::io::Write;
use std::process::Command;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use echoloop_testkit::child::{ChildProcess, WAIT};
use echoloop_testkit::measure::{ms, one_at_a_time, quantile};
use echoloop_testkit::{connect_nodelay, pattern, round_trip};

const BIN: &str = env!("CARGO_BIN_EXE_echoloop");

/// What a naive writer saw: bytes it got in, since when its writes blocked, and when (and
/// how) the server cut it off.
struct Naive {
    written: u64,
    stuck_since: Instant,
    failed_at: Instant,
    error: std::io::Error,
}

/// Runs the naive-writers scenario and returns the server's peak RSS above its baseline, in
/// KiB.
fn naive_writers(writers: usize, per_writer: u64) -> u64 {
    let stall = Duration::from_secs(2);
    let server = ChildProcess::spawn_server(Command::new(BIN).args([
        "--port",
        "0",
        "--no-udp",
        "--max-pending",
        "1M",
        "--stall-timeout",
        "2s",
        "--log-level",
        "warn",
    ]));
    let addr = server.listening().tcp();
    let mut probe = connect_nodelay(addr);
    round_trip(&mut probe, 0);
    let baseline = server.memory_kib("VmRSS");

    let started = Instant::now();
    let threads: Vec<JoinHandle<Naive>> = (0..writers)
        .map(|_| {
            thread::spawn(move || {
                let mut stream = connect_nodelay(addr);
                // Longer than stall + slack: a timeout here means the server never cut us off.
                stream
                    .set_write_timeout(Some(Duration::from_secs(15)))
                    .unwrap();
                let chunk = pattern(64 * 1024);
                let mut written = 0u64;
                // Start of the run of writes that block (each waits > 100 ms for room).
                let mut stuck_since: Option<Instant> = None;
                while written < per_writer {
                    let call = Instant::now();
                    let result = stream.write(&chunk);
                    if call.elapsed() >= Duration::from_millis(100) {
                        stuck_since.get_or_insert(call);
                    }
                    match result {
                        Ok(n) => {
                            written += n as u64;
                            if call.elapsed() < Duration::from_millis(100) {
                                stuck_since = None;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(error) => {
                            return Naive {
                                written,
                                stuck_since: stuck_since.unwrap_or(call),
                                failed_at: Instant::now(),
                                error,
                            }
                        }
                    }
                }
                panic!("wrote all {per_writer} bytes without reading: nothing pushed back");
            })
        })
        .collect();

    // The probe's round trips while the writers fill every buffer and then hang.
    let mut latencies = Vec::new();
    let mut peak_during = 0;
    let probe_until = Instant::now() + WAIT;
    while threads.iter().any(|t| !t.is_finished()) && Instant::now() < probe_until {
        let at = Instant::now();
        round_trip(&mut probe, (latencies.len() % 251) as u8);
        latencies.push(at.elapsed());
        if latencies.len() % 64 == 0 {
            peak_during = peak_during.max(server.memory_kib("VmRSS"));
        }
        thread::sleep(Duration::from_millis(1));
    }
    let results: Vec<Naive> = threads
        .into_iter()
        .map(|t| t.join().expect("naive writer"))
        .collect();
    let peak = server.memory_kib("VmHWM");
    let rounds = latencies.len();
    let p50 = quantile(&mut latencies, 0.50);
    let p99 = quantile(&mut latencies, 0.99);
    let max = quantile(&mut latencies, 1.0);
    eprintln!(
        "naive writers: {writers} x up to {} MiB; server RSS baseline {baseline} KiB, \
         peak (VmHWM) {peak} KiB = +{:.1} MiB (sampled VmRSS max {peak_during} KiB)",
        per_writer >> 20,
        peak.saturating_sub(baseline) as f64 / 1024.0
    );
    eprintln!(
        "naive writers: probe {rounds} round trips: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(p50),
        ms(p99),
        ms(max)
    );
    for (i, naive) in results.iter().enumerate() {
        let stuck_for = naive.failed_at.duration_since(naive.stuck_since);
        eprintln!(
            "naive writers: #{i} wrote {:.1} MiB, cut off {:.2} s after its writes blocked \
             ({:.2} s after start): {}",
            naive.written as f64 / (1 << 20) as f64,
            stuck_for.as_secs_f64(),
            naive.failed_at.duration_since(started).as_secs_f64(),
            naive.error
        );
        assert!(
            matches!(
                naive.error.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
            ),
            "writer #{i} should be reset by the stall timeout, got: {}",
            naive.error
        );
        assert!(
            stuck_for <= stall + Duration::from_secs(3),
            "writer #{i} stuck {stuck_for:?}, beyond the stall timeout {stall:?} + slack"
        );
    }
    round_trip(&mut probe, 7);
    drop(probe);
    let summary = server.stop();
    let growth = peak.saturating_sub(baseline);
    assert_eq!(
        summary.get("closed_stalled"),
        writers as u64,
        "every writer stalled"
    );
    assert!(summary.get("backpressure_pauses") >= writers as u64);
    assert!(
        growth < 64 * 1024,
        "server memory grew {growth} KiB with {writers} naive writers at --max-pending 1M"
    );
    assert!(
        p99 < Duration::from_millis(50),
        "probe p99 {:.1} ms while naive writers hang",
        ms(p99)
    );
    growth
}

/// Eight clients that push 64 MiB each without ever reading: the server's memory stays bounded
/// by `--max-pending` (peak RSS well under 64 MiB above baseline), a probe client's round trips
/// stay fast, and each writer is reset by the stall timeout soon after it got stuck.
#[test]
fn naive_writers_are_bounded_and_cut_off_by_the_stall_timeout() {
    let _turn = one_at_a_time();
    naive_writers(8, 64 << 20);
}

/// Thirty-two naive writers.
#[test]
#[ignore = "stress: run by scripts/stress.sh"]
fn naive_writers_many() {
    let _turn = one_at_a_time();
    naive_writers(32, 64 << 20);
}
