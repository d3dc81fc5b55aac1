//! Services over UDP: the answer to one datagram of a service other than echo, rationed per
//! source where the service can amplify.
//!
//! The endpoint (`udp`) does every socket call, the guards, the batches, the queue and
//! pktinfo; this decides only the bytes of a reply, through the same seam as TCP: a fresh
//! [`Service`](crate::service::Service) value per datagram
//! ([`ServiceKind::answer_datagram`]), writing straight into the batch's reply buffer. Echo
//! does not come here: the endpoint sends an echo from its receive slot, uncopied.

use std::net::IpAddr;
use std::time::Instant;

use crate::service::reply_limit::ReplyLimit;
use crate::service::{Output, ServiceKind, MAX_REPLY};

/// What became of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answered {
    /// The reply is what was appended to the reply buffer.
    Reply,
    /// The rate limit refused a reply to this source.
    Limited,
    /// The service gave no reply, or one too long for a datagram.
    Unanswered,
}

/// One UDP socket's service and its optional rate limit.
pub(crate) struct DatagramAnswers {
    kind: ServiceKind,
    limit: Option<ReplyLimit>,
}

impl DatagramAnswers {
    /// `kind` answers every datagram; `limit`, if any, rations its replies per source.
    pub(crate) fn new(kind: ServiceKind, limit: Option<ReplyLimit>) -> Self {
        DatagramAnswers { kind, limit }
    }

    /// Answers `request` from `peer` (the endpoint's guards have passed): the limit first,
    /// then the service, whose reply is appended to `replies`. Anything else leaves
    /// `replies` as it was.
    pub(crate) fn answer(
        &mut self,
        peer: IpAddr,
        request: &[u8],
        now: Instant,
        replies: &mut Vec<u8>,
    ) -> Answered {
        if let Some(limit) = self.limit.as_mut() {
            if !limit.allow(peer, now) {
                return Answered::Limited;
            }
        }
        let start = replies.len();
        let mut out = Output::with_wall_clock(replies, MAX_REPLY);
        if self.kind.answer_datagram(request, &mut out) {
            Answered::Reply
        } else {
            replies.truncate(start);
            Answered::Unanswered
        }
    }
}

impl std::fmt::Debug for DatagramAnswers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramAnswers")
            .field("service", &self.kind)
            .field("limited", &self.limit.is_some())
            .finish()
    }
}
