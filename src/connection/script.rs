//! Scripts for the connection's state machine: a [`ScriptedStream`] that stands in for a
//! socket, a [`ScriptedPipe`] that stands in for a kernel pipe, and [`Script`], an interpreter
//! of random event sequences that checks the connection's invariants after every step.
//!
//! Compiled for tests and, with the `fuzzing` feature, for the fuzz crate in `fuzz/`: the unit
//! tests, the property tests and the fuzz target all drive [`Connection`] through the same
//! stream and assert the same invariants, so a failure found by one replays in the others.
//!
//! The model of the outside world is deliberately loose: any sequence of actions is allowed,
//! including ones a kernel would not produce (an event with nothing to read, a read-closed
//! event before the FIN is queued). The connection must survive all of them; the invariants
//! below are what "survive" means.

use std::collections::VecDeque;
use std::io::{self, Read, Write};

use super::CloseReason;
use super::{Connection, Limits, Outcome, Phase, Readiness, Splice, Stream};

/// The connection the scripts drive: it may get a [`ScriptedPipe`].
pub type ScriptedConnection = Connection<ScriptedPipe>;

/// What the next `read` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStep {
    /// Up to this many bytes of the counting pattern (fewer if the buffer is smaller).
    Data(usize),
    /// `WouldBlock`.
    WouldBlock,
    /// `Ok(0)`: the peer's FIN.
    Eof,
    /// `ConnectionReset`.
    Reset,
}

/// What the next `write` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStep {
    /// Takes up to this many bytes.
    Take(usize),
    /// `WouldBlock`.
    WouldBlock,
    /// `BrokenPipe`.
    Broken,
}

/// What every drive so far did, summed from the outcomes as the reactor sums them into its
/// counters (with [`Outcome::bytes_in`] and [`Outcome::bytes_dropped`]), so the scripts check
/// the same books without depending on the reactor's `Stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    /// Bytes taken from the peer.
    pub bytes_in: u64,
    /// Bytes written to the peer.
    pub bytes_out: u64,
    /// Bytes taken in that will never be sent.
    pub bytes_discarded: u64,
    /// Times reading paused at the high-water mark.
    pub pauses: u64,
}

impl Tally {
    /// Adds one drive.
    pub fn add(&mut self, outcome: &Outcome) {
        self.bytes_in += outcome.bytes_in() as u64;
        self.bytes_out += outcome.bytes_written as u64;
        self.bytes_discarded += outcome.bytes_dropped() as u64;
        self.pauses += outcome.pauses as u64;
    }
}

/// Calls one `drive` may make before the stream calls it a livelock.
const MAX_CALLS_PER_DRIVE: usize = 100_000;

/// Capacity of the scripted pipe. Small, so scripts fill it often: a full pipe makes
/// `splice_in` say `WouldBlock` just as an empty socket does, which the connection must not
/// mistake for "no input".
pub const PIPE_CAPACITY: usize = 3000;

/// A stream whose reads produce a counting pattern and whose writes follow a script. When the
/// read script runs out, reads say `WouldBlock`; when the write script runs out, writes do
/// what `write_default` says (`WouldBlock` unless a test unblocks the peer).
#[derive(Debug)]
pub struct ScriptedStream {
    /// What the next reads return, in order.
    pub reads: VecDeque<ReadStep>,
    /// What the next writes do, in order.
    pub writes: VecDeque<WriteStep>,
    /// What a write does once `writes` is empty.
    pub write_default: WriteStep,
    /// Every byte handed out by `read`, in order.
    pub sent_in: Vec<u8>,
    /// Every byte taken by `write`, in order.
    pub echoed: Vec<u8>,
    /// `shutdown_write` was called.
    pub fin_sent: bool,
    /// `read` calls so far.
    pub read_calls: usize,
    /// `write` calls so far.
    pub write_calls: usize,
    /// `read` or `write` calls that returned an error other than `WouldBlock`.
    pub errors_returned: usize,
    /// Calls since [`ScriptedStream::reset_call_guard`]; past a bound the stream panics, so a
    /// `drive` that never returns fails instead of hanging.
    calls_since_guard: usize,
}

impl Default for ScriptedStream {
    fn default() -> Self {
        ScriptedStream {
            reads: VecDeque::new(),
            writes: VecDeque::new(),
            write_default: WriteStep::WouldBlock,
            sent_in: Vec::new(),
            echoed: Vec::new(),
            fin_sent: false,
            read_calls: 0,
            write_calls: 0,
            errors_returned: 0,
            calls_since_guard: 0,
        }
    }
}

