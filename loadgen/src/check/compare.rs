//! The sans-IO core of `check`: what a connection expected against what arrived, and the
//! one-line account of the first thing that went wrong. No sockets and no clock, so every
//! diagnosis (first differing byte, truncation, extra bytes, whose stream stray bytes came
//! from, a datagram cut short) is unit-tested here as a plain script.
//!
//! Each TCP connection sends one [`Pattern`] stream; [`EchoStream`] checks the echo chunk by
//! chunk at the offset it expects next. When bytes differ, the sample that arrived instead
//! is looked up in the payload table: bytes of the connection's own stream at another offset
//! mean bytes were skipped or repeated; bytes of another connection's stream mean cross-talk.

use crate::payload::{table_position, Pattern, MIN_LOCATABLE};
use std::fmt;
use std::time::Duration;

/// How many bytes of each side a mismatch shows (and the run looked up in the table).
const SAMPLE: usize = 16;
/// How many bytes of each side are printed.
const SHOWN: usize = 8;

/// Why one connection (or socket) failed a check, as the user will read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A byte of the echo differs from the byte sent at that offset.
    Mismatch(Mismatch),
    /// The echo went on past the bytes sent.
    Extra {
        sent: u64,
        got: Vec<u8>,
        /// Where the extra bytes come from, once [`Failure::explain`] found out.
        origin: Option<String>,
    },
    /// The server closed (FIN) before echoing everything.
    Truncated { received: u64, expected: u64 },
    /// The server reset the connection (RST).
    Reset { received: u64, expected: u64 },
    /// Nothing arrived for `idle` while echoes were due.
    Timeout {
        received: u64,
        expected: u64,
        idle: Duration,
    },
    /// The server stopped accepting input for `idle` although the client was reading.
    NotReading {
        sent: u64,
        expected: u64,
        idle: Duration,
    },
    /// The server stopped reading while the client wrote without reading: the classic
    /// deadlock (the server blocks on its own writes).
    Deadlock {
        sent: u64,
        planned: u64,
        idle: Duration,
    },
    /// The client wrote everything before reading, but the server did not read it: `held`
    /// of the `sent` bytes stayed in the kernel's socket buffers between them for `idle`.
    /// The client finished writing only because those buffers were large enough; the server
    /// had stopped reading (it waits for its own writes), so with more data the two hang.
    HeldInBuffers {
        sent: u64,
        held: u64,
        idle: Duration,
    },
    /// Everything came back, but no FIN followed the client's FIN.
    NoFin { received: u64, idle: Duration },
    /// The connection took longer than the check allows in total.
    Deadline {
        received: u64,
        expected: u64,
        limit: Duration,
    },
    /// The connection could not be opened.
    Connect(String),
    /// Any other socket error, with the step it happened in.
    Io { step: &'static str, error: String },
}

/// The first differing byte of an echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Stream offset of the first wrong byte.
    pub offset: u64,
    /// The bytes that should have arrived there (up to `SAMPLE`).
    pub expected: Vec<u8>,
    /// The bytes that did arrive (up to `SAMPLE`).
    pub got: Vec<u8>,
    /// Where the bytes that arrived come from, once [`Failure::explain`] found out.
    pub origin: Option<String>,
}

/// A stream someone sent, for explaining stray bytes: its label ("connection 7"), its key,
/// and how many bytes of it were sent (stray bytes cannot come from beyond that).
#[derive(Debug, Clone)]
pub struct StreamRef {
    pub label: String,
    pub key: u64,
    pub sent: u64,
}

impl Failure {
    /// Says where stray bytes (of a mismatch, or extra ones) came from: `own` (the
    /// connection's own stream at another offset: bytes skipped or repeated) or one of
    /// `peers` (cross-talk), or no stream at all (corruption). Other failures are left as
    /// they are.
    pub fn explain(&mut self, own: &StreamRef, peers: &[StreamRef]) {
        let (got, offset, origin) = match self {
            Failure::Mismatch(m) => (&m.got, m.offset, &mut m.origin),
            Failure::Extra { sent, got, origin } => (&*got, *sent, origin),
            _ => return,
        };
        *origin = trace(got, offset, own, peers);
    }

