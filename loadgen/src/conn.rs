//! The client side of one TCP echo connection, without the socket: which bytes to write
//! next, which messages are in flight, and whether what came back is exactly what went out.
//!
//! The byte stream of a connection is numbered from 0. Three cursors walk along it:
//!
//! ```text
//!   0                 received          written            queued
//!   |==== echoed =====|--- at server ---|--- not written ---|
//!                     ^ next byte we expect back            ^ end of the last message
//! ```
//!
//! Messages are ranges `[start, end)` of that stream. A message is *sent* when a write first
//! covers its start, and *done* when `received` passes its end. Because the payload is a
//! pure function of the offset ([`Pattern`]), the bytes between `written` and `queued` are
//! never stored: the worker regenerates them into its scratch buffer for each write, so a
//! partial write costs no copy and an idle connection holds no payload buffer.
//!
//! Sans-IO and clock-free: the worker passes bytes and `Instant`s in, the tests below drive
//! it as a script.

use super::payload::Pattern;
use super::stats::Stats;
use std::collections::VecDeque;
use std::time::Instant;

/// One message in flight.
#[derive(Debug, Clone, Copy)]
struct Message {
    start: u64,
    end: u64,
    /// When the schedule wanted it sent (closed loop: when the previous answer arrived).
    intended: Instant,
    /// When a write first carried its first byte (`None` until then).
    sent: Option<Instant>,
}

/// Echoed data that cannot be the echo of what was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// The byte at stream offset `offset` differs from the one sent there.
    Mismatch {
        /// Stream offset of the first wrong byte.
        offset: u64,
    },
    /// `bytes` bytes arrived beyond the last byte written.
    Extra {
        /// How many bytes too many.
        bytes: u64,
    },
}

/// Stream accounting of one connection (see the module doc).
#[derive(Debug)]
pub struct EchoStream {
    pattern: Pattern,
    queued: u64,
    written: u64,
    received: u64,
    inflight: VecDeque<Message>,
    /// Index in `inflight` of the first message without a send time.
    first_unsent: usize,
}

impl EchoStream {
    /// A fresh stream with payload `pattern`, with room for `capacity` messages in flight
    /// before the queue has to grow (size it to the mode's depth: no allocation in steady
    /// state).
    pub fn new(pattern: Pattern, capacity: usize) -> EchoStream {
        EchoStream {
            pattern,
            queued: 0,
            written: 0,
            received: 0,
            inflight: VecDeque::with_capacity(capacity),
            first_unsent: 0,
        }
    }

    /// Appends a message of `size` bytes that should have been sent at `intended`.
    pub fn queue(&mut self, size: usize, intended: Instant) {
        let start = self.queued;
        self.queued += size as u64;
        self.inflight.push_back(Message {
            start,
            end: self.queued,
            intended,
            sent: None,
        });
    }

    /// Messages queued and not yet fully echoed.
    pub fn messages_in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Bytes queued and not yet echoed (written or not).
    pub fn bytes_in_flight(&self) -> u64 {
        self.queued - self.received
    }

    /// Bytes written and not yet echoed: what a close now would lose.
    pub fn outstanding(&self) -> u64 {
        self.written - self.received
    }

    /// True when nothing is queued, unwritten or unechoed.
    pub fn is_idle(&self) -> bool {
        self.received == self.queued
    }

