//! Fairness: one fast client cannot starve the rest. The per-wakeup read and write budgets cut
//! a busy connection's turn short and its ready queue resumes it without a new edge (a 4 MiB
//! burst under 4 KiB budgets), and ping-pong clients' tail latency beside a firehose stays
//! close to their latency alone, while a budgets-off negative control shows starvation.
//!
//! Latency figures are printed with `eprintln!` (`cargo test --test fairness -- --nocapture`).
//! The machine this runs on has 2 shared cores, so bounds are generous and relative (ratios
//! over interleaved windows). The longer run is `#[ignore]`d and run by `scripts/stress.sh`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use echoloop::Config;
use echoloop_testkit::measure::{ms, one_at_a_time, quantile};
use echoloop_testkit::{assert_same, close_cleanly, connect, connect_nodelay, pattern, TestServer};

/// One 4 MiB burst, then silence (no FIN), with 4 KiB read and write budgets: the server works
/// through it 4 KiB per turn from its ready queue, with no new edge to wake it, and echoes it
/// all while the connection stays open.
#[test]
fn burst_then_silence_is_echoed_in_full_with_tiny_budgets() {
    let _turn = one_at_a_time();
    let config = Config {
        read_budget: 4096,
        write_budget: 4096,
        ..Default::default()
    };
    let server = TestServer::with_config(config);
    let data = pattern(4 << 20);
    let mut stream = connect(server.tcp());
    let started = Instant::now();
    stream.write_all(&data).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut echoed = vec![0u8; data.len()];
    stream
        .read_exact(&mut echoed)
        .expect("the burst was not echoed in full within 15 s");
    eprintln!("4 MiB burst echoed in {:?}", started.elapsed());
    assert_same(&echoed, &data);
    close_cleanly(stream);
    let stats = server.stop();
    assert_eq!(stats.tcp_bytes_out, data.len() as u64, "{stats}");
    assert_eq!(stats.closed_peer, 1, "{stats}");
}

/// Budgets effectively off: the server reads and writes one connection until the socket says
/// `WouldBlock`, and (nearly) never pauses it for backpressure.
fn budgets_off(max_pending: usize) -> Config {
    Config {
        read_budget: usize::MAX / 2,
        write_budget: usize::MAX / 2,
        max_pending,
        // And the whole allowance for a firehose that reads its echo, as before there was a
        // small bound for reading peers: the control must let one drive read megabytes.
        max_pending_reading: max_pending,
        low_water: max_pending / 4,
        ..Config::default()
    }
}

/// What [`pingers_beside_firehose`] measured.
struct Fairness {
    /// p99 over all windows, alone and beside the firehose, in ms.
    p99_alone: f64,
    p99_beside: f64,
    /// Median over windows of p99 beside / max(p99 alone, 1 ms) in the same pair of windows.
    ratio: f64,
}

/// Latencies of 100 pingers (4 threads x 25 sockets), alone and beside a firehose, in
/// `windows` interleaved pairs of `window` each, so both sides of each pair see the same
/// background load on a shared machine; the median over pairs resists a passing spike.
fn pingers_beside_firehose(
    config: Config,
    label: &str,
    windows: usize,
    window: Duration,
) -> Fairness {
    let server = TestServer::with_config(Config {
        udp: false,
        ..config
    });
    let addr = server.tcp();
    // Warm up: connections, allocator, caches.
    run_pingers(addr, 100, 4, Duration::from_millis(200));
    let (mut all_alone, mut all_beside) = (Vec::new(), Vec::new());
    let (mut ratios, mut throughput) = (Vec::new(), Vec::new());
    for _ in 0..windows {
        let mut alone = run_pingers(addr, 100, 4, window);
        let firehose = Firehose::start(addr, window + Duration::from_millis(200));
        thread::sleep(Duration::from_millis(50));
        let mut beside = run_pingers(addr, 100, 4, window);
        match firehose.stop() {
            Ok(mib_s) => throughput.push(mib_s),
            Err(why) => panic!("{why}; the server's counters: {}", server.stop()),
        }
        let base = quantile(&mut alone, 0.99).max(Duration::from_millis(1));
        ratios.push(quantile(&mut beside, 0.99).as_secs_f64() / base.as_secs_f64());
        all_alone.extend(alone);
        all_beside.extend(beside);
    }
    let stats = server.stop();
    let fairness = Fairness {
        p99_alone: ms(quantile(&mut all_alone, 0.99)),
        p99_beside: ms(quantile(&mut all_beside, 0.99)),
        ratio: {
            ratios.sort_by(f64::total_cmp);
            ratios[ratios.len() / 2]
        },
    };
    let mib_s = throughput.iter().sum::<f64>() / throughput.len() as f64;
    eprintln!(
        "fairness ({label}): pingers p99 alone {:.2} ms ({} echoes), beside firehose {:.2} ms \
         ({} echoes); per-window ratios {ratios:.2?}, median {:.2}; firehose {mib_s:.0} MiB/s; \
         backpressure_pauses {}",
        fairness.p99_alone,
        all_alone.len(),
        fairness.p99_beside,
        all_beside.len(),
        fairness.ratio,
        stats.backpressure_pauses
    );
    fairness
}