impl ScriptedStream {
    /// A stream that will read `reads` and write `writes`, then say `WouldBlock`.
    pub fn new(reads: Vec<ReadStep>, writes: Vec<WriteStep>) -> Self {
        ScriptedStream {
            reads: reads.into(),
            writes: writes.into(),
            ..Default::default()
        }
    }

    /// Starts a new count for the livelock guard (call before each `drive`).
    pub fn reset_call_guard(&mut self) {
        self.calls_since_guard = 0;
    }

    fn count_call(&mut self) {
        self.calls_since_guard += 1;
        assert!(
            self.calls_since_guard <= MAX_CALLS_PER_DRIVE,
            "livelock: {MAX_CALLS_PER_DRIVE} I/O calls in one drive"
        );
    }
}

impl ScriptedStream {
    /// The next scripted input, up to `max` bytes of the counting pattern, each byte handed
    /// to `deliver` (shared by `read` and `splice_in`).
    fn next_input(&mut self, max: usize, mut deliver: impl FnMut(u8)) -> io::Result<usize> {
        self.count_call();
        self.read_calls += 1;
        // A socket answers a zero-length read with 0 whether or not data is waiting, which
        // the caller cannot tell from the peer's FIN.
        assert!(max > 0, "a zero-byte read looks like EOF");
        match self.reads.pop_front() {
            Some(ReadStep::Data(n)) => {
                let n = n.min(max);
                for _ in 0..n {
                    let byte = (self.sent_in.len() % 251) as u8;
                    self.sent_in.push(byte);
                    deliver(byte);
                }
                Ok(n)
            }
            Some(ReadStep::Eof) => Ok(0),
            Some(ReadStep::Reset) => {
                self.errors_returned += 1;
                Err(io::ErrorKind::ConnectionReset.into())
            }
            Some(ReadStep::WouldBlock) | None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// The next scripted output: how many of `available` bytes the peer takes now.
    fn next_output(&mut self, available: usize) -> io::Result<usize> {
        self.count_call();
        self.write_calls += 1;
        assert!(!self.fin_sent, "write after our FIN");
        match self.writes.pop_front().unwrap_or(self.write_default) {
            WriteStep::Take(k) => Ok(k.min(available)),
            WriteStep::Broken => {
                self.errors_returned += 1;
                Err(io::ErrorKind::BrokenPipe.into())
            }
            WriteStep::WouldBlock => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Read for ScriptedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut slots = buf.iter_mut();
        let max = slots.len();
        self.next_input(max, |byte| {
            if let Some(slot) = slots.next() {
                *slot = byte;
            }
        })
    }
}

impl Write for ScriptedStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let k = self.next_output(data.len())?;
        self.echoed.extend_from_slice(&data[..k]);
        Ok(k)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream for ScriptedStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.fin_sent = true;
        Ok(())
    }
}

/// A pipe of [`PIPE_CAPACITY`] bytes between the connection and its [`ScriptedStream`]:
/// splicing in takes the stream's next scripted input, splicing out its next scripted write.
/// (Plain reads and writes stay allowed on a piped connection; the prefix invariant catches
/// any byte that overtakes one in the pipe.)
#[derive(Debug, Default)]
pub struct ScriptedPipe {
    /// Bytes spliced in and not yet spliced out, oldest first.
    pub bytes: VecDeque<u8>,
}

impl Splice<ScriptedStream> for ScriptedPipe {
    fn splice_in(&mut self, stream: &mut ScriptedStream, max: usize) -> io::Result<usize> {
        let room = PIPE_CAPACITY - self.bytes.len();
        if room == 0 {
            // What the kernel says for a full pipe: the same as for an empty socket.
            stream.count_call();
            stream.read_calls += 1;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let bytes = &mut self.bytes;
        stream.next_input(max.min(room), |byte| bytes.push_back(byte))
    }

    fn splice_out(&mut self, stream: &mut ScriptedStream, max: usize) -> io::Result<usize> {
        assert!(
            max > 0 && !self.bytes.is_empty(),
            "splice out of an empty pipe"
        );
        let k = stream.next_output(max.min(self.bytes.len()))?;
        stream.echoed.extend(self.bytes.drain(..k));
        Ok(k)
    }
}

/// One step of a script: the peer or the kernel changes something, or the reactor acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The peer's bytes arrive (queued for a later read; no event by itself).
    Arrive(usize),
    /// A later read finds nothing (`WouldBlock`), as after a spurious wakeup.
    ReadBlocks,
    /// The peer's FIN arrives.
    PeerFin,
    /// The peer resets the connection.
    PeerReset,
    /// The peer's receive window opens by this many bytes (for one write).
    Accepts(usize),
    /// A later write finds the send buffer full.
    WriteBlocks,
    /// A later write fails with `EPIPE`.
    PipeBreaks,
    /// The poller reports readiness, and the reactor drives the connection.
    Event {
        /// `EPOLLIN`.
        readable: bool,
        /// `EPOLLOUT`.
        writable: bool,
        /// `EPOLLRDHUP` or an error.
        read_closed: bool,
    },
    /// The reactor drives the connection without a new event (its ready queue).
    Drive,
    /// The memory budget lowers the high-water mark to this many bytes (the reactor's fair
    /// share; at least 1), or restores the configured limits when it is `None`.
    Squeeze(Option<usize>),
    /// Server shutdown begins, and the reactor drives the connection.
    BeginDrain,
    /// The reactor attaches a pipe for zero-copy echo (it takes only while nothing is pending).
    UsePipe,
}

/// A connection, its scripted stream and the checks, run one [`Action`] at a time.
#[derive(Debug)]
pub struct Script {
    /// The connection under test.
    pub conn: ScriptedConnection,
    /// Its stream.
    pub io: ScriptedStream,
    /// Its counters, summed from the outcome of every drive as the reactor sums them.
    pub tally: Tally,
    /// A pipe was attached (by an [`Action::UsePipe`]).
    piped: bool,
    base: Limits,
    limits: Limits,
    scratch: Vec<u8>,
    phase: Phase,
    /// The most pending output the limits in force so far allowed.
    pending_bound: usize,
    /// Bytes echoed when our FIN went out; nothing may follow it.
    echoed_at_fin: Option<usize>,
    /// Whether the last drive yielded, while nothing has changed since.
    last_yielded: Option<bool>,
}

impl Script {
    /// A fresh connection with these limits and a shared read buffer of `scratch_len` bytes.
    pub fn new(limits: Limits, scratch_len: usize) -> Script {
        assert!(limits.low_water < limits.high_water && scratch_len > 0);
        Script {
            conn: Connection::new(),
            io: ScriptedStream::default(),
            tally: Tally::default(),
            piped: false,
            base: limits,
            limits,
            scratch: vec![0; scratch_len],
            phase: Phase::Open,
            pending_bound: limits.high_water,
            echoed_at_fin: None,
            last_yielded: None,
        }
    }

