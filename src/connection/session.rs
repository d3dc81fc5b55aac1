//! The service session of a connection that is not echo: its [`Service`] value, when it
//! speaks (`on_open`, input, `on_writable` while it streams), and how what it writes joins the
//! pending output under the same limits and budgets as echo.

use super::{
    Budget, CloseReason, Connection, Limits, Outcome, Pending, Phase, Session, Step, Stream,
    PRODUCE_CHUNK, STAGING_KEPT,
};
use crate::service::{Output, Service};

impl<P> Connection<P> {
    /// A fresh connection that speaks `service` instead of echo. The service is opened on
    /// the first [`Connection::drive`] (so what it says first is accounted like any output).
    pub fn with_service(service: Box<dyn Service>) -> Self {
        let mut conn = Self::new();
        conn.session = Some(Box::new(Session {
            streams: service.streams(),
            service,
            opened: false,
            finished: false,
            idle: false,
            staging: Vec::new(),
        }));
        conn
    }

    /// `next_step` for an open connection with a service, once pending output cannot be
    /// flushed: open it first, then read, then let a streaming service write more.
    pub(super) fn next_service_step(&self, can_read: bool, can_write: bool) -> Option<Step> {
        let session = self.session.as_ref()?;
        if !session.opened {
            Some(Step::OpenService)
        } else if can_read && !self.paused {
            Some(Step::ReadIntoService)
        } else if self.pending() == 0 && can_write && session.streams && !session.idle {
            Some(Step::Produce)
        } else {
            None
        }
    }

    /// Step `ReadIntoService`: one read into `scratch`, handed to the service, whose answer
    /// joins the pending output (and goes out with the next `Flush`). The peer's FIN is
    /// handed over as `on_peer_closed`.
    pub(super) fn read_into_service<S: Stream>(
        &mut self,
        io: &mut S,
        scratch: &mut [u8],
        limits: &Limits,
        budget: &mut Budget,
        outcome: &mut Outcome,
    ) -> Result<(), CloseReason> {
        let read = self.read_input(io, scratch, limits, budget, outcome)?;
        let room = limits.high_water.saturating_sub(self.pending());
        let Some(n) = read else {
            if self.phase == Phase::PeerClosed {
                self.call_service(room, 0, outcome, |service, out| service.on_peer_closed(out));
            }
            return Ok(());
        };
        if let Some(session) = self.session.as_mut() {
            session.idle = false; // new input: a quiet streaming service may have more to say
        }
        self.call_service(room, n, outcome, |service, out| {
            service.on_input(&scratch[..n], out)
        });
        Ok(())
    }

    /// Step `Produce`: a streaming service (chargen) writes its next piece, at most the
    /// write budget left, so it gets the same share of a turn as echo.
    pub(super) fn produce(&mut self, limits: &Limits, budget: &Budget, outcome: &mut Outcome) {
        let room = budget.write.min(limits.high_water).min(PRODUCE_CHUNK);
        let before = self.pending();
        self.call_service(room, 0, outcome, |service, out| service.on_writable(out));
        if self.pending() == before {
            if let Some(session) = self.session.as_mut() {
                session.idle = true;
            }
        }
    }

    /// Lets the service write into the pending buffer with `room` advised, then follows its
    /// wish to close. `input` bytes were handed to it: its output answers them byte for byte
    /// up to their number, and the rest of either side is counted in `outcome` as generated
    /// or consumed (the accounting in `stats`).
    pub(super) fn call_service(
        &mut self,
        room: usize,
        input: usize,
        outcome: &mut Outcome,
        call: impl FnOnce(&mut dyn Service, &mut Output<'_>),
    ) {
        let Some(session) = self.session.as_mut() else {
            outcome.bytes_consumed += input; // no service to take it: not lost, counted
            return;
        };
        session.opened = true;
        let mut staging = std::mem::take(&mut session.staging);
        let mut out = Output::with_wall_clock(&mut staging, room);
        call(session.service.as_mut(), &mut out);
        let closing = out.is_closing();
        let answered = input.min(staging.len());
        outcome.bytes_generated += staging.len() - answered;
        outcome.bytes_consumed += input - answered;
        if !staging.is_empty() {
            // `self.pending` directly, not `owed_mut`: `session` is still borrowed.
            let pending = self
                .pending
                .get_or_insert_with(|| Box::new(Pending::empty()));
            pending.buffer.extend_from_slice(&staging);
        }
        staging.clear();
        let kept = if session.streams {
            PRODUCE_CHUNK
        } else {
            STAGING_KEPT
        };
        if staging.capacity() <= kept {
            session.staging = staging;
        }
        if closing && !session.finished {
            session.finished = true;
            if self.phase == Phase::Open {
                self.phase = Phase::Finishing;
            }
        }
    }
}