    /// True for a failure that is the server not answering in time (rather than answering
    /// wrongly): a hanging server shows up as one of these.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Failure::Timeout { .. }
                | Failure::NotReading { .. }
                | Failure::Deadlock { .. }
                | Failure::HeldInBuffers { .. }
                | Failure::NoFin { .. }
                | Failure::Deadline { .. }
        )
    }
}

/// Whose bytes `got` are, given that they arrived where `own`'s offset `offset` was due.
fn trace(got: &[u8], offset: u64, own: &StreamRef, peers: &[StreamRef]) -> Option<String> {
    let corrupted = || Some("these bytes are in no stream sent: corrupted".to_string());
    let Some(position) = table_position(got) else {
        return if got.len() >= MIN_LOCATABLE {
            corrupted()
        } else {
            None
        };
    };
    // The own stream first: bytes skipped or repeated. The table repeats every 1 MiB, so
    // a long stream holds the same run at several offsets; all of them are named then.
    let own_at: Vec<u64> = Pattern::new(own.key)
        .offsets_at(position, own.sent.max(offset + 1))
        .filter(|&o| o != offset)
        .collect();
    match own_at.as_slice() {
        [] => {}
        [at] => {
            let how = if *at > offset {
                format!("{} bytes skipped", at - offset)
            } else {
                format!("{} bytes repeated", offset - at)
            };
            return Some(format!(
                "they are this stream's bytes at offset {at} ({how})"
            ));
        }
        many => {
            let list: Vec<String> = many.iter().take(4).map(u64::to_string).collect();
            return Some(format!(
                "they are this stream's bytes at one of offsets {}: bytes skipped or repeated",
                list.join(", ")
            ));
        }
    }
    let suspects: Vec<String> = peers
        .iter()
        .filter(|p| p.key != own.key)
        .filter_map(|p| {
            let at = Pattern::new(p.key).offsets_at(position, p.sent).next()?;
            Some(format!("{} at offset {at}", p.label))
        })
        .collect();
    match suspects.as_slice() {
        [] => corrupted(),
        [one] => Some(format!("cross-talk: they are the bytes of {one}")),
        many => Some(format!(
            "cross-talk: they are the bytes of one of {}",
            many.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
        )),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s: Vec<String> = bytes
        .iter()
        .take(SHOWN)
        .map(|b| format!("{b:02x}"))
        .collect();
    if bytes.len() > SHOWN {
        s.push("..".into());
    }
    if s.is_empty() {
        return "nothing".into();
    }
    s.join(" ")
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Mismatch(m) => {
                write!(
                    f,
                    "first differing byte at offset {}: expected {}, got {}",
                    m.offset,
                    hex(&m.expected),
                    hex(&m.got)
                )?;
                if let Some(origin) = &m.origin {
                    write!(f, "; {origin}")?;
                }
                Ok(())
            }
            Failure::Extra { sent, got, origin } => {
                write!(
                    f,
                    "extra bytes after all {sent} sent came back: {}",
                    hex(got)
                )?;
                if let Some(origin) = origin {
                    write!(f, "; {origin}")?;
                }
                Ok(())
            }
            Failure::Truncated { received, expected } => write!(
                f,
                "truncated: the server closed (FIN) after {received} of {expected} bytes"
            ),
            Failure::Reset { received, expected } => write!(
                f,
                "connection reset by the server after {received} of {expected} bytes came back \
                 (RST: e.g. it closed with input unread, or its listen backlog overflowed)"
            ),
            Failure::Timeout {
                received,
                expected,
                idle,
            } => write!(
                f,
                "timeout: nothing for {} after {received} of {expected} bytes came back",
                secs(*idle)
            ),
            Failure::NotReading {
                sent,
                expected,
                idle,
            } => write!(
                f,
                "timeout: the server took no input for {} after {sent} of {expected} bytes, \
                 although the client was reading",
                secs(*idle)
            ),
            Failure::Deadlock {
                sent,
                planned,
                idle,
            } => write!(
                f,
                "the server stopped reading after {sent} of {planned} bytes while the client \
                 was writing before reading (no progress for {}): they deadlock",
                secs(*idle)
            ),
            Failure::HeldInBuffers { sent, held, idle } => write!(
                f,
                "the server stopped reading while the client was writing before reading: all \
                 {sent} bytes were written, but {held} of them stayed unread in the kernel's \
                 socket buffers for {} (only the buffers' size kept this from a deadlock: with \
                 more data, or smaller buffers, the two hang)",
                secs(*idle)
            ),
            Failure::NoFin { received, idle } => write!(
                f,
                "all {received} bytes came back, but no FIN within {} of the client's FIN",
                secs(*idle)
            ),
            Failure::Deadline {
                received,
                expected,
                limit,
            } => write!(
                f,
                "too slow: {received} of {expected} bytes came back within {}",
                secs(*limit)
            ),
            Failure::Connect(e) => write!(f, "connect failed: {e}"),
            Failure::Io { step, error } => write!(f, "{step}: {error}"),
        }
    }
}

