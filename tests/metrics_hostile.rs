//! The `/metrics` endpoint under hostile connections, against the `echoloop` binary: hundreds
//! of silent, byte-at-a-time and oversized requests held open (and renewed) against the
//! metrics port must not keep a valid scrape from being answered within a second, must not
//! slow echo, and the server's descriptors come back once they are gone. Loopback, port 0,
//! every loop bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use echoloop_testkit::child::ChildProcess;
use echoloop_testkit::{connect, ping};

const BIN: &str = env!("CARGO_BIN_EXE_echoloop");

/// The bound the issue sets for a valid scrape under attack.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// Descriptors the process `pid` holds now.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .expect("read /proc/PID/fd")
}

/// One valid scrape; returns how long the answer took, or fails the test.
#[track_caller]
fn timed_scrape(metrics: SocketAddr) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(metrics).expect("connect to /metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: echoloop\r\n\r\n")
        .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let took = started.elapsed();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response:.200}");
    assert!(response.contains("echoloop_connections_accepted_total"));
    took
}

/// Opens `count` connections to `addr`, each sent `first` (nothing if empty), and never read.
fn open_hostile(addr: SocketAddr, count: usize, first: &[u8]) -> Vec<TcpStream> {
    (0..count)
        .filter_map(|_| {
            let mut stream = TcpStream::connect(addr).ok()?;
            if !first.is_empty() {
                // The server may already have answered 431 and stopped reading: fine.
                let _ = stream.write_all(first);
            }
            Some(stream)
        })
        .collect()
}

/// Silent, byte-at-a-time and oversized connections, 600 in all and renewed throughout, beside
/// valid scrapes and an echo client: every scrape is answered within a second, echo is
/// served throughout, and the descriptors come back.
#[test]
fn silent_slow_and_oversized_connections_cannot_lock_out_a_scrape() {
    let server = ChildProcess::spawn_server(std::process::Command::new(BIN).args([
        "--port",
        "0",
        "--no-udp",
        "--metrics",
        "127.0.0.1:0",
        "--log-level",
        "warn",
    ]));
    let listening = server.listening();
    let metrics = listening
        .metrics
        .expect("metrics=ADDR in the listening line");
    let pid = server.pid();
    let mut echo = connect(listening.tcp());
    ping(&mut echo, b"warm up");
    let idle_descriptors = descriptors(pid);

    // 200 silent connections, 200 oversized requests (16 KiB of header, never finished;
    // the server answers 431 after 8 KiB), and 200 that trickle one byte at a time.
    let mut oversized = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    oversized.resize(16 * 1024, b'a');
    let silent = open_hostile(metrics, 200, b"");
    let big = open_hostile(metrics, 200, &oversized);
    let slow = open_hostile(metrics, 200, b"G");
    let held = silent.len() + big.len() + slow.len();
    assert!(held >= 500, "only {held} hostile connections opened");

    // While the scrapes run, the trickle goes on and new silent connections keep coming.
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut slow = slow;
            let mut renewed = Vec::new();
            let until = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                for stream in &mut slow {
                    let _ = stream.write_all(b"E"); // closed by the server: ignored
                }
                renewed.extend(open_hostile(metrics, 20, b""));
                if renewed.len() > 400 {
                    renewed.drain(..200);
                }
                thread::sleep(Duration::from_millis(20));
            }
            (slow, renewed)
        })
    };

    let mut scrapes = Vec::new();
    let mut echoes = Vec::new();
    for round in 0..20u8 {
        scrapes.push(timed_scrape(metrics));
        let started = Instant::now();
        ping(&mut echo, &[round; 64]);
        echoes.push(started.elapsed());
        thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let (slow, renewed) = attacker.join().expect("attacker thread");
    let during = descriptors(pid);
    let slowest = scrapes.iter().max().copied().unwrap_or_default();
    let slowest_echo = echoes.iter().max().copied().unwrap_or_default();
    eprintln!(
        "under {held}+ hostile connections: 20 scrapes, slowest {slowest:?}; echo slowest \
         {slowest_echo:?}; server descriptors {idle_descriptors} idle, {during} during"
    );
    assert!(slowest < ANSWER_WITHIN, "a scrape took {slowest:?}");
    assert!(
        slowest_echo < ANSWER_WITHIN,
        "an echo took {slowest_echo:?}"
    );
    // 64 scrape slots at most, whatever was thrown at the port.
    assert!(
        during <= idle_descriptors + echoloop::metrics::MAX_SCRAPES + 2,
        "{during} descriptors during the attack (idle: {idle_descriptors})"
    );

    drop((silent, big, slow, renewed));
    // Every connection the server still holds sees our FIN and closes (or times out at 5 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    while descriptors(pid) > idle_descriptors && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(descriptors(pid), idle_descriptors, "descriptors came back");
    timed_scrape(metrics);
    drop(echo);
    server.stop();
}