    /// Decodes a script from arbitrary bytes (the fuzz input): a header for the limits, then
    /// one action per two bytes. Every byte string is a valid script.
    pub fn from_bytes(data: &[u8]) -> (Script, Vec<Action>) {
        let mut bytes = data.iter().copied();
        let mut size = |max: usize| {
            let high = usize::from(bytes.next().unwrap_or(0));
            let low = usize::from(bytes.next().unwrap_or(0));
            1 + (high << 8 | low) % max
        };
        let high_water = 1 + size(4096);
        let low_water = size(high_water) - 1;
        let limits = Limits {
            high_water,
            low_water,
            read_budget: size(8192),
            write_budget: size(8192),
        };
        let scratch_len = size(2048);
        let mut actions = Vec::new();
        while let Some(op) = bytes.next() {
            let arg = usize::from(bytes.next().unwrap_or(0));
            actions.push(match op % 13 {
                0 => Action::Arrive(1 + arg * 8),
                1 => Action::ReadBlocks,
                2 => Action::PeerFin,
                3 => Action::PeerReset,
                4 => Action::Accepts(1 + arg * 8),
                5 => Action::WriteBlocks,
                6 => Action::PipeBreaks,
                7 | 8 => Action::Event {
                    readable: arg & 1 != 0,
                    writable: arg & 2 != 0,
                    read_closed: arg & 4 != 0,
                },
                9 => Action::Drive,
                10 => Action::Squeeze((arg & 1 != 0).then_some(1 + (arg >> 1) * 16)),
                11 => Action::BeginDrain,
                _ => Action::UsePipe,
            });
        }
        (Script::new(limits, scratch_len), actions)
    }

    /// Decodes `data` with [`Script::from_bytes`], runs every action, then [`Script::finish`]:
    /// the fuzz target's whole body. Panics on the first broken invariant.
    pub fn run_bytes(data: &[u8]) -> Script {
        let (mut script, actions) = Script::from_bytes(data);
        for action in actions {
            script.step(action);
        }
        script.finish();
        script
    }

