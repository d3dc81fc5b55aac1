//! Replies waiting for the UDP socket to become writable again: a bounded FIFO.
//!
//! A reply goes here only when `sendmmsg` would block (or while older replies still wait, so
//! that replies keep their order). It is copied out of the receive slot (the slot is reused
//! by the next batch); when the queue is full the reply is dropped and counted, so UDP never
//! holds more than `limit` datagrams and never blocks TCP.

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::batch_io::{Reply, ReplySource, BATCH};

#[derive(Debug)]
struct Waiting {
    bytes: Box<[u8]>,
    to: SocketAddr,
    from: Option<ReplySource>,
}

/// Bounded FIFO of owned replies.
#[derive(Debug)]
pub(crate) struct ReplyQueue {
    waiting: VecDeque<Waiting>,
    limit: usize,
}

impl ReplyQueue {
    /// A queue that holds at most `limit` replies.
    pub(crate) fn new(limit: usize) -> ReplyQueue {
        ReplyQueue {
            waiting: VecDeque::new(),
            limit,
        }
    }

    /// Nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// How many replies wait.
    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Copies `reply` to the back; false (and nothing kept) when the queue is full.
    pub(crate) fn push(&mut self, reply: &Reply<'_>) -> bool {
        if self.waiting.len() >= self.limit {
            return false;
        }
        self.waiting.push_back(Waiting {
            bytes: reply.bytes.into(),
            to: reply.to,
            from: reply.from,
        });
        true
    }

    /// Up to [`BATCH`] replies from the front, borrowed, in order, and how many there are.
    pub(crate) fn front(&self) -> ([Reply<'_>; BATCH], usize) {
        let mut batch = [Reply::EMPTY; BATCH];
        let mut count = 0;
        for (slot, waiting) in batch.iter_mut().zip(&self.waiting) {
            *slot = Reply {
                bytes: &waiting.bytes,
                to: waiting.to,
                from: waiting.from,
            };
            count += 1;
        }
        (batch, count)
    }

    /// Forgets the first `count` replies (sent, or dropped on an error).
    pub(crate) fn pop(&mut self, count: usize) {
        self.waiting.drain(..count.min(self.waiting.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(bytes: &[u8]) -> Reply<'_> {
        Reply {
            bytes,
            to: "127.0.0.1:5000".parse().unwrap(),
            from: None,
        }
    }

    #[test]
    fn keeps_order_and_its_bound() {
        let mut queue = ReplyQueue::new(3);
        assert!(queue.push(&reply(b"a")));
        assert!(queue.push(&reply(b"bb")));
        assert!(queue.push(&reply(b"")));
        assert!(!queue.push(&reply(b"dropped")));
        let (batch, count) = queue.front();
        assert_eq!(count, 3);
        let lengths: Vec<usize> = batch[..count].iter().map(|r| r.bytes.len()).collect();
        assert_eq!(lengths, [1, 2, 0]);
        queue.pop(2);
        let (batch, count) = queue.front();
        assert_eq!((count, batch[0].bytes), (1, &b""[..]));
        queue.pop(5);
        assert!(queue.is_empty());
    }
}