    /// True when queued bytes wait to be written.
    pub fn has_unwritten(&self) -> bool {
        self.written < self.queued
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Fills `buf` with the next unwritten bytes; returns how many (0 when all is written).
    pub fn fill_unwritten(&self, buf: &mut [u8]) -> usize {
        let n = ((self.queued - self.written) as usize).min(buf.len());
        self.pattern.fill(self.written, &mut buf[..n]);
        n
    }

    /// The socket took `n` of the bytes from [`fill_unwritten`](Self::fill_unwritten) at `now`.
    pub fn on_written(&mut self, n: usize, now: Instant) {
        self.written = (self.written + n as u64).min(self.queued);
        while let Some(m) = self.inflight.get_mut(self.first_unsent) {
            if m.start >= self.written {
                break;
            }
            m.sent = Some(now);
            self.first_unsent += 1;
        }
    }

    /// Checks echoed `data` that arrived at `now`; records every message it completes in
    /// `stats` and returns how many it completed. After a violation the stream is out of
    /// step for good: the caller should close the connection.
    pub fn on_received(
        &mut self,
        data: &[u8],
        now: Instant,
        stats: &mut Stats,
    ) -> Result<usize, Violation> {
        // Only bytes already written can come back; anything beyond is extra, but first
        // check the part that could be legitimate so a shift reports as a mismatch.
        let room = (self.written - self.received) as usize;
        let (ours, extra) = data.split_at(data.len().min(room));
        if let Err(i) = self.pattern.verify(self.received, ours) {
            return Err(Violation::Mismatch {
                offset: self.received + i as u64,
            });
        }
        self.received += ours.len() as u64;
        let mut done = 0;
        while let Some(m) = self.inflight.front() {
            if m.end > self.received {
                break;
            }
            // A message whose bytes came back was necessarily written, so `sent` is set;
            // fall back to `intended` rather than unwrap.
            stats.round_trip(
                m.intended,
                m.sent.unwrap_or(m.intended),
                now,
                m.end - m.start,
            );
            self.inflight.pop_front();
            self.first_unsent = self.first_unsent.saturating_sub(1);
            done += 1;
        }
        if !extra.is_empty() {
            return Err(Violation::Extra {
                bytes: extra.len() as u64,
            });
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn setup() -> (EchoStream, Stats, Instant) {
        let t0 = Instant::now();
        (EchoStream::new(Pattern::new(1), 4), Stats::new(t0), t0)
    }

    /// Writes everything queued in one go and returns the bytes "on the wire".
    fn write_all(s: &mut EchoStream, now: Instant) -> Vec<u8> {
        let mut buf = vec![0; 1 << 16];
        let n = s.fill_unwritten(&mut buf);
        s.on_written(n, now);
        buf.truncate(n);
        buf
    }

    #[test]
    fn ping_pong_script() {
        let (mut s, mut stats, t0) = setup();
        s.queue(10, t0);
        assert!(s.has_unwritten());
        let wire = write_all(&mut s, t0);
        assert_eq!(wire.len(), 10);
        assert_eq!(s.outstanding(), 10);
        // The echo comes back in two pieces; only the second completes the message.
        let t1 = t0 + Duration::from_micros(50);
        assert_eq!(s.on_received(&wire[..3], t1, &mut stats), Ok(0));
        assert_eq!(s.on_received(&wire[3..], t1, &mut stats), Ok(1));
        assert!(s.is_idle());
        assert_eq!(stats.requests, 1);
        assert_eq!(stats.latency.max(), 50);
    }

    #[test]
    fn partial_writes_regenerate_the_same_bytes() {
        let (mut s, mut stats, t0) = setup();
        s.queue(100, t0);
        s.queue(100, t0);
        let mut wire = Vec::new();
        let mut buf = [0u8; 33];
        // A socket that takes 33 bytes at a time.
        for _ in 0..100 {
            let n = s.fill_unwritten(&mut buf);
            if n == 0 {
                break;
            }
            s.on_written(n, t0);
            wire.extend_from_slice(&buf[..n]);
        }
        assert_eq!(wire.len(), 200);
        assert_eq!(s.on_received(&wire, t0, &mut stats), Ok(2));
    }

    #[test]
    fn send_time_is_the_first_write_of_the_message() {
        let (mut s, mut stats, t0) = setup();
        s.queue(8, t0);
        let t1 = t0 + Duration::from_micros(100);
        let mut buf = [0u8; 4];
        let n = s.fill_unwritten(&mut buf);
        s.on_written(n, t1);
        let first = buf;
        let n = s.fill_unwritten(&mut buf);
        s.on_written(n, t1 + Duration::from_micros(100));
        let t3 = t1 + Duration::from_micros(300);
        s.on_received(&first, t3, &mut stats).unwrap();
        s.on_received(&buf, t3, &mut stats).unwrap();
        assert_eq!(stats.latency.max(), 400);
        assert_eq!(stats.latency_uncorrected.max(), 300);
    }

    #[test]
    fn corrupted_echo_is_a_mismatch_at_its_offset() {
        let (mut s, mut stats, t0) = setup();
        s.queue(64, t0);
        let mut wire = write_all(&mut s, t0);
        wire[40] ^= 0x80;
        assert_eq!(
            s.on_received(&wire, t0, &mut stats),
            Err(Violation::Mismatch { offset: 40 })
        );
        assert_eq!(stats.requests, 0);
    }

    #[test]
    fn dropped_byte_is_a_mismatch_or_never_completes() {
        let (mut s, mut stats, t0) = setup();
        s.queue(64, t0);
        let wire = write_all(&mut s, t0);
        // Dropping the last byte shifts nothing: the message just stays outstanding,
        // which the worker reports as loss at close or after the drain.
        assert_eq!(s.on_received(&wire[..63], t0, &mut stats), Ok(0));
        assert_eq!(s.outstanding(), 1);
    }

    #[test]
    fn extra_bytes_are_reported_after_the_legitimate_part() {
        let (mut s, mut stats, t0) = setup();
        s.queue(16, t0);
        let mut wire = write_all(&mut s, t0);
        let last = wire[15];
        wire.push(last);
        assert_eq!(
            s.on_received(&wire, t0, &mut stats),
            Err(Violation::Extra { bytes: 1 })
        );
        // The message itself was complete and is counted.
        assert_eq!(stats.requests, 1);
    }

    #[test]
    fn nothing_written_means_anything_received_is_extra() {
        let (mut s, mut stats, t0) = setup();
        s.queue(16, t0);
        assert_eq!(
            s.on_received(b"hello", t0, &mut stats),
            Err(Violation::Extra { bytes: 5 })
        );
    }
}
