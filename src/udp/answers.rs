//! Services over UDP: a [`Service`]'s datagram answers, handed to the UDP endpoint as its
//! `DatagramService` (the endpoint does every socket call, the guards, the batches, the
//! queue and pktinfo), and rationed per source where the service can amplify.
//!
//! Echo does not come here: the endpoint sends an echo straight from its receive slot.

use std::io::Write;
use std::time::Instant;

use super::{Answer, DatagramService, ReplyWriter, Request};
use crate::service::reply_limit::ReplyLimit;
use crate::service::{Output, Service, MAX_REPLY};

/// One UDP socket's service, its optional rate limit, and the datagrams it left unanswered.
pub(crate) struct DatagramAnswers {
    service: Box<dyn Service>,
    limit: Option<ReplyLimit>,
    /// The reply being written, reused for every datagram.
    reply: Vec<u8>,
    /// The turn's clock, for the rate limit.
    now: Instant,
    /// Replies the limit refused since the last [`DatagramAnswers::take_silent`].
    limited: u64,
    /// Datagrams the service answered with silence (or with a reply too long to send) since
    /// the last [`DatagramAnswers::take_silent`].
    unanswered: u64,
}

impl DatagramAnswers {
    /// `service` answers; `limit`, if any, rations its replies per source.
    pub(crate) fn new(service: Box<dyn Service>, limit: Option<ReplyLimit>) -> Self {
        DatagramAnswers {
            service,
            limit,
            reply: Vec::new(),
            now: Instant::now(),
            limited: 0,
            unanswered: 0,
        }
    }

    /// Sets the clock of the turn about to answer datagrams.
    pub(crate) fn start_turn(&mut self, now: Instant) {
        self.now = now;
    }

    /// Datagrams left without a reply since the last call: refused by the rate limit, and
    /// unanswered by the service. The endpoint does not count a `Silent` answer itself, so
    /// each is counted once, under its reason.
    pub(crate) fn take_silent(&mut self) -> (u64, u64) {
        (
            std::mem::take(&mut self.limited),
            std::mem::take(&mut self.unanswered),
        )
    }
}

impl std::fmt::Debug for DatagramAnswers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramAnswers")
            .field("limited", &self.limit.is_some())
            .finish_non_exhaustive()
    }
}

impl DatagramService for DatagramAnswers {
    /// The endpoint's guards have passed; the limit comes next, then the service.
    fn answer(&mut self, request: &Request<'_>, reply: &mut ReplyWriter<'_>) -> Answer {
        if let Some(limit) = self.limit.as_mut() {
            if !limit.allow(request.peer.ip(), self.now) {
                self.limited += 1;
                return Answer::Silent;
            }
        }
        self.reply.clear();
        let mut out = Output::with_wall_clock(&mut self.reply, MAX_REPLY);
        let send = self.service.on_datagram(request.bytes, &mut out);
        if !send || self.reply.len() > MAX_REPLY || reply.write_all(&self.reply).is_err() {
            self.unanswered += 1;
            return Answer::Silent;
        }
        Answer::Reply
    }
}
