//! Clients that reset (RST instead of FIN): mid-stream with echo unread and more in flight, and
//! with output pending at the server's limit. Each reset closes exactly its own connection,
//! counted as `Reset`, and steady bystanders never see a wrong, missing or extra byte.
//! Loopback, port 0, every loop bounded; the seed is printed.

use std::io::{Read, Write};
use std::thread;
use std::time::Duration;

use echoloop::Config;
use echoloop_testkit::{
    assert_same, connect, connect_with, pattern, reset, write_until_blocked, Rng, Steady,
    TestServer,
};

/// 500 clients reset mid-stream (SO_LINGER 0 with echo unread and more in flight) while 10
/// steady clients keep echoing: each reset closes exactly its own connection as `Reset`, and
/// the steady clients never see a wrong, missing or extra byte.
#[test]
fn five_hundred_resets_mid_stream_leave_steady_clients_exact() {
    let server = TestServer::start();
    let addr = server.tcp();
    let mut rng = Rng::from_env("five_hundred_resets");
    let steady: Vec<_> = (0..10)
        .map(|_| Steady::start(addr, rng.next_u64(), Duration::ZERO))
        .collect();
    let rude: Vec<_> = (0..10)
        .map(|_| {
            let seed = rng.next_u64();
            thread::spawn(move || {
                let mut rng = Rng::new(seed);
                for _ in 0..50 {
                    let mut stream = connect(addr);
                    let len = rng.range(1, 128 << 10);
                    let data = rng.bytes(len);
                    stream.write_all(&data).unwrap();
                    // Read part of the echo first: the connection is accepted and streaming.
                    let mut back = vec![0u8; rng.range(1, data.len().min(16 << 10))];
                    stream.read_exact(&mut back).unwrap();
                    assert_same(&back, &data[..back.len()]);
                    stream.write_all(&data).unwrap();
                    reset(stream);
                }
            })
        })
        .collect();
    for client in rude {
        client.join().expect("resetting client failed");
    }
    let rounds: u64 = steady.into_iter().map(Steady::finish).sum();
    let stats = server.stop();
    eprintln!("steady round trips: {rounds}");
    assert_eq!(stats.conn_accepted, 510, "{stats}");
    // Every reset is seen as one: the server reads or writes each of these connections after
    // the RST arrives, and both report ECONNRESET (or EPIPE), which is `Reset`.
    assert_eq!(stats.closed_reset, 500, "{stats}");
    assert_eq!(stats.closed_peer, 10, "{stats}");
    assert_eq!(stats.conn_closed, 510, "{stats}");
    assert_eq!(stats.pending_bytes, 0, "{stats}");
}

/// A client writes without reading until the server holds output for it at its limit, then
/// resets: the server closes that connection alone, as `Reset`, and frees its pending output;
/// steady clients are unaffected.
#[test]
fn reset_with_output_pending_closes_only_that_client() {
    let config = Config {
        max_pending: 256 << 10,
        low_water: 64 << 10,
        ..Default::default()
    };
    let server = TestServer::with_config(config);
    let addr = server.tcp();
    let mut rng = Rng::from_env("reset_with_output_pending");
    let steady: Vec<_> = (0..3)
        .map(|_| Steady::start(addr, rng.next_u64(), Duration::from_millis(10)))
        .collect();
    let mut hog = connect_with(addr, None, Some(16 << 10));
    // A second without taking a byte: full to the server's limit, not just a slow server.
    let (written, error) = write_until_blocked(
        &mut hog,
        &pattern(64 << 10),
        Duration::from_secs(1),
        256 << 20,
    );
    assert!(
        error.is_none(),
        "write failed after {written} bytes: {error:?}"
    );
    reset(hog);
    // Let the steady clients run on past the reset.
    thread::sleep(Duration::from_millis(200));
    let rounds: u64 = steady.into_iter().map(Steady::finish).sum();
    let stats = server.stop();
    eprintln!("hog wrote {written} bytes; steady round trips: {rounds}");
    assert!(
        stats.backpressure_pauses >= 1,
        "no output was pending: {stats}"
    );
    assert_eq!(stats.closed_reset, 1, "{stats}");
    assert_eq!(stats.closed_peer, 3, "{stats}");
    assert_eq!(stats.conn_closed, 4, "{stats}");
    assert_eq!(stats.pending_bytes, 0, "{stats}");
}
