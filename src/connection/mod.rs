//! One TCP connection's echo state machine: its lifecycle, the readiness seen for it, and the
//! output it still owes the peer.
//!
//! What it is, honestly: socket-free, not I/O-free. A [`Connection`] is generic over the
//! [`Stream`] it is driven with and calls `read`, `write` (and, with a pipe, `splice`) on it
//! itself, so the same code runs on a TCP socket in the reactor and on a scripted stream in the
//! tests, the property tests and the fuzz target (see `script`). The decisions are made in one
//! pure function, `Connection::next_step` (phase, readiness and budget in, the next step out);
//! the step functions below it carry them out, and are the only place that calls the stream
//! and interprets `WouldBlock` and `Interrupted`. It keeps no counters and reads no clock: a
//! [`drive`](Connection::drive) call returns an [`Outcome`] that the caller accounts for.
//!
//! ```text
//!             read 0 (FIN)                    pending empty: shutdown(Write)
//!   Open ------------------> PeerClosed ----------------------------------> Closed
//!     |                                                                      ^
//!     | server shutdown                                                      |
//!     v        pending empty: shutdown(Write)          read 0 (peer's FIN)   |
//!   Draining --------------------------------> Lingering --------------------+
//!     ^                                             ^
//!   Finishing (the service said close) -- FIN ------+
//!   (any phase) -- reset / I/O error ----------------------------------------^
//!   (any phase) -- Connection::abort (the reactor's timeouts, drain deadline) -^
//! ```
//!
//! A connection without a service echoes (the fast path below). One made
//! [`with_service`](Connection::with_service) hands its input to a sans-IO
//! [`Service`] instead and sends what it writes, through the same
//! pending buffer, limits and budgets: the service may speak first (`on_open`), stream while
//! the peer reads (`on_writable`, at most the write budget per call), and close, which
//! flushes, sends FIN and lingers as a shutdown does.
//!
//! Pending output waits in this connection's own buffer (read into the shared scratch buffer,
//! write straight back, keep only the unsent rest). The buffer is a queue of fixed-size blocks
//! from a per-thread free list (`blocks`): it grows without reallocating, blocks sent are
//! reused warm instead of faulting in fresh pages, and blocks nobody needs any more go back
//! to the operating system (the reactor asks `blocks` to decay and release them). A bulk
//! connection may also be given a kernel pipe (`Connection::use_pipe`, see `zero_copy`):
//! input is then spliced into the pipe and out again, never copied. Everything about the pipe
//! (the pipe itself, how many bytes it holds, whether it may be full, whether one can be had
//! at all) lives in one field, `Pending::pipe`. The pipe is small (256 KiB), so when it is full and the peer is not
//! reading, input goes to the buffer as before, behind the pipe's older bytes: the pending
//! limit, and with it the guarantee that a client may write megabytes before it reads, stays
//! the same.
//!
//! Readiness is tracked here, in user space: mio is edge-triggered, so after an event the
//! connection stays `readable` until a read says `WouldBlock` (or a short read shows the socket
//! was drained), and `writable` until a write says `WouldBlock`. That lets the reactor register
//! each socket once and never call `epoll_ctl` again, and lets a connection cut short by its
//! per-wakeup budget resume later without waiting for an edge that will not come.
//!
//! Files: this one holds the state machine (phases, `next_step`, the echo fast path, the
//! buffer, backpressure, the calls that interpret `WouldBlock`); `pipe` the zero-copy path's
//! steps and the pipe's bookkeeping; `session` a service's session (when it speaks, how its
//! output joins the pending buffer); `blocks` the buffer's blocks; `close` the close reasons.

pub(crate) mod blocks;
mod close;
mod pipe;
#[cfg(any(test, feature = "fuzzing"))]
pub mod script;
mod session;

use std::io::{self, IoSlice, Read, Write};
use std::ops::BitOr;

use self::blocks::{BlockQueue, MAX_SLICES};

pub use self::close::CloseReason;
use crate::service::Service;

/// A non-blocking byte stream: a TCP socket in production, a script in tests.
pub trait Stream: Read + Write {
    /// Sends FIN: the peer reads EOF after every byte written so far.
    fn shutdown_write(&mut self) -> io::Result<()>;
}

