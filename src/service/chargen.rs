//! Character generator (RFC 864): rotating lines of the 95 printable ASCII characters.
//!
//! Line `n` holds characters `n .. n+71` of the ring `' '..='~'` (modulo 95) and ends in
//! CRLF, so the stream repeats every 95 lines (7,030 bytes). Over TCP the lines flow for as
//! long as the client reads: the reactor asks for more only when everything written so far
//! has left, and never more than the per-turn budget echo gets, so chargen has backpressure
//! and is fair. A client that stops reading is closed by the stall timeout. Input is ignored.
//!
//! Over UDP, each datagram gets one reply of 0 to 512 characters (RFC 864 asks for a random
//! length), taken from the stream starting at the next line, as BSD inetd rotates them. Each
//! datagram is answered by a fresh value (see [`Service::on_datagram`]), so the rotation is
//! the one piece of state kept between datagrams, and it is kept on purpose, in
//! [`NEXT_DATAGRAM_LINE`].

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Output, Service};

/// Characters per line, before CRLF.
pub const LINE_CHARS: usize = 72;
/// Bytes per line, CRLF included.
pub const LINE_LEN: usize = LINE_CHARS + 2;
/// The printable ASCII characters, space to tilde.
pub const RING: usize = 95;
/// The longest UDP reply (RFC 864: "between 0 and 512").
pub const MAX_DATAGRAM_CHARS: usize = 512;

/// The whole repeating stream: 95 lines of 74 bytes.
pub static CYCLE: [u8; RING * LINE_LEN] = build_cycle();

const fn build_cycle() -> [u8; RING * LINE_LEN] {
    let mut cycle = [0u8; RING * LINE_LEN];
    let mut line = 0;
    while line < RING {
        let mut column = 0;
        while column < LINE_CHARS {
            cycle[line * LINE_LEN + column] = b' ' + ((line + column) % RING) as u8;
            column += 1;
        }
        cycle[line * LINE_LEN + LINE_CHARS] = b'\r';
        cycle[line * LINE_LEN + LINE_CHARS + 1] = b'\n';
        line += 1;
    }
    cycle
}

/// The line the next UDP reply starts with, shared by every chargen socket of the process
/// (the lines rotate per datagram, as in BSD inetd; only the rotation is shared, never a
/// request's bytes).
pub static NEXT_DATAGRAM_LINE: AtomicUsize = AtomicUsize::new(0);

/// RFC 864 chargen: where the stream is, and the state for random datagram lengths.
#[derive(Debug, Clone)]
pub struct Chargen {
    /// Position of the next byte in [`CYCLE`].
    offset: usize,
    /// xorshift64 state; never zero.
    random: u64,
}

impl Chargen {
    /// A generator at line 0; `seed` varies the datagram lengths. Seeds close together (the
    /// clock's nanoseconds, one value per datagram) are spread apart first (splitmix64's
    /// finaliser), so that the lengths of successive datagrams do not follow each other.
    pub fn new(seed: u64) -> Chargen {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Chargen {
            offset: 0,
            random: (z ^ (z >> 31)) | 1,
        }
    }

    /// Appends `len` bytes of the stream from `offset`, wrapping round the cycle; returns
    /// the new offset.
    fn write_from(mut offset: usize, mut len: usize, out: &mut Output<'_>) -> usize {
        while len > 0 {
            let take = len.min(CYCLE.len() - offset);
            out.write(&CYCLE[offset..offset + take]);
            len -= take;
            offset = (offset + take) % CYCLE.len();
        }
        offset
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64 (Marsaglia): enough to spread lengths over 0..=512.
        let mut x = self.random;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random = x;
        x
    }
}