    /// Applies one action and checks every invariant.
    pub fn step(&mut self, action: Action) {
        match action {
            Action::Arrive(n) => self.io.reads.push_back(ReadStep::Data(n.max(1))),
            Action::ReadBlocks => self.io.reads.push_back(ReadStep::WouldBlock),
            Action::PeerFin => self.io.reads.push_back(ReadStep::Eof),
            Action::PeerReset => self.io.reads.push_back(ReadStep::Reset),
            // A socket never takes zero bytes of a non-empty write.
            Action::Accepts(k) => self.io.writes.push_back(WriteStep::Take(k.max(1))),
            Action::WriteBlocks => self.io.writes.push_back(WriteStep::WouldBlock),
            Action::PipeBreaks => self.io.writes.push_back(WriteStep::Broken),
            Action::Event {
                readable,
                writable,
                read_closed,
            } => {
                self.conn.on_readiness(Readiness {
                    readable,
                    writable,
                    read_closed,
                });
                self.last_yielded = None;
                self.drive();
            }
            Action::Drive => self.drive(),
            Action::Squeeze(high_water) => {
                self.limits = match high_water {
                    Some(hw) => {
                        let hw = hw.clamp(1, self.base.high_water);
                        Limits {
                            high_water: hw,
                            low_water: self.base.low_water.min(hw / 4),
                            ..self.base
                        }
                    }
                    None => self.base,
                };
                self.last_yielded = None;
            }
            Action::BeginDrain => {
                self.conn.begin_drain();
                self.last_yielded = None;
                self.drive();
            }
            Action::UsePipe => {
                let switched = self.conn.use_pipe(ScriptedPipe::default()).is_ok();
                assert!(
                    switched == (!self.piped && self.conn.pending() == 0),
                    "use_pipe switched={switched} with {} pending",
                    self.conn.pending()
                );
                self.piped |= switched;
                if switched {
                    self.last_yielded = None;
                }
            }
        }
        self.check();
    }

    /// The peer stops misbehaving: it reads everything and sends its FIN. The connection must
    /// then finish in a bounded number of turns with everything it read echoed (or, after a
    /// shutdown, discarded after the drain) and its FIN sent, unless an error closed it.
    pub fn finish(&mut self) {
        self.io.writes.clear();
        self.io.write_default = WriteStep::Take(usize::MAX);
        self.io.reads.push_back(ReadStep::Eof);
        // Each turn reads one scripted chunk or flushes at least a write budget's worth (or
        // all that is pending), so this many turns finish any script that makes progress.
        let queued: usize = self
            .io
            .reads
            .iter()
            .map(|input| match input {
                ReadStep::Data(n) => *n,
                _ => 0,
            })
            .sum();
        let bytes = queued + self.conn.pending();
        let turns = 1_000 + 2 * self.io.reads.len() + 2 * bytes / self.limits.write_budget.max(1);
        for _ in 0..turns {
            if self.conn.close_reason().is_some() {
                break;
            }
            self.step(Action::Event {
                readable: true,
                writable: true,
                read_closed: true,
            });
        }
        let reason = self
            .conn
            .close_reason()
            .unwrap_or_else(|| panic!("not closed after the peer read all and sent FIN: {self:?}"));
        let io = &self.io;
        match reason {
            CloseReason::PeerClosed => {
                assert!(io.fin_sent, "closed in order without our FIN");
                assert!(io.echoed == io.sent_in, "closed with bytes not echoed");
                assert_eq!(self.tally.bytes_discarded, 0);
            }
            CloseReason::Shutdown => {
                assert!(io.fin_sent, "shutdown close without our FIN");
                let discarded = self.tally.bytes_discarded as usize;
                assert_eq!(io.echoed.len() + discarded, io.sent_in.len());
            }
            CloseReason::Reset | CloseReason::IoError => {
                assert!(io.errors_returned > 0, "{reason:?} with no I/O error");
            }
            other => panic!("the connection cannot close itself as {other:?}"),
        }
    }