impl Stream for mio::net::TcpStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

/// A kernel pipe that moves a connection's bytes between itself and stream `S` without
/// copying them into user space (`splice(2)`; see `zero_copy`). Attached with
/// `Connection::use_pipe`; the connection calls these only while it has one.
pub trait Splice<S> {
    /// Moves up to `max` input bytes from `stream` into the pipe. `Ok(0)` is the peer's FIN;
    /// `WouldBlock` means no input *or* a full pipe (the kernel does not say which).
    fn splice_in(&mut self, stream: &mut S, max: usize) -> io::Result<usize>;

    /// Moves up to `max` bytes from the pipe to `stream` (the peer).
    fn splice_out(&mut self, stream: &mut S, max: usize) -> io::Result<usize>;
}

/// The pipe type of a connection that never gets one: it has no values, so a
/// `Connection<NoPipe>` provably always copies.
#[derive(Debug)]
pub enum NoPipe {}

impl<S> Splice<S> for NoPipe {
    fn splice_in(&mut self, _: &mut S, _: usize) -> io::Result<usize> {
        match *self {}
    }

    fn splice_out(&mut self, _: &mut S, _: usize) -> io::Result<usize> {
        match *self {}
    }
}

/// What the poller reported for a connection's socket. Events may be spurious; a wrong `true`
/// costs one `WouldBlock`, never correctness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readiness {
    /// Input may be waiting (`EPOLLIN`).
    pub readable: bool,
    /// The send buffer may have room (`EPOLLOUT`), or the write side is closed (then the
    /// next write reports the error).
    pub writable: bool,
    /// The peer's FIN or an error came with the event (`EPOLLRDHUP`, `EPOLLERR`): no new edge
    /// will follow, so reading goes on until a read returns 0 instead of stopping at a short
    /// read. Implies `readable`.
    pub read_closed: bool,
}

impl Readiness {
    /// Readable only.
    pub const READABLE: Readiness = Readiness {
        readable: true,
        writable: false,
        read_closed: false,
    };
    /// Writable only.
    pub const WRITABLE: Readiness = Readiness {
        readable: false,
        writable: true,
        read_closed: false,
    };
    /// The read side closed (which makes it readable too: the read returns 0).
    pub const READ_CLOSED: Readiness = Readiness {
        readable: true,
        writable: false,
        read_closed: true,
    };
}

impl BitOr for Readiness {
    type Output = Readiness;

    fn bitor(self, other: Readiness) -> Readiness {
        Readiness {
            readable: self.readable || other.readable,
            writable: self.writable || other.writable,
            read_closed: self.read_closed || other.read_closed,
        }
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading and echoing.
    Open,
    /// The peer sent FIN: flush what is pending, then send ours and close.
    PeerClosed,
    /// The server is shutting down: stop echoing, flush what is pending, then send FIN.
    Draining,
    /// The service said it is done (daytime, time): flush what is pending, then send FIN
    /// and linger.
    Finishing,
    /// Our FIN is sent during shutdown (or after the service finished); read and discard until
    /// the peer's FIN, so that closing never finds unread input (which would make the kernel
    /// send RST).
    Lingering,
    /// Finished, awaiting removal: the connection does nothing more, and the reactor takes
    /// it out of its slab at its next teardown (`Server::remove_finished`).
    Closed(CloseReason),
}

/// Per-connection limits for one `drive` call. The reactor picks them before every drive
/// (`MemoryBudget::limits_for`): the high-water mark is `Config::max_pending_reading`
/// (256 KiB) while the peer reads, `Config::max_pending` (32 MiB) once its output made no
/// progress for 200 ms, and in either case no more than the global memory budget leaves
/// (defaults shown; see `reactor::memory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Stop reading when this many bytes are pending.
    pub high_water: usize,
    /// Resume reading when pending falls to this many bytes.
    pub low_water: usize,
    /// Bytes read per `drive` call.
    pub read_budget: usize,
    /// Bytes flushed from pending output per `drive` call. Soft: the fast path still writes
    /// back what it has just read, so one call writes at most `read_budget + write_budget`.
    pub write_budget: usize,
}

