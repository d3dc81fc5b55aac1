//! The socket side of `check`: one TCP connection driven by a [`Plan`] (how much to send, in
//! what chunks and pauses, when to start reading, how fast to read, whether to half-close),
//! and [`Session`], a connection used turn by turn for small echoes.
//!
//! Blocking std sockets with timeouts on every call, a writer thread beside the reader: the
//! simplest shape in which a hanging server turns into a [`Failure`] instead of a hang. What
//! the bytes mean is decided by [`EchoStream`] (sans-IO); this file only moves them and
//! interprets the socket's errors (`WouldBlock`/`TimedOut` = the timeout fired, reset, EOF).

use super::compare::{EchoStream, Failure};
use super::queues;
use crate::payload::{Pattern, Rng};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// Time limits for every socket of a check.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Opening a connection.
    pub connect: Duration,
    /// Longest wait for any single read or write to make progress.
    pub io: Duration,
    /// Longest a whole connection's transfer may take.
    pub deadline: Duration,
}

/// When the client starts reading the echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStart {
    /// At once, while writing (a correct client).
    Concurrently,
    /// Only after writing everything (the classic tutorial client). If the server stops
    /// taking input for `stall` first, that is a deadlock when `strict`, otherwise the
    /// server's backpressure, and the client then starts reading.
    AfterWriting { stall: Duration, strict: bool },
}

/// How the client reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPace {
    /// As fast as the socket delivers.
    Fast,
    /// `chunk` bytes, then a `pause`; once, halfway, a longer `stop`.
    Slow {
        chunk: usize,
        pause: Duration,
        stop: Duration,
    },
}

/// What one connection does.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The stream sent (see [`Pattern`]).
    pub key: u64,
    /// Bytes to send.
    pub len: u64,
    /// Largest write; each write's size is drawn log-uniformly from 1 to this.
    pub max_chunk: usize,
    /// Chance (per 1,000 writes) of a pause after a write.
    pub pause_per_mille: u64,
    /// Longest such pause.
    pub max_pause: Duration,
    pub read_start: ReadStart,
    pub read_pace: ReadPace,
    /// Half-close after the last byte and require the server's FIN after the last echo
    /// (otherwise the client closes once everything came back).
    pub half_close: bool,
    /// Seed for chunk sizes and pauses.
    pub seed: u64,
}

impl Plan {
    /// A correct client: `len` bytes of stream `key` in random chunks up to 64 KiB with a
    /// few short random pauses, reading at once, closing when everything came back.
    pub fn new(key: u64, len: u64, seed: u64) -> Plan {
        Plan {
            key,
            len,
            max_chunk: 64 << 10,
            pause_per_mille: 30,
            max_pause: Duration::from_millis(3),
            read_start: ReadStart::Concurrently,
            read_pace: ReadPace::Fast,
            half_close: false,
            seed,
        }
    }
}

/// How one connection went.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<(), Failure>,
    pub sent: u64,
    pub received: u64,
    /// For [`ReadStart::AfterWriting`]: bytes the server took before the client read.
    pub taken_before_reading: Option<u64>,
    /// For a strict [`ReadStart::AfterWriting`] that wrote everything: whether the server's
    /// receive queue was seen empty before the client read (`Some(true)`: the server read
    /// every byte), or the server's socket is not visible from this host (`Some(false)`: a
    /// pass only shows that the buffers on the path held the data).
    pub server_read_all: Option<bool>,
    pub elapsed: Duration,
}

/// Draws a write size log-uniformly in `1..=max`, so one connection sees single bytes and
/// whole buffers alike.
pub fn chunk_size(rng: &mut Rng, max: usize) -> usize {
    let max = max.max(1);
    let bits = usize::BITS - max.leading_zeros(); // 1..=64
    let b = (rng.next_u64() % u64::from(bits)) as u32;
    let low = 1usize << b;
    let span = (low as u64).max(1);
    (low + (rng.next_u64() % span) as usize).min(max)
}

/// Opens a connection with every timeout set.
pub fn connect(addr: SocketAddr, limits: &Limits) -> Result<TcpStream, Failure> {
    let sock = TcpStream::connect_timeout(&addr, limits.connect)
        .map_err(|e| Failure::Connect(e.to_string()))?;
    let io = |e: io::Error| Failure::Io {
        step: "socket options",
        error: e.to_string(),
    };
    sock.set_nodelay(true).map_err(io)?;
    sock.set_read_timeout(Some(limits.io)).map_err(io)?;
    sock.set_write_timeout(Some(limits.io)).map_err(io)?;
    Ok(sock)
}

fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

