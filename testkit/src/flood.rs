//! The flood: clients that write as fast as they can *and* read their echo, slower than they
//! write. Each connection has a writer thread (64 KiB chunks, blocking `write_all`) and a reader
//! thread (16 KiB reads), so the writer is held back only by backpressure: whatever the server
//! queues for a peer that is reading shows up as memory in the server and as latency here.
//!
//! A chunk's latency is the time from its `write_all` returning (the kernel took it) to its
//! last byte read back: the queueing between the client's send and its receive, kernel buffers
//! and the server's own. Every byte is checked in order (a position-keyed pattern), and the
//! flood ends by reading back all that was written.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::measure::quantile;

/// Bytes per write: 64 KiB.
pub const WRITE_CHUNK: usize = 64 * 1024;
/// Bytes per read: 16 KiB.
pub const READ_CHUNK: usize = 16 * 1024;
/// The pattern's period: a prime, so chunk boundaries fall everywhere in it.
const PERIOD: usize = 251;

/// What a flood measured.
#[derive(Debug, Clone)]
pub struct Flood {
    /// Bytes read back while writers were writing (the flood's echo rate is this / `duration`).
    pub echoed: u64,
    /// How long the writers wrote.
    pub duration: Duration,
    /// Chunk latencies, sorted.
    pub latencies: Vec<Duration>,
    /// The longest time any reader went between two reads that returned data while the
    /// writers wrote. A reader that went this long without reading may look, to a server, like
    /// a peer that stopped reading (on a loaded machine a reader thread can be descheduled
    /// that long): a bound on what is held for a *reading* peer is only tested when this is short.
    pub longest_read_gap: Duration,
}

impl Flood {
    /// Echoed bytes per second while the writers wrote.
    pub fn bytes_per_sec(&self) -> f64 {
        self.echoed as f64 / self.duration.as_secs_f64()
    }

    /// The `q` quantile of chunk latency.
    pub fn latency(&self, q: f64) -> Duration {
        quantile(&mut self.latencies.clone(), q)
    }
}

/// The byte at stream offset `at`.
fn byte_at(at: u64) -> u8 {
    (at % PERIOD as u64) as u8 ^ 0x5a
}

/// Floods `addr` with `conns` connections for `duration`, then half-closes and reads back
/// everything written. `during` is called about every 50 ms while the writers write (for
/// sampling the server). Panics on a wrong byte, an I/O error, or an I/O call blocked for 30 s.
#[track_caller]
pub fn flood(
    addr: SocketAddr,
    conns: usize,
    duration: Duration,
    mut during: impl FnMut(),
) -> Flood {
    let stop = Arc::new(AtomicBool::new(false));
    let pattern: Arc<Vec<u8>> = Arc::new((0..(WRITE_CHUNK + PERIOD) as u64).map(byte_at).collect());
    let mut handles = Vec::new();
    for _ in 0..conns {
        let stream = TcpStream::connect(addr).expect("connect flood client");
        stream.set_nodelay(true).expect("nodelay");
        // Bounded waits: a writer blocked for this long means the server stopped serving.
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut reader = stream.try_clone().expect("clone");
        let (sent, written) = mpsc::channel::<(u64, Instant)>();
        let (stop_w, out) = (Arc::clone(&stop), Arc::clone(&pattern));
        let writer = thread::spawn(move || {
            let mut stream = stream;
            let mut offset = 0u64;
            while !stop_w.load(Ordering::Relaxed) {
                let start = (offset % PERIOD as u64) as usize;
                let chunk = &out[start..start + WRITE_CHUNK];
                stream.write_all(chunk).expect("flood write");
                offset += WRITE_CHUNK as u64;
                if sent.send((offset, Instant::now())).is_err() {
                    break;
                }
            }
            let _ = stream.shutdown(std::net::Shutdown::Write);
            offset
        });
        let (stop_r, want) = (Arc::clone(&stop), Arc::clone(&pattern));
        let reading = thread::spawn(move || {
            let mut buf = vec![0u8; READ_CHUNK];
            let (mut offset, mut echoed) = (0u64, 0u64);
            let mut latencies = Vec::new();
            let mut waiting: Option<(u64, Instant)> = None;
            let (mut last_read, mut longest_gap) = (Instant::now(), Duration::ZERO);
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => panic!("flood read after {offset} bytes: {e}"),
                };
                let start = (offset % PERIOD as u64) as usize;
                assert!(
                    buf[..n] == want[start..start + n],
                    "bytes after {offset} differ"
                );
                offset += n as u64;
                let now = Instant::now();
                if !stop_r.load(Ordering::Relaxed) {
                    echoed += n as u64;
                    longest_gap = longest_gap.max(now.saturating_duration_since(last_read));
                }
                last_read = now;
                loop {
                    if waiting.is_none() {
                        waiting = written.try_recv().ok();
                    }
                    match waiting {
                        Some((end, at)) if end <= offset => {
                            latencies.push(now.saturating_duration_since(at));
                            waiting = None;
                        }
                        _ => break,
                    }
                }
            }
            (offset, echoed, latencies, longest_gap)
        });
        handles.push((writer, reading));
    }
    let started = Instant::now();
    while started.elapsed() < duration {
        thread::sleep(Duration::from_millis(50).min(duration.saturating_sub(started.elapsed())));
        during();
    }
    stop.store(true, Ordering::Relaxed);
    let duration = started.elapsed();
    let (mut echoed, mut latencies, mut longest_read_gap) = (0, Vec::new(), Duration::ZERO);
    for (writer, reading) in handles {
        let wrote = writer.join().expect("flood writer");
        let (read, while_writing, mut lat, gap) = reading.join().expect("flood reader");
        assert_eq!(read, wrote, "every byte written came back");
        echoed += while_writing;
        latencies.append(&mut lat);
        longest_read_gap = longest_read_gap.max(gap);
    }
    latencies.sort_unstable();
    Flood {
        echoed,
        duration,
        latencies,
        longest_read_gap,
    }
}