    /// One `drive`, as the reactor does it, checking the budgets, the outcome's counts, the
    /// pending limit and the ready queue's contract.
    fn drive(&mut self) {
        let pending_before = self.conn.pending();
        let (read_before, echoed_before) = (self.io.sent_in.len(), self.io.echoed.len());
        let discarded_before = self.tally.bytes_discarded as usize;
        let calls_before = self.io.read_calls + self.io.write_calls;
        self.io.reset_call_guard();
        let outcome = self
            .conn
            .drive(&mut self.io, &mut self.scratch, &self.limits);
        self.tally.add(&outcome);
        let read = self.io.sent_in.len() - read_before;
        let written = self.io.echoed.len() - echoed_before;
        let discarded = self.tally.bytes_discarded as usize - discarded_before;
        let calls = self.io.read_calls + self.io.write_calls - calls_before;
        let limits = self.limits;
        assert!(
            read <= limits.read_budget,
            "read {read} over budget: {limits:?}"
        );
        // The write budget is soft: the echo fast path writes back what it has just read even
        // when the budget is spent, so one drive writes at most both budgets together.
        assert!(
            written <= limits.write_budget + limits.read_budget,
            "wrote {written} over budget: {limits:?}"
        );
        assert_eq!(
            outcome.bytes_read + discarded,
            read,
            "outcome miscounts reads"
        );
        assert_eq!(outcome.bytes_written, written, "outcome miscounts writes");
        // Reading never takes pending output past the limit in force (a squeeze may leave it
        // above the new, lower limit, but then it must not grow).
        let after = self.conn.pending();
        assert!(
            after <= pending_before.max(limits.high_water),
            "pending grew from {pending_before} to {after} past the high-water mark: {limits:?}"
        );
        // The ready queue's contract: a connection that yielded has work a plain drive can
        // do (else the reactor would spin on it), and one that did not has none.
        if let Some(yielded) = self.last_yielded {
            if yielded {
                assert!(calls > 0, "yielded, then found nothing to do (busy loop)");
            } else {
                assert_eq!(calls, 0, "work left behind without yielding");
            }
        }
        self.last_yielded = Some(outcome.yielded);
    }

    /// The invariants that hold after every step (see the module doc of `connection`).
    fn check(&mut self) {
        let io = &self.io;
        let pending = self.conn.pending();
        assert_eq!(self.conn.uses_pipe(), self.piped);
        assert_eq!(
            self.conn.pending_in_pipe(),
            self.conn.pipe().map_or(0, |pipe| pipe.bytes.len()),
            "the connection's count of bytes in the pipe"
        );
        // Bytes are never lost, invented or reordered.
        assert!(
            io.sent_in.starts_with(&io.echoed),
            "echo is not a prefix of the input"
        );
        // Every byte read is echoed, pending or (while lingering) discarded, whatever ended
        // the connection: a chunk in hand when a write fails stays pending, so the reactor
        // counts it as discarded under the close reason instead of losing it.
        let discarded = self.tally.bytes_discarded as usize;
        let accounted = io.echoed.len() + pending + discarded;
        assert_eq!(
            accounted,
            io.sent_in.len(),
            "bytes read = echoed + pending + discarded"
        );
        assert_eq!(
            self.tally.bytes_in as usize,
            io.sent_in.len(),
            "tcp_bytes_in counts every byte read, lingering reads included"
        );
        assert_eq!(self.tally.bytes_out as usize, io.echoed.len());
        assert!(
            pending <= self.pending_bound,
            "pending {pending} over the limit"
        );
        if pending == 0 {
            assert_eq!(
                self.conn.buffer_capacity(),
                0,
                "idle connection holds a buffer"
            );
        }
        // Our FIN goes out only with nothing pending, and nothing follows it.
        if io.fin_sent {
            let at_fin = *self.echoed_at_fin.get_or_insert(io.echoed.len());
            assert_eq!(at_fin, io.echoed.len(), "bytes written after our FIN");
        }
        if matches!(self.conn.phase(), Phase::Lingering)
            || self.conn.close_reason() == Some(CloseReason::PeerClosed)
        {
            assert!(
                io.fin_sent && pending == 0,
                "{:?} without flush and FIN",
                self.conn.phase()
            );
        }
        let (from, to) = (self.phase, self.conn.phase());
        assert!(legal(from, to), "illegal transition {from:?} -> {to:?}");
        self.phase = to;
    }
}

/// The connection's lifecycle (see the diagram in `connection`), closed under sequencing:
/// one `drive` may take several edges.
fn legal(from: Phase, to: Phase) -> bool {
    use Phase::*;
    match (from, to) {
        (a, b) if a == b => true,
        (Closed(_), _) => false,
        (_, Closed(CloseReason::PeerClosed)) => matches!(from, Open | PeerClosed),
        (_, Closed(CloseReason::Shutdown)) => matches!(from, Open | Draining | Lingering),
        (_, Closed(CloseReason::Reset | CloseReason::IoError)) => true,
        (_, Closed(_)) => false,
        (Open, PeerClosed | Draining | Lingering) => true,
        (Draining, Lingering) => true,
        (Open, Finishing) | (Finishing, Lingering) => true,
        _ => false,
    }
}