/// The receiving half of one connection's check: the echo must be the bytes sent, in order,
/// no more and no fewer.
#[derive(Debug, Clone)]
pub struct EchoStream {
    pattern: Pattern,
    received: u64,
}

impl EchoStream {
    /// The echo of the stream named `key`.
    pub fn new(key: u64) -> EchoStream {
        EchoStream {
            pattern: Pattern::new(key),
            received: 0,
        }
    }

    /// Bytes checked so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Checks `data`, which arrived after [`received`](Self::received) bytes, when `sent`
    /// bytes have been sent in all (the echo cannot run ahead of them).
    pub fn on_data(&mut self, data: &[u8], sent: u64) -> Result<(), Failure> {
        let room = sent.saturating_sub(self.received);
        let mine = &data[..data.len().min(usize::try_from(room).unwrap_or(usize::MAX))];
        if let Err(i) = self.pattern.verify(self.received, mine) {
            let offset = self.received + i as u64;
            let mut expected = vec![0; (mine.len() - i).min(SAMPLE)];
            self.pattern.fill(offset, &mut expected);
            let got = data[i..].iter().take(SAMPLE).copied().collect();
            return Err(Failure::Mismatch(Mismatch {
                offset,
                expected,
                got,
                origin: None,
            }));
        }
        self.received += mine.len() as u64;
        if mine.len() < data.len() {
            return Err(Failure::Extra {
                sent,
                got: data[mine.len()..].iter().take(SAMPLE).copied().collect(),
                origin: None,
            });
        }
        Ok(())
    }

    /// The server closed: fine only if every one of the `expected` bytes came back.
    pub fn on_eof(&self, expected: u64) -> Result<(), Failure> {
        if self.received < expected {
            return Err(Failure::Truncated {
                received: self.received,
                expected,
            });
        }
        Ok(())
    }
}