/// What one `drive` call did: for the caller's ready queue, timers and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The budget ran out with work left: run again next turn, no new event will come.
    pub yielded: bool,
    /// Bytes read from the peer (and echoed or pending).
    pub bytes_read: usize,
    /// Bytes written to the peer.
    pub bytes_written: usize,
    /// Bytes read and thrown away while lingering after shutdown (not echoed, by design).
    pub bytes_discarded: usize,
    /// Bytes a service wrote beyond the bytes it was given in the same call (chargen,
    /// daytime, time). Echo generates none.
    pub bytes_generated: usize,
    /// Bytes read and handed to a service that wrote fewer back in the same call (discard
    /// writes none): consumed by design, never sent. Echo consumes none.
    pub bytes_consumed: usize,
    /// Times reading paused at the high-water mark during this call (backpressure).
    pub pauses: usize,
}

impl Outcome {
    /// Every byte taken from the peer: read to be answered, or read and discarded while
    /// lingering. The books: `bytes_in + bytes_generated = bytes_written + bytes_dropped +`
    /// the change in pending output.
    pub fn bytes_in(&self) -> usize {
        self.bytes_read + self.bytes_discarded
    }

    /// Every byte taken in that will never be sent: discarded while lingering, or consumed
    /// by a service.
    pub fn bytes_dropped(&self) -> usize {
        self.bytes_discarded + self.bytes_consumed
    }
}

/// The next thing a connection can do with the readiness and budget it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Flush,
    ReadAndEcho,
    ReadIntoPipe,
    OpenService,
    ReadIntoService,
    Produce,
    FinishWriting,
    Discard,
}

/// A service's staging buffer is kept between calls up to this capacity (so a quiet
/// connection holds little, and a replying one does not allocate per call).
const STAGING_KEPT: usize = 4096;
/// A streaming service writes at most this much per call, and keeps a staging buffer this
/// large while it streams: below the allocator's `mmap` threshold, so no call maps and
/// unmaps fresh pages. A turn still streams up to the write budget, a chunk at a time.
const PRODUCE_CHUNK: usize = 64 * 1024;

/// The protocol of a connection that is not echo: its [`Service`] value and where it is.
struct Session {
    service: Box<dyn Service>,
    /// `Service::streams`, read once.
    streams: bool,
    /// `on_open` has run.
    opened: bool,
    /// The service asked to close: the linger after our FIN ends as an orderly close.
    finished: bool,
    /// `on_writable` wrote nothing last time: ask again only after new input (no busy loop).
    idle: bool,
    /// Where the service writes before its bytes join the pending blocks; kept between calls
    /// unless it grew large (a chargen turn), so a quiet connection holds little.
    staging: Vec<u8>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("streams", &self.streams)
            .field("opened", &self.opened)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// Output owed to the peer, oldest first: what waits in the pipe, then the buffer.
#[derive(Debug)]
struct Pending<P> {
    /// The zero-copy side: all the pipe state there is.
    pipe: PipeState<P>,
    /// Bytes in this connection's heap buffer. Empty, with no allocation, while the fast path
    /// keeps up. New input goes here, never into the pipe, while it holds anything.
    buffer: BlockQueue,
}

/// A connection's zero-copy pipe, from "none yet" to "attached".
#[derive(Debug)]
enum PipeState<P> {
    /// Copying; a pipe may still be attached.
    None,
    /// Copying for good: making a pipe failed (out of descriptors), so none is offered again.
    Unavailable,
    /// Input goes through this pipe, moved by `splice`.
    Attached {
        pipe: P,
        /// Bytes in the pipe, never copied into user space.
        queued: usize,
        /// A splice into the pipe said `WouldBlock` while it held bytes. It may be full (the
        /// kernel does not say which side blocked), so input goes to the buffer until a flush
        /// makes room in the pipe.
        maybe_full: bool,
    },
}

impl<P> Pending<P> {
    /// Nothing owed, no pipe.
    fn empty() -> Pending<P> {
        Pending {
            pipe: PipeState::None,
            buffer: BlockQueue::new(),
        }
    }