/// With the default per-wakeup budgets, 100 ping-pong clients' p99 latency beside a client
/// that streams 64 KiB chunks flat out stays within 3x of their p99 alone (one fast client
/// cannot starve the rest); and, as a negative control, with the budgets off the same
/// firehose pushes their p99 past that bound, so this test can see starvation.
#[test]
fn firehose_does_not_starve_pingers() {
    assert_fair_and_control_starves(7, 3, Duration::from_millis(400), 32 << 20);
}

/// The same, longer, with the budgets-off control at a 256 MiB pending limit.
#[test]
#[ignore = "stress: run by scripts/stress.sh"]
fn firehose_does_not_starve_pingers_long() {
    assert_fair_and_control_starves(9, 3, Duration::from_secs(1), 256 << 20);
}

/// Budgets on: the pingers' median p99 ratio stays within 3x. Budgets off (the negative
/// control, with `control_pending` bytes of pending output allowed): it is more than twice
/// the budgets-on ratio (and above 2x), so the measurement can see starvation. (Not "above
/// 3x": on a loaded machine the pingers' p99 alone grows with the load, which shrinks every
/// ratio; a control window once measured 2.90x against 1.32x with budgets on.)
///
/// Up to [`ATTEMPTS`] measurements of the pair: a loaded machine (other builds on two cores)
/// sometimes stalls the pingers for a whole window on one side only, and that is the
/// machine, not the server. The behaviour is what every attempt would show: a server whose
/// budgets did not work fails all of them (the budgets-on ratio stays high), and so does a
/// measurement that cannot see starvation (the control stays low).
#[track_caller]
fn assert_fair_and_control_starves(
    windows_on: usize,
    windows_off: usize,
    window: Duration,
    control_pending: usize,
) {
    let _turn = one_at_a_time();
    let mut seen = Vec::new();
    for attempt in 1..=ATTEMPTS {
        let on = pingers_beside_firehose(Config::default(), "budgets on", windows_on, window);
        let off = pingers_beside_firehose(
            budgets_off(control_pending),
            "budgets off",
            windows_off,
            window,
        );
        let fair = on.ratio <= 3.0;
        let control_starves = off.ratio > 2.0 && off.ratio > 2.0 * on.ratio;
        if fair && control_starves {
            return;
        }
        eprintln!(
            "fairness attempt {attempt}: budgets on {:.2}x (fair: {fair}), budgets off \
             {:.2}x (starves: {control_starves})",
            on.ratio, off.ratio
        );
        seen.push((on.ratio, off.ratio));
    }
    panic!(
        "in {ATTEMPTS} attempts (budgets-on ratio, budgets-off ratio) = {seen:.2?}: with the \
         budgets on the pingers' p99 must stay within 3x of alone, and with them off the \
         firehose must starve them (above 2x, and above twice the budgets-on ratio)"
    );
}

