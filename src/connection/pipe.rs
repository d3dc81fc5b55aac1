//! The zero-copy path of a connection: a kernel pipe the reactor may hand a bulk connection
//! (`Connection::use_pipe`), input spliced into it and out again, never copied, and the pipe
//! taken back only while it holds no bytes. The decisions stay in `Connection::next_step`;
//! these are the pipe's own steps and bookkeeping.

use super::{
    nonblocking, write_nonblocking_with, Budget, CloseReason, Connection, Limits, Outcome, Phase,
    PipeState, Splice, Stream,
};

impl<P> Connection<P> {
    /// Of the bytes owed, those waiting in the pipe (0 without one).
    pub(crate) fn pending_in_pipe(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.in_pipe())
    }

    /// True while the connection could take a pipe: it has none, none was refused, and nothing
    /// is pending (a pipe attached now would let new bytes overtake older ones).
    pub(crate) fn can_use_pipe(&self) -> bool {
        self.pending
            .as_ref()
            .map_or(true, |p| matches!(p.pipe, PipeState::None) && p.len() == 0)
            && self.session.is_none()
    }

    /// From now on, input goes through `pipe`, moved by `splice` (zero-copy echo). Takes it only
    /// when [`Connection::can_use_pipe`]; otherwise hands it back.
    pub(crate) fn use_pipe(&mut self, pipe: P) -> Result<(), P> {
        if !self.can_use_pipe() {
            return Err(pipe);
        }
        self.owed_mut().pipe = PipeState::Attached {
            pipe,
            queued: 0,
            maybe_full: false,
        };
        Ok(())
    }

    /// No pipe could be made for this connection: it copies for good, and
    /// [`Connection::can_use_pipe`] says no from now on.
    pub(crate) fn pipe_unavailable(&mut self) {
        let pending = self.owed_mut();
        if matches!(pending.pipe, PipeState::None) {
            pending.pipe = PipeState::Unavailable;
        }
    }

    /// Takes the pipe back while it holds no bytes (its connection went idle, or descriptors
    /// run short): the connection copies again and may be given a pipe again later. `None`
    /// when it has no pipe or bytes still wait in it (taking it then would lose them).
    pub(crate) fn take_pipe(&mut self) -> Option<P> {
        let pending = self.pending.as_mut()?;
        let taken = match std::mem::replace(&mut pending.pipe, PipeState::None) {
            PipeState::Attached {
                pipe, queued: 0, ..
            } => Some(pipe),
            other => {
                pending.pipe = other;
                None
            }
        };
        self.release_if_empty();
        taken
    }

    /// The attached pipe, if any.
    pub(crate) fn pipe(&self) -> Option<&P> {
        match &self.pending.as_ref()?.pipe {
            PipeState::Attached { pipe, .. } => Some(pipe),
            _ => None,
        }
    }

    /// True once `Connection::use_pipe` switched this connection to zero-copy echo.
    pub(crate) fn uses_pipe(&self) -> bool {
        self.pipe().is_some()
    }

    /// Splices up to `max` bytes from the pipe to the peer. Called only with bytes in the pipe.
    pub(super) fn send_from_pipe<S: Stream>(
        &mut self,
        io: &mut S,
        max: usize,
        budget: &mut Budget,
        outcome: &mut Outcome,
    ) -> Result<(), CloseReason>
    where
        P: Splice<S>,
    {
        let Some(PipeState::Attached {
            pipe,
            queued,
            maybe_full,
        }) = self.pending.as_deref_mut().map(|p| &mut p.pipe)
        else {
            return Ok(()); // unreachable: `flush` and `read_into_pipe` check for a pipe
        };
        match write_nonblocking_with(max, || pipe.splice_out(io, max))? {
            Some(n) => {
                *queued -= n;
                *maybe_full = false; // there is room again
                budget.spend_write(n, outcome);
            }
            None => self.ready.writable = false,
        }
        Ok(())
    }

    /// Step `ReadIntoPipe`, the zero-copy counterpart of `read_and_echo`, taken while the
    /// buffer is empty: input goes into the pipe and straight back out if the socket takes it;
    /// what it does not take waits in the pipe for `Flush`. There is no short-read shortcut
    /// here: a short splice may mean a full pipe, not a drained socket.
    pub(super) fn read_into_pipe<S: Stream>(
        &mut self,
        io: &mut S,
        limits: &Limits,
        budget: &mut Budget,
        outcome: &mut Outcome,
    ) -> Result<(), CloseReason>
    where
        P: Splice<S>,
    {
        let room = limits.high_water.saturating_sub(self.pending());
        let want = room.min(budget.read);
        debug_assert!(want > 0, "splice with no room");
        let Some(PipeState::Attached {
            pipe,
            queued,
            maybe_full,
        }) = self.pending.as_deref_mut().map(|p| &mut p.pipe)
        else {
            return Ok(()); // unreachable: `next_step` splices only with a pipe attached
        };
        let was_empty = *queued == 0;
        let n = match nonblocking(|| pipe.splice_in(io, want))? {
            // An empty pipe has room, so the socket is what blocked.
            None if was_empty => {
                self.ready.readable = false;
                return Ok(());
            }
            None => {
                *maybe_full = true;
                return Ok(());
            }
            Some(0) => {
                self.phase = Phase::PeerClosed;
                self.ready.readable = false;
                return Ok(());
            }
            Some(n) => n,
        };
        *queued += n;
        budget.read -= n;
        outcome.bytes_read += n;
        if was_empty && self.ready.writable {
            // The fast path, as in `read_and_echo`: send back what just came in, outside the
            // write budget, which bounds flushing older output.
            self.send_from_pipe(io, n, budget, outcome)?;
        }
        Ok(())
    }
}
