//! Graceful shutdown in the middle of streams: every client gets a clean, byte-exact prefix of
//! its echo and then EOF (never a reset), and the drain ends well within its deadline. The
//! binary's signal handling (SIGTERM, SIGINT, a second signal) is in `binary.rs`.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use echoloop::Config;
use echoloop_testkit::{connect_with, Rng, TestServer};

/// A client thread runs at most this long, whatever its loop says.
const CLIENT_DEADLINE: Duration = Duration::from_secs(20);

/// `stop()` while eight clients stream in both directions: each client receives a byte-exact
/// prefix of what it sent, then EOF (never a reset, on either half); everything the server read it echoed;
/// and `stop()` returns well within the 3 s drain deadline.
#[test]
fn graceful_shutdown_mid_stream_ends_each_echo_with_a_clean_prefix() {
    const CLIENTS: usize = 8;
    // What must drain after `stop()` is what the server holds plus what sits in the kernel on
    // the way back; bound both (pending limit, client receive buffer) so the drain finishes
    // well before the deadline even on a loaded machine. At the deadline the server would cut
    // connections off, and the kernel would drop echo still in flight.
    let config = Config {
        max_pending: 1 << 20,
        low_water: 256 << 10,
        ..Default::default()
    };
    let server = TestServer::with_config(config);
    let addr = server.tcp();
    let mut rng = Rng::from_env("graceful_shutdown_mid_stream");
    // Each client sends this cyclically from its own offset, until its reader sees EOF.
    let source = Arc::new(rng.bytes(1 << 20));
    let received: Arc<Vec<AtomicUsize>> = Arc::new((0..CLIENTS).map(|_| 0.into()).collect());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let mut writer = connect_with(addr, None, Some(256 << 10));
            let mut reader = writer.try_clone().unwrap();
            let eof = Arc::new(AtomicBool::new(false));
            let (eof_seen, source_w, source_r) =
                (Arc::clone(&eof), Arc::clone(&source), Arc::clone(&source));
            let received = Arc::clone(&received);
            let offset = i * 4099;
            let seed = rng.next_u64();
            let writing = thread::spawn(move || {
                let mut rng = Rng::new(seed);
                let (mut sent, mut error) = (0usize, None);
                let deadline = Instant::now() + CLIENT_DEADLINE;
                while !eof.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let at = (offset + sent) % source_w.len();
                    let end = (at + rng.range(1, 32 << 10)).min(source_w.len());
                    if let Err(e) = writer.write_all(&source_w[at..end]) {
                        error = Some(e);
                        break;
                    }
                    sent += end - at;
                }
                let _ = writer.shutdown(Shutdown::Write);
                (sent, error)
            });
            let reading = thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                let mut got = 0usize;
                loop {
                    let n = match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => panic!("client {i}: read failed after {got} bytes: {e}"),
                    };
                    let mut checked = 0;
                    while checked < n {
                        let at = (offset + got) % source_r.len();
                        let len = (n - checked).min(source_r.len() - at);
                        let (data, want) = (&buf[checked..checked + len], &source_r[at..at + len]);
                        assert!(data == want, "client {i}: echo differs after {got} bytes");
                        (checked, got) = (checked + len, got + len);
                    }
                    received[i].fetch_add(n, Ordering::SeqCst);
                }
                eof_seen.store(true, Ordering::SeqCst);
                got
            });
            (writing, reading)
        })
        .collect();
    // Shut down mid-stream, once every client has had a good amount echoed (so the server has
    // accepted them all: closing the listener resets connections still in its backlog).
    let waiting = Instant::now();
    let everyone_streams = || {
        received
            .iter()
            .all(|r| r.load(Ordering::SeqCst) >= 256 << 10)
    };
    while !everyone_streams() {
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "clients never got going"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let stopping = Instant::now();
    let stats = server.stop();
    let stop_took = stopping.elapsed();
    eprintln!("stop() took {stop_took:?}; {stats}");
    let mut total_received = 0;
    for (writing, reading) in clients {
        let got = reading.join().expect("reader failed");
        let (sent, error) = writing.join().expect("writer failed");
        assert!(got <= sent, "received {got} of {sent} sent");
        // A write error would mean a reset. It must be checked here: a reset error is
        // reported once per socket, so if the writer took it, the reader saw a plain EOF.
        assert!(
            error.is_none(),
            "write failed after {sent} bytes: {error:?}"
        );
        total_received += got;
    }

    assert!(
        stop_took < Duration::from_secs(3),
        "stop() took {stop_took:?}: the drain deadline cut connections off"
    );
    assert_eq!(stats.closed_shutdown, CLIENTS as u64, "{stats}");
    assert_eq!(stats.closed_drain_timeout, 0, "{stats}");
    // Everything read before the drain was echoed; what was read while lingering (after our
    // FIN, waiting for the client's) is discarded by design and counted as such.
    assert_eq!(
        stats.tcp_bytes_in,
        stats.tcp_bytes_out + stats.tcp_discarded_linger,
        "{stats}"
    );
    assert!(stats.accounting_holds(), "{stats}");
    assert_eq!(stats.tcp_bytes_out, total_received as u64, "{stats}");
}

/// Ctrl-C with idle clients connected (nothing owed, nothing sent for a while): they are
/// closed at once with a clean EOF, not held for the whole drain timeout, while a client
/// that is still mid-echo lingers as before and gets its bytes.
#[test]
fn idle_clients_do_not_hold_shutdown_for_the_drain_timeout() {
    let server = TestServer::with_drain(Config {
        drain_timeout: Duration::from_secs(5),
        ..Config::default()
    });
    let mut idle: Vec<_> = (0..3)
        .map(|_| {
            let mut stream = echoloop_testkit::connect(server.tcp());
            echoloop_testkit::ping(&mut stream, b"hello, then nothing");
            stream
        })
        .collect();
    thread::sleep(Duration::from_millis(500)); // quiet for longer than the server's 200 ms
    let started = Instant::now();
    let stats = server.stop();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "shutdown took {took:?}: {stats}"
    );
    assert_eq!(stats.closed_shutdown, 3, "{stats}");
    assert_eq!(stats.closed_drain_timeout, 0, "{stats}");
    for stream in &mut idle {
        let mut buf = [0u8; 8];
        assert_eq!(stream.read(&mut buf).expect("EOF, not a reset"), 0);
    }
}