/// State the writer and the reader of one connection share.
struct Shared {
    sock: TcpStream,
    sent: AtomicU64,
    /// Bytes the echo must have: the plan's length, or what was sent when stopped early.
    planned: AtomicU64,
    received: AtomicU64,
    failure: Mutex<Option<Failure>>,
    failed: AtomicBool,
    /// See [`Outcome::server_read_all`].
    server_read_all: Mutex<Option<bool>>,
}

impl Shared {
    /// Records the first failure and unblocks the other side (later ones are consequences).
    fn fail(&self, failure: Failure) {
        if let Ok(mut slot) = self.failure.lock() {
            if slot.is_none() {
                *slot = Some(failure);
            }
        }
        self.failed.store(true, Ordering::SeqCst);
        let _ = self.sock.shutdown(Shutdown::Both);
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }
}

/// Runs `plan` on a new connection to `addr`. Never hangs: every call is bounded by
/// `limits.io`, the whole by `limits.deadline`.
pub fn run(addr: SocketAddr, plan: &Plan, limits: &Limits) -> Outcome {
    run_until(addr, plan, limits, &AtomicBool::new(false))
}

/// [`run`], except that the client stops writing early once `stop` is set (and then
/// expects the echo of what it did send).
pub fn run_until(addr: SocketAddr, plan: &Plan, limits: &Limits, stop: &AtomicBool) -> Outcome {
    let start = Instant::now();
    let sock = match connect(addr, limits) {
        Ok(s) => s,
        Err(f) => {
            return Outcome {
                result: Err(f),
                sent: 0,
                received: 0,
                taken_before_reading: None,
                server_read_all: None,
                elapsed: start.elapsed(),
            }
        }
    };
    let writer_sock = match sock.try_clone() {
        Ok(s) => s,
        Err(e) => {
            return Outcome {
                result: Err(Failure::Io {
                    step: "clone socket",
                    error: e.to_string(),
                }),
                sent: 0,
                received: 0,
                taken_before_reading: None,
                server_read_all: None,
                elapsed: start.elapsed(),
            }
        }
    };
    let shared = Shared {
        server_read_all: Mutex::new(None),
        sock,
        sent: AtomicU64::new(0),
        planned: AtomicU64::new(plan.len),
        received: AtomicU64::new(0),
        failure: Mutex::new(None),
        failed: AtomicBool::new(false),
    };
    let deadline = start + limits.deadline;
    let (go_read, may_read) = mpsc::channel::<u64>();
    let taken = std::thread::scope(|scope| {
        let writer =
            scope.spawn(|| write_side(writer_sock, plan, limits, deadline, &shared, stop, go_read));
        let taken = match plan.read_start {
            ReadStart::Concurrently => None,
            // The writer always sends once (done, stalled or failed), or drops the sender.
            ReadStart::AfterWriting { .. } => may_read.recv().ok(),
        };
        read_side(plan, limits, deadline, &shared);
        if writer.join().is_err() {
            shared.fail(Failure::Io {
                step: "writer",
                error: "the writer thread panicked".into(),
            });
        }
        taken
    });
    let result = match shared.failure.into_inner() {
        Ok(Some(f)) => Err(f),
        _ => Ok(()),
    };
    Outcome {
        result,
        sent: shared.sent.into_inner(),
        received: shared.received.into_inner(),
        taken_before_reading: taken,
        server_read_all: shared.server_read_all.into_inner().ok().flatten(),
        elapsed: start.elapsed(),
    }
}