impl Service for Chargen {
    /// RFC 864: "Data received is thrown away".
    fn on_input(&mut self, _input: &[u8], _out: &mut Output<'_>) {}

    fn streams(&self) -> bool {
        true
    }

    fn on_writable(&mut self, out: &mut Output<'_>) {
        self.offset = Chargen::write_from(self.offset, out.room(), out);
    }

    fn on_datagram(&mut self, _request: &[u8], out: &mut Output<'_>) -> bool {
        let len = (self.next_random() % (MAX_DATAGRAM_CHARS as u64 + 1)) as usize;
        let line = NEXT_DATAGRAM_LINE.fetch_add(1, Ordering::Relaxed) % RING;
        Chargen::write_from(line * LINE_LEN, len, out);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Transcript;
    use std::time::SystemTime;

    const FIRST: &[u8; 74] =
        b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n";
    const SECOND: &[u8; 74] =
        b"!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n";

    #[test]
    fn first_lines_are_the_rfc_pattern_and_rotate_every_95_lines() {
        assert_eq!(&CYCLE[..LINE_LEN], FIRST);
        assert_eq!(&CYCLE[LINE_LEN..2 * LINE_LEN], SECOND);
        // Line 23 ends at the ring's last character; line 24 wraps past '~' back to ' '.
        let line_23 = &CYCLE[23 * LINE_LEN..24 * LINE_LEN];
        assert!(line_23.starts_with(b"789:") && line_23.ends_with(b"}~\r\n"));
        let line_24 = &CYCLE[24 * LINE_LEN..25 * LINE_LEN];
        assert!(line_24.starts_with(b"89:;") && line_24.ends_with(b"}~ \r\n"));
        let last = &CYCLE[94 * LINE_LEN..];
        assert!(
            last.starts_with(b"~ !\"#"),
            "line 94 starts at the ring's last character"
        );
        for line in CYCLE.chunks(LINE_LEN) {
            assert!(line[..LINE_CHARS].iter().all(|b| (b' '..=b'~').contains(b)));
        }
    }

    #[test]
    fn tcp_streams_only_as_much_as_the_room_and_continues_where_it_stopped() {
        let mut chat = Transcript::open_at(Box::new(Chargen::new(1)), SystemTime::now(), 100);
        assert!(
            chat.greeting().is_empty(),
            "chargen waits for room to write"
        );
        let first = chat.writable();
        assert_eq!(first.len(), 100);
        assert_eq!(&first[..74], FIRST);
        let second = chat.writable();
        assert_eq!(&second[..48], &SECOND[26..]);
        assert!(chat.input(b"ignored").is_empty());
        assert!(!chat.is_closed());
        // A whole cycle and then some wraps back to line 0.
        let mut stream = first;
        stream.extend(second);
        while stream.len() < CYCLE.len() + LINE_LEN {
            stream.extend(chat.writable());
        }
        assert_eq!(&stream[..CYCLE.len()], &CYCLE[..]);
        assert_eq!(&stream[CYCLE.len()..CYCLE.len() + LINE_LEN], FIRST);
    }

    /// The one test that answers chargen datagrams in this binary: the line rotation is
    /// process-wide, so another would move it under this one.
    #[test]
    fn datagrams_carry_0_to_512_characters_starting_at_the_next_line() {
        let kind = crate::service::ServiceKind::Chargen;
        let first = NEXT_DATAGRAM_LINE.load(Ordering::Relaxed);
        let mut lengths = Vec::new();
        for n in 0..400 {
            let reply = Transcript::datagram(&kind, b"", SystemTime::now());
            let reply = reply.expect("chargen always answers");
            assert!(reply.len() <= MAX_DATAGRAM_CHARS);
            let start = ((first + n) % RING) * LINE_LEN;
            let expected: Vec<u8> = CYCLE
                .iter()
                .chain(CYCLE.iter())
                .copied()
                .skip(start)
                .collect();
            let expected = &expected[..reply.len()];
            assert_eq!(reply, expected, "datagram {n}");
            lengths.push(reply.len());
        }
        assert!(lengths.iter().any(|&l| l < 100) && lengths.iter().any(|&l| l > 400));
    }
}