/// What is wrong with a datagram echoed for `sent`, if anything.
pub fn compare_datagram(sent: &[u8], got: &[u8]) -> Result<(), String> {
    if got == sent {
        return Ok(());
    }
    if got.len() < sent.len() && sent.starts_with(got) {
        return Err(format!(
            "truncated: the reply has {} of {} bytes",
            got.len(),
            sent.len()
        ));
    }
    let at = sent
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(sent.len().min(got.len()));
    if at == sent.len().min(got.len()) {
        return Err(format!(
            "the reply has {} bytes for a request of {} (same content up to there)",
            got.len(),
            sent.len()
        ));
    }
    Err(format!(
        "first differing byte at offset {at}: expected {}, got {} (reply {} bytes, request {})",
        hex(&sent[at..]),
        hex(&got[at..]),
        got.len(),
        sent.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::derive_key;

    fn bytes(key: u64, offset: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        Pattern::new(key).fill(offset, &mut v);
        v
    }

    fn own(key: u64, sent: u64) -> StreamRef {
        StreamRef {
            label: "this".into(),
            key,
            sent,
        }
    }

    #[test]
    fn an_exact_echo_in_any_chunks_passes() {
        let data = bytes(1, 0, 5000);
        let mut s = EchoStream::new(1);
        for chunk in data.chunks(777) {
            s.on_data(chunk, 5000).unwrap();
        }
        assert_eq!(s.received(), 5000);
        assert_eq!(s.on_eof(5000), Ok(()));
    }

    #[test]
    fn a_flipped_byte_is_pinned_and_called_corruption() {
        let mut data = bytes(2, 0, 4096);
        data[1000] ^= 0x40;
        let mut s = EchoStream::new(2);
        let mut f = s.on_data(&data, 4096).unwrap_err();
        f.explain(&own(2, 4096), &[]);
        let text = f.to_string();
        assert!(
            text.starts_with("first differing byte at offset 1000"),
            "{text}"
        );
        assert!(text.contains("corrupted"), "{text}");
    }

    #[test]
    fn skipped_bytes_are_counted() {
        // The server dropped 300 bytes (a short write whose remainder it forgot).
        let mut data = bytes(3, 0, 1000);
        data.extend(bytes(3, 1300, 700));
        let mut f = EchoStream::new(3).on_data(&data, 2000).unwrap_err();
        f.explain(&own(3, 2000), &[]);
        let text = f.to_string();
        assert!(text.contains("offset 1000"), "{text}");
        assert!(text.contains("offset 1300 (300 bytes skipped)"), "{text}");
    }

    #[test]
    fn bytes_of_another_connection_are_named() {
        let (a, b) = (derive_key(9, 1), derive_key(9, 2));
        let mut data = bytes(a, 0, 100);
        data.extend(bytes(b, 40, 64));
        let mut f = EchoStream::new(a).on_data(&data, 200).unwrap_err();
        let peer = StreamRef {
            label: "connection 2".into(),
            key: b,
            sent: 200,
        };
        f.explain(&own(a, 200), &[peer]);
        let text = f.to_string();
        assert!(text.contains("offset 100"), "{text}");
        assert!(
            text.contains("cross-talk: they are the bytes of connection 2 at offset 40"),
            "{text}"
        );
    }

    #[test]
    fn truncation_and_extra_bytes() {
        let data = bytes(4, 0, 100);
        let mut s = EchoStream::new(4);
        s.on_data(&data[..60], 100).unwrap();
        assert_eq!(
            s.on_eof(100),
            Err(Failure::Truncated {
                received: 60,
                expected: 100
            })
        );
        let mut more = data.clone();
        more.extend(bytes(5, 7, 32));
        let mut f = EchoStream::new(4).on_data(&more, 100).unwrap_err();
        assert!(matches!(f, Failure::Extra { sent: 100, .. }), "{f:?}");
        let peer = StreamRef {
            label: "connection 5".into(),
            key: 5,
            sent: 64,
        };
        f.explain(&own(4, 100), &[peer]);
        let text = f.to_string();
        assert!(text.contains("bytes of connection 5 at offset 7"), "{text}");
    }

    #[test]
    fn datagrams() {
        let sent = bytes(5, 0, 1473);
        assert_eq!(compare_datagram(&sent, &sent), Ok(()));
        let e = compare_datagram(&sent, &sent[..1472]).unwrap_err();
        assert!(e.contains("truncated: the reply has 1472 of 1473"), "{e}");
        let mut bad = sent.clone();
        bad[9] ^= 1;
        let e = compare_datagram(&sent, &bad).unwrap_err();
        assert!(e.contains("offset 9"), "{e}");
        assert!(compare_datagram(&[], &[0]).is_err());
        assert_eq!(compare_datagram(&[], &[]), Ok(()));
    }
}
