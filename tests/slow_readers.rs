//! Slow readers under the global memory budget: clients that stream flat out but read their
//! echo slowly, so output piles up on the server and the budget squeezes every connection to
//! a fair share; every byte still comes back, in order, then EOF.
//!
//! Kept in a test binary of its own: whether output piles up depends on how fast the server
//! runs against the readers, and a test that ran before it in the same process (its heap,
//! its threads) was seen to shift that enough to make the squeeze rare. Figures are printed
//! with `eprintln!` (`cargo test --test slow_readers -- --nocapture`).

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use echoloop::Config;
use echoloop_testkit::{connect_nodelay, pattern, TestServer};

/// Eight clients stream 16 MiB each and read their echo slowly, against a 1 MiB memory
/// budget: the budget squeezes every connection's pending output to a fair share, pausing
/// reads, and every client still gets every byte back, in order, then EOF. (Regression: a
/// squeeze below what a connection already held used to make the next read zero-length,
/// which was taken for the client's FIN: echo cut short, then RST.)
///
/// Each reader starts only once its writer is done or has made no progress for a second, so
/// output piles up on the server whatever the machine's speed: loopback's buffers on the way
/// back hold about 9 MiB, less than the 16 MiB sent, so the rest must wait on the server, at
/// the budget. (Reading from the start, as fast readers on an idle server or slow writers on
/// a loaded machine do, sometimes let nothing pile up: a run with no squeeze at all.)
#[test]
fn memory_budget_squeezes_without_losing_data() {
    const CLIENTS: usize = 8;
    const SIZE: usize = 16 << 20;
    let server = TestServer::with_config(Config {
        udp: false,
        memory_budget: 1 << 20,
        ..Config::default()
    });
    let addr = server.tcp();
    let data = Arc::new(pattern(SIZE));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let mut out = connect_nodelay(addr);
            let mut back = out.try_clone().expect("clone client socket");
            let sent = Arc::clone(&data);
            let written = Arc::new(AtomicUsize::new(0));
            let progress = Arc::clone(&written);
            let writer = thread::spawn(move || -> std::io::Result<()> {
                for chunk in sent.chunks(64 * 1024) {
                    out.write_all(chunk)?;
                    progress.fetch_add(chunk.len(), Ordering::Relaxed);
                }
                out.shutdown(Shutdown::Write)
            });
            let data = Arc::clone(&data);
            let reader = thread::spawn(move || -> Result<(), String> {
                // Wait (at most 20 s) for the writer to finish or block for a second.
                let (mut seen, mut since) = (0, Instant::now());
                let waited = Instant::now();
                while waited.elapsed() < Duration::from_secs(20) {
                    thread::sleep(Duration::from_millis(20));
                    let now = written.load(Ordering::Relaxed);
                    if now == SIZE || since.elapsed() >= Duration::from_secs(1) {
                        break;
                    }
                    if now != seen {
                        (seen, since) = (now, Instant::now());
                    }
                }
                let mut buf = vec![0u8; 64 * 1024];
                let mut at = 0;
                loop {
                    let n = back
                        .read(&mut buf)
                        .map_err(|e| format!("read at {at}: {e}"))?;
                    if n == 0 {
                        return match at {
                            SIZE => Ok(()),
                            short => Err(format!("EOF after {short} of {SIZE} bytes")),
                        };
                    }
                    if at + n > SIZE || buf[..n] != data[at..at + n] {
                        return Err(format!("echo differs at {at}"));
                    }
                    at += n;
                    // A slow reader, so that output piles up on the server.
                    thread::sleep(Duration::from_micros(500));
                }
            });
            (writer, reader)
        })
        .collect();
    let results: Vec<_> = clients
        .into_iter()
        .map(|(writer, reader)| {
            let read = reader.join().expect("reader thread");
            let wrote = writer.join().expect("writer thread");
            (read, wrote)
        })
        .collect();
    let elapsed = started.elapsed();
    let stats = server.stop();
    eprintln!(
        "memory budget: {CLIENTS} x {} MiB through a 1 MiB budget in {:.2} s; \
         backpressure_pauses {} (memory_budget_pauses {}), closed_peer {}",
        SIZE >> 20,
        elapsed.as_secs_f64(),
        stats.backpressure_pauses,
        stats.memory_budget_pauses,
        stats.closed_peer
    );
    for (i, (read, wrote)) in results.into_iter().enumerate() {
        if let Err(e) = read {
            panic!("client #{i}: {e}");
        }
        if let Err(e) = wrote {
            panic!("client #{i}: write failed: {e}");
        }
    }
    assert!(stats.memory_budget_pauses > 0, "the budget never squeezed");
    assert_eq!(stats.closed_peer, CLIENTS as u64);
    assert_eq!(stats.tcp_bytes_out, (CLIENTS * SIZE) as u64);
}