    /// Bytes waiting in the pipe (0 without one).
    fn in_pipe(&self) -> usize {
        match self.pipe {
            PipeState::Attached { queued, .. } => queued,
            _ => 0,
        }
    }

    /// All bytes owed: the pipe's, then the buffer's.
    fn len(&self) -> usize {
        self.in_pipe() + self.buffer.len()
    }

    /// True when it owes nothing and holds nothing (no heap buffer, no pipe decision): the
    /// connection can drop it.
    fn holds_nothing(&self) -> bool {
        matches!(self.pipe, PipeState::None) && self.buffer.capacity() == 0
    }
}

/// What is left of one `drive` call's budgets, in bytes.
#[derive(Debug, Clone, Copy)]
struct Budget {
    read: usize,
    write: usize,
}

impl Budget {
    /// No budget: to ask whether any step is left at all.
    const UNLIMITED: Budget = Budget {
        read: usize::MAX,
        write: usize::MAX,
    };

    /// Counts `n` bytes written. The write budget is soft (the fast path writes back what it
    /// has just read even when it is spent), so it stops at zero instead of underflowing.
    fn spend_write(&mut self, n: usize, outcome: &mut Outcome) {
        self.write = self.write.saturating_sub(n);
        outcome.bytes_written += n;
    }
}

/// One echo connection: lifecycle, readiness and pending output, with the zero-copy pipe of
/// type `P` once it has one (`NoPipe`: never). No socket inside; it is lent to
/// [`Connection::drive`].
#[derive(Debug)]
pub struct Connection<P = NoPipe> {
    phase: Phase,
    /// Bytes read but not yet written back, and the pipe. Boxed and made only when needed (the
    /// first byte the socket would not take, or a pipe), and dropped once it holds nothing
    /// again: an idle connection is a few bytes of state, not the ~60 of an empty `Pending`
    /// (memory per idle connection is a headline figure; see `tests/idle_memory.rs`).
    pending: Option<Box<Pending<P>>>,
    /// Backpressure: pending output reached the high-water mark, so reading waits.
    paused: bool,
    /// What the poller reported, kept until a call says `WouldBlock` (edge-triggered).
    ready: Readiness,
    /// The service, for a connection that does not echo; `None` is the echo fast path.
    /// Boxed: an echo connection pays one pointer for it, not the session's size.
    session: Option<Box<Session>>,
}

impl<P> Default for Connection<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> Connection<P> {
    /// A fresh, open connection that has seen no readiness yet.
    pub fn new() -> Self {
        Connection {
            phase: Phase::Open,
            pending: None,
            paused: false,
            ready: Readiness::default(),
            session: None,
        }
    }

    /// True when this connection echoes (no service), the only kind that may take a pipe.
    pub fn is_echo(&self) -> bool {
        self.session.is_none()
    }

    /// True once the service finished and the connection only waits for the peer's FIN (a
    /// peer that never sends it is closed by the stall timeout).
    pub fn awaits_peer_close(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.finished)
            && matches!(self.phase, Phase::Finishing | Phase::Lingering)
    }

