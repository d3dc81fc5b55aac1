//! The idle and stall timeouts: a silent client is closed within its window while an active
//! one is not, and a client that writes but never reads is closed once its pending output
//! makes no progress, while a normal client is unaffected.
//!
//! Timing assertions are generous on purpose (the suite shares two cores with builds): they
//! check that a timer fires in its window, not how precisely.

use std::io::ErrorKind;
use std::thread;
use std::time::{Duration, Instant};

use echoloop::Config;
use echoloop_testkit::{
    connect, connect_with, expect_closed_within, pattern, write_until_blocked, Rng, Steady,
    TestServer,
};

/// With a 500 ms idle timeout, a silent client sees EOF no sooner than 500 ms and well before
/// 3 s, while a client pinging every 100 ms for three times as long is never closed.
#[test]
fn idle_timeout_closes_the_silent_client_only() {
    let timeout = Duration::from_millis(500);
    let config = Config {
        idle_timeout: Some(timeout),
        ..Default::default()
    };
    let server = TestServer::with_config(config);
    let addr = server.tcp();
    let mut rng = Rng::from_env("idle_timeout");
    let active = Steady::start(addr, rng.next_u64(), Duration::from_millis(100));
    let started = Instant::now();
    let mut idle = connect(addr);
    let closed_after = started.elapsed() + expect_closed_within(&mut idle, Duration::from_secs(3));
    eprintln!("idle client closed after {closed_after:?}");
    assert!(closed_after >= timeout, "closed early: {closed_after:?}");
    // The active client has now lived past the timeout; give it two more periods.
    thread::sleep(2 * timeout);
    let rounds = active.finish();
    // About 15 at 100 ms intervals; fewer on a loaded machine, but it must have kept going.
    assert!(
        rounds >= 5,
        "the active client was not active: {rounds} round trips"
    );
    let stats = server.stop();
    assert_eq!(stats.closed_idle, 1, "{stats}");
    assert_eq!(stats.closed_peer, 1, "{stats}");
}

/// With a 500 ms stall timeout, a client that writes and never reads fills the connection to
/// the server's limit and is closed once no output could be written for 500 ms (its writes
/// fail); a normal client meanwhile is unaffected.
#[test]
fn stall_timeout_closes_a_client_that_never_reads() {
    let timeout = Duration::from_millis(500);
    let config = Config {
        stall_timeout: Some(timeout),
        max_pending: 256 << 10,
        low_water: 64 << 10,
        ..Default::default()
    };
    let server = TestServer::with_config(config);
    let addr = server.tcp();
    let mut rng = Rng::from_env("stall_timeout");
    let normal = Steady::start(addr, rng.next_u64(), Duration::from_millis(20));
    let mut staller = connect_with(addr, None, Some(16 << 10));
    let started = Instant::now();
    let chunk = pattern(64 << 10);
    let mut written = 0;
    let mut blocked_at = None;
    // Keep writing: the first timeouts show the connection is full; the server's close ends
    // it with an error (RST, as the server closes with our input unread).
    let error = loop {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not closed after {:?}",
            started.elapsed()
        );
        let (n, error) =
            write_until_blocked(&mut staller, &chunk, Duration::from_millis(50), 1 << 30);
        written += n;
        match error {
            Some(e) => break e,
            None => {
                blocked_at.get_or_insert_with(|| started.elapsed());
            }
        }
    };
    let closed_after = started.elapsed();
    eprintln!(
        "staller wrote {written} bytes, blocked after {blocked_at:?}, closed after \
         {closed_after:?} ({error})"
    );
    assert!(
        matches!(
            error.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ),
        "{error}"
    );
    assert!(closed_after >= timeout, "closed early: {closed_after:?}");
    // The stall began when the server could no longer write to us: before our own writes
    // blocked, if they did (on a loaded machine the server may close us before they do).
    let stall_began_by = blocked_at.unwrap_or_default();
    assert!(
        closed_after < stall_began_by + Duration::from_secs(3),
        "closed {:?} after the stall began at the latest",
        closed_after - stall_began_by
    );
    drop(staller);
    let rounds = normal.finish();
    let stats = server.stop();
    eprintln!("normal client round trips: {rounds}");
    assert_eq!(stats.closed_stalled, 1, "{stats}");
    assert_eq!(stats.closed_peer, 1, "{stats}");
    assert_eq!(stats.conn_closed, 2, "{stats}");
}
