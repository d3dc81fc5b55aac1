//! The global memory budget (`memory_budget`): above it, connections over a fair share pause
//! reading, and nobody is dropped for it; clients that write without reading get every byte
//! back, in order, then EOF. Loopback, port 0, every loop bounded; the seed is printed. The
//! per-connection limit alone is in `tcp_echo.rs`; slow readers under the budget in
//! `slow_readers.rs`.

use std::io::Write;
use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use echoloop::Config;
use echoloop_testkit::{assert_same, connect_with, read_to_eof, Rng, TestServer};

/// Four clients write 16 MiB each without reading, against a 2 MiB memory budget and 4 MiB
/// per-connection limit: the budget pauses reading (counted), nobody is dropped for it, and
/// once the clients read, each gets all its bytes back, byte-exact.
#[test]
fn memory_budget_pauses_readers_and_drops_nobody() {
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