    /// Where the connection is in its life.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// How it ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self.phase {
            Phase::Closed(reason) => Some(reason),
            _ => None,
        }
    }

    /// Bytes owed to the peer.
    pub fn pending(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.len())
    }

    /// The pending output and pipe, made on first use.
    fn owed_mut(&mut self) -> &mut Pending<P> {
        self.pending
            .get_or_insert_with(|| Box::new(Pending::empty()))
    }

    /// Drops the pending output's box once it holds nothing.
    fn release_if_empty(&mut self) {
        if self.pending.as_ref().is_some_and(|p| p.holds_nothing()) {
            self.pending = None;
        }
    }

    /// Heap bytes held for pending output (zero for an idle connection; bytes in the pipe are
    /// kernel memory, not counted here).
    pub fn buffer_capacity(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.buffer.capacity())
    }

    /// True while backpressure stops reading.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Records readiness reported by the poller, until a call says `WouldBlock`.
    pub fn on_readiness(&mut self, ready: Readiness) {
        self.ready = self.ready | ready;
        self.ready.readable |= ready.read_closed;
    }

    /// Server shutdown: stop echoing new input; flush, send FIN, then linger.
    pub fn begin_drain(&mut self) {
        if self.phase == Phase::Open {
            self.phase = Phase::Draining;
        }
    }

    /// Closes without further I/O (an error, a timeout, the drain deadline). Pending output
    /// stays counted until the reactor drops the connection.
    pub fn abort(&mut self, reason: CloseReason) {
        if !matches!(self.phase, Phase::Closed(_)) {
            self.phase = Phase::Closed(reason);
        }
    }

    /// Does as much I/O on `io` as readiness and the per-call budget allow, and says what it
    /// did.
    ///
    /// `scratch` is the reactor's shared read buffer: input is read there and written straight
    /// back; only what the socket will not take is copied into this connection's own buffer.
    pub fn drive<S: Stream>(&mut self, io: &mut S, scratch: &mut [u8], limits: &Limits) -> Outcome
    where
        P: Splice<S>,
    {
        let mut budget = Budget {
            read: limits.read_budget,
            write: limits.write_budget,
        };
        let mut outcome = Outcome::default();
        // The limits can be lower than on the last call (the memory budget lowers them), so
        // pending output may already be at or above the high-water mark: pause first. Reading
        // with no room would ask for zero bytes, and a zero-byte read looks like the peer's FIN.
        self.update_backpressure(limits, &mut outcome);
        while let Some(step) = self.next_step(self.ready, budget) {
            let result = match step {
                Step::Flush => self.flush(io, &mut budget, &mut outcome),
                Step::ReadAndEcho => {
                    self.read_and_echo(io, scratch, limits, &mut budget, &mut outcome)
                }
                Step::ReadIntoPipe => self.read_into_pipe(io, limits, &mut budget, &mut outcome),
                Step::OpenService => {
                    self.call_service(limits.high_water, 0, &mut outcome, |service, out| {
                        service.on_open(out)
                    });
                    Ok(())
                }
                Step::ReadIntoService => {
                    self.read_into_service(io, scratch, limits, &mut budget, &mut outcome)
                }
                Step::Produce => {
                    self.produce(limits, &budget, &mut outcome);
                    Ok(())
                }
                Step::FinishWriting => self.finish_writing(io),
                Step::Discard => self.discard(io, scratch, &mut budget, &mut outcome),
            };
            if let Err(reason) = result {
                self.abort(reason);
            }
            self.update_backpressure(limits, &mut outcome);
        }
        // Out of steps: either readiness is used up (wait for the next edge) or the budget is
        // (yield: with a fresh budget there would still be a step to take).
        outcome.yielded = self.next_step(self.ready, Budget::UNLIMITED).is_some();
        self.release_if_empty();
        outcome
    }

    /// True when the socket's readiness as `poll(2)` reports it now (`level`, not an edge)
    /// would give this connection a step to take. A connection that is not queued and says
    /// yes here, and still says yes a while later with no byte moved in between, has work
    /// that no wake-up is coming for: its edge was lost, or a call said `WouldBlock` for
    /// another reason than the one this state machine assumed (see the reactor's `watchdog`).
    pub fn could_act_on(&self, level: Readiness) -> bool {
        let mut ready = self.ready | level;
        ready.readable |= level.read_closed;
        self.next_step(ready, Budget::UNLIMITED).is_some()
    }

    /// The state machine proper, and pure: what to do next, given phase, readiness and budget.
    /// Pending output always goes first: it is older than anything still to be read.
    fn next_step(&self, ready: Readiness, budget: Budget) -> Option<Step> {
        let can_write = ready.writable && budget.write > 0;
        let can_read = ready.readable && budget.read > 0;
        let pending = self.pending();
        match self.phase {
            Phase::Closed(_) => None,
            _ if pending > 0 && can_write => Some(Step::Flush),
            // One pointer test keeps echo's path as it was; services decide apart.
            Phase::Open if self.session.is_some() => self.next_service_step(can_read, can_write),
            Phase::Open if can_read && !self.paused => {
                let pipe_takes_input = self.pending.as_ref().is_some_and(|p| {
                    p.buffer.is_empty()
                        && matches!(
                            p.pipe,
                            PipeState::Attached {
                                maybe_full: false,
                                ..
                            }
                        )
                });
                Some(if pipe_takes_input {
                    Step::ReadIntoPipe
                } else {
                    Step::ReadAndEcho
                })
            }
            Phase::PeerClosed | Phase::Draining | Phase::Finishing if pending == 0 => {
                Some(Step::FinishWriting)
            }
            Phase::Lingering if can_read => Some(Step::Discard),
            _ => None,
        }
    }

    /// Step `Flush`: writes up to the write budget of pending output, the pipe's bytes first.
    fn flush<S: Stream>(
        &mut self,
        io: &mut S,
        budget: &mut Budget,
        outcome: &mut Outcome,
    ) -> Result<(), CloseReason>
    where
        P: Splice<S>,
    {
        // The pipe's bytes are the older ones: they go first.
        let in_pipe = self.pending_in_pipe();
        if in_pipe > 0 {
            return self.send_from_pipe(io, in_pipe.min(budget.write), budget, outcome);
        }
        // Up to MAX_SLICES blocks in one `writev`. Blocks sent go back to the free list, and
        // an emptied queue holds no heap memory: an idle connection holds no buffer.
        let buffer = &mut self.owed_mut().buffer;
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let count = buffer.front_slices(budget.write, &mut slices);
        let chunk: usize = slices[..count].iter().map(|slice| slice.len()).sum();
        match write_nonblocking_with(chunk, || io.write_vectored(&slices[..count]))? {
            Some(n) => {
                buffer.advance(n);
                budget.spend_write(n, outcome);
            }
            None => self.ready.writable = false,
        }
        Ok(())
    }

    /// One read into `scratch`, bounded by the read budget and by the room left under the
    /// high-water mark: `Some(n)` bytes read (never 0); `None` when the socket had nothing
    /// (`WouldBlock`) or the peer sent its FIN (the phase is then `PeerClosed`).
    #[inline]
    fn read_input<S: Stream>(
        &mut self,
        io: &mut S,
        scratch: &mut [u8],
        limits: &Limits,
        budget: &mut Budget,
        outcome: &mut Outcome,
    ) -> Result<Option<usize>, CloseReason> {
        // Never read more than pending output may still grow: the limit is a hard bound.
        let room = limits.high_water.saturating_sub(self.pending());
        let want = scratch.len().min(budget.read).min(room);
        // `next_step` reads only when not paused (so room > 0) and with budget left. A zero-byte
        // read would return 0, indistinguishable from the peer's FIN.
        debug_assert!(want > 0, "read with no room");
        let Some(n) = read_nonblocking(io, &mut scratch[..want])? else {
            self.ready.readable = false;
            return Ok(None);
        };
        if n == 0 {
            self.phase = Phase::PeerClosed;
            self.ready.readable = false;
            return Ok(None);
        }
        budget.read -= n;
        outcome.bytes_read += n;
        if n < want && !self.ready.read_closed {
            // A short read drained the socket; new data raises a new edge. Skipping the read
            // that would only say WouldBlock saves a syscall per message (tokio does the same).
            self.ready.readable = false;
        }
        Ok(Some(n))
    }

    /// Step `ReadAndEcho`: one read into `scratch`, written straight back if the socket takes
    /// it (the fast path); the rest is copied into the buffer.
    fn read_and_echo<S: Stream>(
        &mut self,
        io: &mut S,
        scratch: &mut [u8],
        limits: &Limits,
        budget: &mut Budget,
        outcome: &mut Outcome,
    ) -> Result<(), CloseReason> {
        let Some(n) = self.read_input(io, scratch, limits, budget, outcome)? else {
            return Ok(());
        };
        let data = &scratch[..n];
        let mut sent = 0;
        if self.pending() == 0 && self.ready.writable {
            // The fast path: straight from the shared scratch buffer back to the socket.
            match write_nonblocking(io, data) {
                Ok(Some(written)) => sent = written,
                Ok(None) => self.ready.writable = false,
                Err(reason) => {
                    // Read but never echoed: keep it as pending so the reactor counts it as
                    // discarded under this close reason (every byte read is accounted for).
                    self.owed_mut().buffer.extend_from_slice(data);
                    return Err(reason);
                }
            }
            budget.spend_write(sent, outcome);
        }
        if sent < n {
            self.owed_mut().buffer.extend_from_slice(&data[sent..]);
        }
        Ok(())
    }

    /// Step `FinishWriting`: nothing is pending, so send our FIN.
    fn finish_writing<S: Stream>(&mut self, io: &mut S) -> Result<(), CloseReason> {
        io.shutdown_write().map_err(|e| classify(&e))?;
        self.phase = match self.phase {
            // We read to EOF, so nothing unread remains: closing now sends no RST.
            Phase::PeerClosed => Phase::Closed(CloseReason::PeerClosed),
            _ => Phase::Lingering,
        };
        Ok(())
    }

    /// Step `Discard`: while lingering, read and throw away input until the peer's FIN.
    fn discard<S: Stream>(
        &mut self,
        io: &mut S,
        scratch: &mut [u8],
        budget: &mut Budget,
        outcome: &mut Outcome,
    ) -> Result<(), CloseReason> {
        let want = scratch.len().min(budget.read);
        match read_nonblocking(io, &mut scratch[..want])? {
            Some(0) => {
                // After a service finished, both sides closed in order: as after a peer's FIN.
                let finished = self.session.as_ref().is_some_and(|s| s.finished);
                self.phase = Phase::Closed(match finished {
                    true => CloseReason::PeerClosed,
                    false => CloseReason::Shutdown,
                });
            }
            Some(n) => {
                budget.read -= n;
                outcome.bytes_discarded += n;
            }
            None => self.ready.readable = false,
        }
        Ok(())
    }

    /// Pauses reading at the high-water mark (counting the pause in `outcome`) and resumes at
    /// the low-water mark.
    fn update_backpressure(&mut self, limits: &Limits, outcome: &mut Outcome) {
        let pending = self.pending();
        if !self.paused && pending >= limits.high_water {
            self.paused = true;
            outcome.pauses += 1;
        } else if self.paused && pending <= limits.low_water {
            // Still `readable` if we stopped before WouldBlock: the next step reads again.
            self.paused = false;
        }
    }
}

