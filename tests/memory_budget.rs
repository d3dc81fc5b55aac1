//! The global memory budget (`memory_budget`): above it, connections over a fair share pause
//! reading, and nobody is dropped for it. Clients that write without reading, and clients that
//! read slowly, both get every byte back, in order, then EOF. Loopback, port 0, every loop
//! bounded; the seed is printed. The per-connection limit alone is in `tcp_echo.rs`.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use echoloop::Config;
use echoloop_testkit::measure::one_at_a_time;
use echoloop_testkit::{
    assert_same, connect_nodelay, connect_with, pattern, read_to_eof, Rng, TestServer,
};

/// Four clients write 16 MiB each without reading, against a 2 MiB memory budget and 4 MiB
/// per-connection limit: the budget pauses reading (counted), nobody is dropped for it, and
/// once the clients read, each gets all its bytes back, byte-exact.
#[test]
fn memory_budget_pauses_readers_and_drops_nobody() {
    let _turn = one_at_a_time();
    const PER_CLIENT: usize = 16 << 20;
    let config = Config {
        memory_budget: 2 << 20,
        max_pending: 4 << 20,
        low_water: 1 << 20,
        ..Default::default()
    };
    let server = TestServer::with_config(config);
    let addr = server.tcp();
    let mut rng = Rng::from_env("memory_budget");
    let source = Arc::new(rng.bytes(PER_CLIENT + 4 * 4096));
    let mut clients = Vec::new();
    for i in 0..4 {
        // A small receive buffer keeps the echo in the server rather than in our kernel.
        let stream = connect_with(addr, None, Some(64 << 10));
        let mut writer = stream.try_clone().unwrap();
        let written = Arc::new(AtomicUsize::new(0));
        let progress = Arc::clone(&written);
        let source = Arc::clone(&source);
        let writing = thread::spawn(move || {
            for chunk in source[i * 4096..i * 4096 + PER_CLIENT].chunks(64 << 10) {
                writer.write_all(chunk).expect("write");
                progress.fetch_add(chunk.len(), Ordering::SeqCst);
            }
            writer.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
        });
        clients.push((stream, written, writing));
    }
    // Let the writers run into the limits: wait until none has made progress for a second
    // (a shorter pause can be a server that is merely slow on a loaded machine).
    let total = || -> usize { clients.iter().map(|c| c.1.load(Ordering::SeqCst)).sum() };
    let mut last = (total(), Instant::now());
    let waiting = Instant::now();
    while last.1.elapsed() < Duration::from_secs(1) && total() < 4 * PER_CLIENT {
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "writers never settled"
        );
        thread::sleep(Duration::from_millis(50));
        if total() != last.0 {
            last = (total(), Instant::now());
        }
    }
    eprintln!("written before reading: {} of {}", total(), 4 * PER_CLIENT);
    let readers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, (mut stream, _, writing))| {
            let source = Arc::clone(&source);
            thread::spawn(move || {
                let echoed = read_to_eof(&mut stream, PER_CLIENT);
                writing.join().expect("writer failed");
                assert_same(&echoed, &source[i * 4096..i * 4096 + PER_CLIENT]);
            })
        })
        .collect();
    for reader in readers {
        reader.join().expect("client failed");
    }
    let stats = server.stop();
    assert!(stats.memory_budget_pauses >= 1, "{stats}");
    assert_eq!(stats.closed_peer, 4, "{stats}");
    assert_eq!(stats.conn_closed, 4, "{stats}");
    assert_eq!(stats.tcp_bytes_out, 4 * PER_CLIENT as u64, "{stats}");
    assert_eq!(stats.pending_bytes, 0, "{stats}");
}

/// Eight clients stream 16 MiB each and read their echo slowly, against a 1 MiB memory
/// budget: the budget squeezes every connection's pending output to a fair share, pausing
/// reads, and every client still gets every byte back, in order, then EOF. (Regression: a
/// squeeze below what a connection already held used to make the next read zero-length,
/// which was taken for the client's FIN: echo cut short, then RST.)
#[test]
fn memory_budget_squeezes_without_losing_data() {
    let _turn = one_at_a_time();
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
            let writer = thread::spawn(move || -> std::io::Result<()> {
                for chunk in sent.chunks(64 * 1024) {
                    out.write_all(chunk)?;
                }
                out.shutdown(Shutdown::Write)
            });
            let data = Arc::clone(&data);
            let reader = thread::spawn(move || -> Result<(), String> {
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