fn write_side(
    mut sock: TcpStream,
    plan: &Plan,
    limits: &Limits,
    deadline: Instant,
    shared: &Shared,
    stop: &AtomicBool,
    go_read: mpsc::Sender<u64>,
) {
    let pattern = Pattern::new(plan.key);
    let mut rng = Rng::new(plan.seed);
    let mut buf = vec![0u8; plan.max_chunk.max(1)];
    let mut sent = 0u64;
    let mut reading = plan.read_start == ReadStart::Concurrently;
    if let ReadStart::AfterWriting { stall, .. } = plan.read_start {
        let _ = sock.set_write_timeout(Some(stall));
    }
    while sent < plan.len && !shared.failed() {
        if stop.load(Ordering::SeqCst) {
            shared.planned.store(sent, Ordering::SeqCst);
            break;
        }
        let n = chunk_size(&mut rng, plan.max_chunk).min((plan.len - sent) as usize);
        pattern.fill(sent, &mut buf[..n]);
        let mut done = 0;
        while done < n {
            if shared.failed() {
                return;
            }
            if Instant::now() > deadline {
                return shared.fail(Failure::Deadline {
                    received: shared.received.load(Ordering::SeqCst),
                    expected: plan.len,
                    limit: limits.deadline,
                });
            }
            match sock.write(&buf[done..n]) {
                Ok(0) => {
                    return shared.fail(Failure::Io {
                        step: "write",
                        error: "the socket took no byte".into(),
                    })
                }
                Ok(k) => {
                    done += k;
                    sent += k as u64;
                    shared.sent.store(sent, Ordering::SeqCst);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if timed_out(&e) => match plan.read_start {
                    ReadStart::AfterWriting { stall, strict } if !reading => {
                        if strict {
                            return shared.fail(Failure::Deadlock {
                                sent,
                                planned: plan.len,
                                idle: stall,
                            });
                        }
                        // Backpressure: the server took all it will; now read.
                        reading = true;
                        let _ = go_read.send(sent);
                        let _ = sock.set_write_timeout(Some(limits.io));
                    }
                    _ => {
                        return shared.fail(Failure::NotReading {
                            sent,
                            expected: plan.len,
                            idle: limits.io,
                        })
                    }
                },
                Err(e) if reset(&e) => {
                    return shared.fail(Failure::Reset {
                        received: shared.received.load(Ordering::SeqCst),
                        expected: plan.len,
                    })
                }
                Err(e) => {
                    return shared.fail(Failure::Io {
                        step: "write",
                        error: e.to_string(),
                    })
                }
            }
        }
        if rng.next_u64() % 1000 < plan.pause_per_mille {
            let micros = plan.max_pause.as_micros().max(1) as u64;
            std::thread::sleep(Duration::from_micros(rng.next_u64() % micros));
        }
    }
    if let ReadStart::AfterWriting {
        stall,
        strict: true,
    } = plan.read_start
    {
        if !reading && !shared.failed() && sent == plan.len {
            match wait_until_read(&sock, sent, stall, deadline) {
                Ok(seen) => {
                    if let Ok(mut slot) = shared.server_read_all.lock() {
                        *slot = Some(seen);
                    }
                }
                Err(f) => return shared.fail(f),
            }
        }
    }
    if plan.half_close && !shared.failed() {
        if let Err(e) = sock.shutdown(Shutdown::Write) {
            shared.fail(Failure::Io {
                step: "half-close",
                error: e.to_string(),
            });
        }
    }
    if !reading {
        let _ = go_read.send(sent);
    }
}

/// After a client wrote all `sent` bytes without reading: waits until the server has read
/// them, i.e. until neither this socket's send queue nor the server's receive queue holds any
/// (both visible on this host for a loopback target). True when that happened with the
/// server's queue in view; false when the server's socket is not visible here (a remote
/// target: then only this side's queue is known). A failure when the bytes held make no
/// progress for `stall`: the server stopped reading, and only the buffers' size let the
/// client finish writing.
fn wait_until_read(
    sock: &TcpStream,
    sent: u64,
    stall: Duration,
    deadline: Instant,
) -> Result<bool, Failure> {
    let (Ok(me), Ok(server)) = (sock.local_addr(), sock.peer_addr()) else {
        return Ok(false);
    };
    let mut least = u64::MAX;
    let mut since = Instant::now();
    loop {
        let Some(mine) = queues::of(me, server) else {
            return Ok(false); // no /proc/net/tcp here: nothing to tell
        };
        let theirs = queues::of(server, me);
        let held = mine.send + theirs.map_or(0, |q| q.recv);
        if held == 0 {
            return Ok(theirs.is_some());
        }
        let now = Instant::now();
        if held < least {
            least = held;
            since = now;
        } else if now.duration_since(since) >= stall || now > deadline {
            return Err(Failure::HeldInBuffers {
                sent,
                held,
                idle: stall,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_side(plan: &Plan, limits: &Limits, deadline: Instant, shared: &Shared) {
    let mut sock = &shared.sock;
    let mut stream = EchoStream::new(plan.key);
    let mut buf = vec![0u8; 256 << 10];
    let (chunk, pause, mut stop) = match plan.read_pace {
        ReadPace::Fast => (buf.len(), Duration::ZERO, Duration::ZERO),
        ReadPace::Slow { chunk, pause, stop } => (chunk.clamp(1, buf.len()), pause, stop),
    };
    while !shared.failed() {
        let planned = shared.planned.load(Ordering::SeqCst);
        if stream.received() == planned && !plan.half_close {
            return;
        }
        if Instant::now() > deadline {
            return shared.fail(Failure::Deadline {
                received: stream.received(),
                expected: planned,
                limit: limits.deadline,
            });
        }
        match sock.read(&mut buf[..chunk]) {
            Ok(0) => {
                if let Err(f) = stream.on_eof(shared.planned.load(Ordering::SeqCst)) {
                    shared.fail(f);
                }
                return;
            }
            Ok(n) => {
                // Bounded by the plan, not by `sent`: an echo may be read before the writer
                // has recorded the write it answers.
                if let Err(f) = stream.on_data(&buf[..n], plan.len) {
                    return shared.fail(f);
                }
                shared.received.store(stream.received(), Ordering::SeqCst);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if timed_out(&e) => {
                let f = if stream.received() == planned {
                    Failure::NoFin {
                        received: planned,
                        idle: limits.io,
                    }
                } else {
                    Failure::Timeout {
                        received: stream.received(),
                        expected: planned,
                        idle: limits.io,
                    }
                };
                return shared.fail(f);
            }
            Err(e) if reset(&e) => {
                return shared.fail(Failure::Reset {
                    received: stream.received(),
                    expected: planned,
                })
            }
            Err(e) => {
                return shared.fail(Failure::Io {
                    step: "read",
                    error: e.to_string(),
                })
            }
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        if !stop.is_zero() && stream.received() >= plan.len / 2 {
            std::thread::sleep(std::mem::take(&mut stop));
        }
    }
}

/// A connection used turn by turn: send some bytes of its stream, then read their echo.
/// For small echoes only (what is sent at once must fit in the kernel's buffers).
pub struct Session {
    sock: TcpStream,
    key: u64,
    stream: EchoStream,
    sent: u64,
    limits: Limits,
}

impl Session {
    /// Opens a connection for stream `key`.
    pub fn open(addr: SocketAddr, key: u64, limits: &Limits) -> Result<Session, Failure> {
        Ok(Session {
            sock: connect(addr, limits)?,
            key,
            stream: EchoStream::new(key),
            sent: 0,
            limits: *limits,
        })
    }

    /// The stream's key.
    pub fn key(&self) -> u64 {
        self.key
    }

    /// Bytes sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The socket, for options a check needs (e.g. a reset on close).
    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }

    /// Sends the next `len` bytes of the stream, in one write call if the socket takes them.
    pub fn send(&mut self, len: usize) -> Result<(), Failure> {
        let mut buf = vec![0u8; len];
        Pattern::new(self.key).fill(self.sent, &mut buf);
        self.sock.write_all(&buf).map_err(|e| {
            if reset(&e) {
                Failure::Reset {
                    received: self.stream.received(),
                    expected: self.sent + len as u64,
                }
            } else if timed_out(&e) {
                Failure::NotReading {
                    sent: self.sent,
                    expected: self.sent + len as u64,
                    idle: self.limits.io,
                }
            } else {
                Failure::Io {
                    step: "write",
                    error: e.to_string(),
                }
            }
        })?;
        self.sent += len as u64;
        Ok(())
    }

    /// Reads until everything sent has come back, checking every byte.
    pub fn expect_all(&mut self) -> Result<(), Failure> {
        let mut buf = vec![0u8; 64 << 10];
        while self.stream.received() < self.sent {
            let want = ((self.sent - self.stream.received()) as usize).min(buf.len());
            match self.sock.read(&mut buf[..want]) {
                Ok(0) => return self.stream.on_eof(self.sent),
                Ok(n) => self.stream.on_data(&buf[..n], self.sent)?,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if timed_out(&e) => {
                    return Err(Failure::Timeout {
                        received: self.stream.received(),
                        expected: self.sent,
                        idle: self.limits.io,
                    })
                }
                Err(e) if reset(&e) => {
                    return Err(Failure::Reset {
                        received: self.stream.received(),
                        expected: self.sent,
                    })
                }
                Err(e) => {
                    return Err(Failure::Io {
                        step: "read",
                        error: e.to_string(),
                    })
                }
            }
        }
        Ok(())
    }

    /// One round trip of `len` bytes.
    pub fn echo(&mut self, len: usize) -> Result<(), Failure> {
        self.send(len)?;
        self.expect_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_cover_the_range_log_uniformly() {
        let mut rng = Rng::new(1);
        let sizes: Vec<usize> = (0..10_000).map(|_| chunk_size(&mut rng, 65_536)).collect();
        assert!(sizes.iter().all(|&s| (1..=65_536).contains(&s)));
        assert!(
            sizes.iter().filter(|&&s| s < 16).count() > 500,
            "small writes"
        );
        assert!(
            sizes.iter().filter(|&&s| s > 16_384).count() > 500,
            "large writes"
        );
        assert_eq!(chunk_size(&mut rng, 1), 1);
    }
}