/// One non-blocking I/O call: `Some(n)` bytes moved, `None` on `WouldBlock`, retried on
/// `EINTR`; any other error becomes the reason the connection closes.
fn nonblocking(mut op: impl FnMut() -> io::Result<usize>) -> Result<Option<usize>, CloseReason> {
    loop {
        match op() {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(classify(&e)),
        }
    }
}

/// One `read`: `Some(n)` with `n == 0` at EOF, `None` on `WouldBlock`.
fn read_nonblocking<S: Read>(io: &mut S, buf: &mut [u8]) -> Result<Option<usize>, CloseReason> {
    nonblocking(|| io.read(buf))
}

/// One `write`: `Some(n)` bytes taken (never 0), `None` on `WouldBlock`.
fn write_nonblocking<S: Write>(io: &mut S, data: &[u8]) -> Result<Option<usize>, CloseReason> {
    write_nonblocking_with(data.len(), || io.write(data))
}

/// A write-like call offered `len` bytes (a `write` or a `splice` out of the pipe): a socket
/// never takes zero of them, so that is an error, not progress.
fn write_nonblocking_with(
    len: usize,
    op: impl FnMut() -> io::Result<usize>,
) -> Result<Option<usize>, CloseReason> {
    match nonblocking(op)? {
        Some(0) if len > 0 => Err(CloseReason::IoError),
        result => Ok(result),
    }
}

/// Maps a socket error to how the connection ended: the peer going away (reset, `EPIPE`) is
/// `Reset`; anything else is `IoError`.
fn classify(error: &io::Error) -> CloseReason {
    use io::ErrorKind::*;
    match error.kind() {
        ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected => CloseReason::Reset,
        _ => CloseReason::IoError,
    }
}

#[cfg(test)]
mod tests;