/// Measurements of the fairness pair before the test fails (see
/// [`assert_fair_and_control_starves`]).
const ATTEMPTS: usize = 3;

/// `clients` ping-pong clients spread over `threads` threads; each thread writes 64 bytes to
/// each of its sockets, then reads every echo, round after round, for `duration`. Returns
/// one latency per echo: from the write on that socket to the end of its read.
#[track_caller]
fn run_pingers(
    addr: SocketAddr,
    clients: usize,
    threads: usize,
    duration: Duration,
) -> Vec<Duration> {
    let per_thread = clients / threads;
    let workers: Vec<JoinHandle<Vec<Duration>>> = (0..threads)
        .map(|_| {
            thread::spawn(move || {
                let mut sockets: Vec<TcpStream> =
                    (0..per_thread).map(|_| connect_nodelay(addr)).collect();
                let mut latencies = Vec::new();
                let mut sent_at = vec![Instant::now(); per_thread];
                let deadline = Instant::now() + duration;
                let mut round = 0u8;
                while Instant::now() < deadline {
                    round = round.wrapping_add(1);
                    let message = [round; 64];
                    for (socket, at) in sockets.iter_mut().zip(&mut sent_at) {
                        *at = Instant::now();
                        socket.write_all(&message).expect("pinger write");
                    }
                    for (socket, at) in sockets.iter_mut().zip(&sent_at) {
                        let mut back = [0u8; 64];
                        socket.read_exact(&mut back).expect("pinger read");
                        latencies.push(at.elapsed());
                        assert_eq!(back, message, "pinger echo differs");
                    }
                }
                latencies
            })
        })
        .collect();
    workers
        .into_iter()
        .flat_map(|w| w.join().expect("pinger thread"))
        .collect()
}

/// A client that streams 64 KiB chunks as fast as the server takes them while a second
/// thread reads the echo; stopped (half-close, read to EOF) and checked by [`Firehose::stop`].
struct Firehose {
    stop: Arc<AtomicBool>,
    writer: JoinHandle<u64>,
    reader: JoinHandle<Result<u64, String>>,
    started: Instant,
}

impl Firehose {
    /// Starts streaming; the writer stops by itself after `limit` at the latest, so a
    /// starved client waiting on the server never waits for more than that.
    #[track_caller]
    fn start(addr: SocketAddr, limit: Duration) -> Firehose {
        let mut out = connect_nodelay(addr);
        // Short write timeouts so the writer notices the stop flag while the server pushes back.
        out.set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut back = out.try_clone().expect("clone firehose socket");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let writer = thread::spawn(move || {
            let chunk = pattern(64 * 1024);
            let mut written = 0u64;
            let deadline = Instant::now() + limit;
            while !stopping.load(Ordering::Relaxed) && Instant::now() < deadline {
                match out.write(&chunk) {
                    Ok(n) => written += n as u64,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => panic!("firehose write failed after {written} bytes: {e}"),
                }
            }
            out.shutdown(Shutdown::Write).expect("firehose half-close");
            written
        });
        let reader = thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut read = 0u64;
            let started = Instant::now();
            loop {
                match back.read(&mut buf) {
                    Ok(0) => return Ok(read),
                    Ok(n) => read += n as u64,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // Reported with the server's counters by `pingers_beside_firehose`.
                    Err(e) => {
                        return Err(format!(
                            "firehose read failed after {read} bytes, {:?} in: {e}",
                            started.elapsed()
                        ))
                    }
                }
            }
        });
        Firehose {
            stop,
            writer,
            reader,
            started: Instant::now(),
        }
    }

    /// Stops writing, reads the rest to EOF, checks nothing was lost; returns MiB/s echoed,
    /// or why the echo did not come back.
    #[track_caller]
    fn stop(self) -> Result<f64, String> {
        self.stop.store(true, Ordering::Relaxed);
        let written = self.writer.join().expect("firehose writer");
        let read = self.reader.join().expect("firehose reader")?;
        assert_eq!(read, written, "the firehose got back what it sent");
        Ok(read as f64 / (1 << 20) as f64 / self.started.elapsed().as_secs_f64())
    }
}
