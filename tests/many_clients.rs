//! Many clients at once: hundreds (a thousand in the stress run) streaming random chunks
//! concurrently, each reading its echo while it sends; every client gets exactly its own bytes
//! back and the server's byte counters match. Loopback, port 0, every loop bounded in count
//! and time; the seed is printed (`ECHOLOOP_TEST_SEED` replays it).
//!
//! The heaviest scenario is `#[ignore]`d and run, in release mode, by `scripts/stress.sh`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use echoloop_testkit::{assert_same, connect, read_to_eof, Rng, TestServer};

/// A client thread runs at most this long, whatever its loop says.
const CLIENT_DEADLINE: Duration = Duration::from_secs(20);

/// 1,000 clients at once, each streaming 1 MiB in random chunks with up to 256 KiB in flight
/// and reading back in random amounts: every client gets exactly its own bytes back.
#[test]
#[ignore = "stress: run by scripts/stress.sh"]
fn thousand_clients_stream_a_mebibyte_each_byte_exact() {
    many_clients_stream_random_chunks("thousand_clients", 1000, 1 << 20);
}

/// The everyday variant of the stress test above: 200 clients at once, 128 KiB each.
#[test]
fn two_hundred_clients_stream_random_chunks_byte_exact() {
    many_clients_stream_random_chunks("two_hundred_clients", 200, 128 << 10);
}

/// Starts `clients` threads (small stacks), each sending `per_client` bytes in random chunks
/// and reading the echo in random amounts while it sends, then checks the server's byte counts.
#[track_caller]
fn many_clients_stream_random_chunks(name: &str, clients: usize, per_client: usize) {
    let server = TestServer::start();
    let addr = server.tcp();
    let mut rng = Rng::from_env(name);
    // One random source shared by all; each client sends a different window of it, so a byte
    // delivered to the wrong client shows up without generating a gigabyte in debug mode.
    let source = Arc::new(rng.bytes(per_client + (4 << 20)));
    // Everybody connects first, then all stream at once: without the gate, early threads
    // would be done before late ones start.
    let gate = Arc::new(Gate::new(clients));
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let seed = rng.next_u64();
            let source = Arc::clone(&source);
            let gate = Arc::clone(&gate);
            thread::Builder::new()
                .name(format!("client-{i}"))
                .stack_size(128 << 10)
                .spawn(move || {
                    let mut rng = Rng::new(seed);
                    let start = rng.range(0, source.len() - per_client);
                    let stream = connect(addr);
                    gate.wait();
                    stream_and_verify(stream, &source[start..start + per_client], &mut rng);
                })
                .expect("spawn client thread")
        })
        .collect();
    for client in threads {
        client.join().expect("client failed");
    }
    eprintln!(
        "{name}: {clients} x {per_client} B in {:?}",
        started.elapsed()
    );
    let stats = server.stop();
    let total = (clients * per_client) as u64;
    assert_eq!(stats.conn_accepted, clients as u64, "{stats}");
    assert_eq!(stats.closed_peer, clients as u64, "{stats}");
    assert_eq!(stats.tcp_bytes_in, total, "{stats}");
    assert_eq!(stats.tcp_bytes_out, total, "{stats}");
}

/// Sends `data` in random chunks, keeping at most 256 KiB unanswered, reads the echo in
/// random amounts as it goes, and checks every byte; ends with a half-close and EOF.
#[track_caller]
fn stream_and_verify(mut stream: TcpStream, data: &[u8], rng: &mut Rng) {
    const MAX_IN_FLIGHT: usize = 256 << 10;
    let mut buf = vec![0u8; 64 << 10];
    let (mut sent, mut received) = (0, 0);
    let deadline = Instant::now() + CLIENT_DEADLINE;
    while received < data.len() {
        assert!(
            Instant::now() < deadline,
            "stuck at {received} bytes echoed"
        );
        if sent < data.len() {
            let chunk = rng.range(1, 64 << 10).min(data.len() - sent);
            stream.write_all(&data[sent..sent + chunk]).unwrap();
            sent += chunk;
        }
        // Read a random share of what is in flight: all of it once everything is sent, at
        // least the excess over the window before.
        let in_flight = sent - received;
        let must = match sent == data.len() {
            true => in_flight,
            false => in_flight.saturating_sub(MAX_IN_FLIGHT),
        };
        let mut want = must + rng.range(0, in_flight - must);
        while want > 0 {
            let n = want.min(buf.len());
            let n = stream.read(&mut buf[..n]).expect("read echo");
            assert!(n > 0, "EOF after {received} of {} bytes", data.len());
            assert_same(&buf[..n], &data[received..received + n]);
            received += n;
            want -= n;
        }
    }
    stream.shutdown(Shutdown::Write).unwrap();
    assert!(
        read_to_eof(&mut stream, 0).is_empty(),
        "bytes after the echo"
    );
}

/// A start line for `n` threads, like `std::sync::Barrier` but with a deadline, so a thread
/// that failed before reaching it fails the others instead of hanging them.
struct Gate {
    arrived: AtomicUsize,
    n: usize,
}

impl Gate {
    fn new(n: usize) -> Gate {
        Gate {
            arrived: AtomicUsize::new(0),
            n,
        }
    }

    #[track_caller]
    fn wait(&self) {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + CLIENT_DEADLINE;
        while self.arrived.load(Ordering::SeqCst) < self.n {
            assert!(
                Instant::now() < deadline,
                "not all {} threads arrived",
                self.n
            );
            thread::sleep(Duration::from_millis(1));
        }
    }
}
