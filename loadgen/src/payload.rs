//! Deterministic payload streams: what a connection sends, and the check of what comes back.
//!
//! Every connection owns an endless byte stream defined by a 64-bit key: a walk through one
//! shared table of random bytes (1 MiB, made once from splitmix64), starting at a position
//! derived from the key and wrapping around. Because any offset can be computed directly
//! (random access, no state), the sender can regenerate bytes the socket did not take instead
//! of buffering them, and the receiver checks each echoed chunk against the offset it expects
//! next without ever storing a copy of what was sent. TCP promises in-order delivery, so "the
//! next byte received must equal the next byte of the stream" catches any corruption, drop,
//! duplicate or reordering at the first byte it shifts (random bytes: a shifted stream differs
//! from the expected one at the first position with probability 255/256, and the next few
//! make a miss vanishingly unlikely). A shift by exactly the table length would slip past the
//! content check, but never past the byte count: the totals still show the loss.
//!
//! Why a table rather than computing splitmix64 per word: filling and checking become
//! `memcpy` and `memcmp` (tens of GB/s), so for 64 KiB messages the generator spends its CPU
//! on the sockets, not on the pattern, and does not become the bottleneck.
//! Sans-IO: no sockets and no clock; see the unit tests and `benches/loadgen.rs`.

use std::sync::OnceLock;

/// Weyl-sequence increment of splitmix64 (2^64 / golden ratio).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Length of the shared random table.
const TABLE_LEN: usize = 1 << 20;

/// The table twice over, so any window of up to `TABLE_LEN` bytes is one contiguous slice.
fn table() -> &'static [u8] {
    static TABLE: OnceLock<Box<[u8]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut bytes = vec![0u8; 2 * TABLE_LEN];
        let mut rng = Rng::new(0x6563_686f_6c6f_6f70); // "echoloop"
        for chunk in bytes[..TABLE_LEN].chunks_exact_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        bytes.copy_within(..TABLE_LEN, TABLE_LEN);
        bytes.into_boxed_slice()
    })
}

/// The splitmix64 output function: a bijective mixer of one 64-bit word.
#[inline(always)]
pub fn mix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Derives an independent key for stream `index` under `seed` (connection number, churn
/// cycle, datagram sequence number...).
#[inline]
pub fn derive_key(seed: u64, index: u64) -> u64 {
    mix64(seed ^ mix64(index.wrapping_add(GAMMA)))
}

/// One connection's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern {
    /// Where in the table this stream's byte 0 is.
    start: usize,
}

impl Pattern {
    /// The stream named by `key`.
    pub fn new(key: u64) -> Pattern {
        Pattern {
            start: (mix64(key) % TABLE_LEN as u64) as usize,
        }
    }

    /// Calls `each(window, done)` for consecutive table windows covering `len` bytes of the
    /// stream from `offset`; `done` is how many bytes came before this window.
    #[inline]
    fn windows(&self, offset: u64, len: usize, mut each: impl FnMut(&[u8], usize) -> bool) {
        let table = table();
        let mut at = ((self.start as u64 + offset % TABLE_LEN as u64) % TABLE_LEN as u64) as usize;
        let mut done = 0;
        while done < len {
            let n = (len - done).min(TABLE_LEN);
            if !each(&table[at..at + n], done) {
                return;
            }
            done += n;
            at = (at + n) % TABLE_LEN;
        }
    }

    /// Writes the stream's bytes `[offset, offset + buf.len())` into `buf`.
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        let len = buf.len();
        self.windows(offset, len, |window, done| {
            buf[done..done + window.len()].copy_from_slice(window);
            true
        });
    }

    /// Checks that `data` equals the stream's bytes starting at `offset`.
    /// Returns the index in `data` of the first wrong byte, if any.
    pub fn verify(&self, offset: u64, data: &[u8]) -> Result<(), usize> {
        let mut result = Ok(());
        self.windows(offset, data.len(), |window, done| {
            let got = &data[done..done + window.len()];
            if got == window {
                return true;
            }
            result = Err(done + first_diff(got, window));
            false
        });
        result
    }

    /// The offsets below `limit` at which this stream's byte is the table's byte at
    /// `position` (one per table period), lowest first.
    pub fn offsets_at(&self, position: usize, limit: u64) -> impl Iterator<Item = u64> {
        let period = TABLE_LEN as u64;
        let first = (position as u64 + period - self.start as u64) % period;
        (0..)
            .map(move |k| first + k * period)
            .take_while(move |&o| o < limit)
    }
}

/// Shortest run of bytes [`table_position`] will try to place: shorter ones could sit in the
/// random table by chance.
pub const MIN_LOCATABLE: usize = 8;

/// Where in the shared table `needle` occurs, if it does: the diagnosis of bytes that arrived
/// where they should not (whose stream they came from, see [`Pattern::offsets_at`]). `None`
/// when the needle is shorter than [`MIN_LOCATABLE`] or is no run of any stream.
pub fn table_position(needle: &[u8]) -> Option<usize> {
    if needle.len() < MIN_LOCATABLE || needle.len() > TABLE_LEN {
        return None;
    }
    // The doubled table makes a run that wraps around contiguous.
    let table = table();
    (0..TABLE_LEN).find(|&at| table[at] == needle[0] && table[at..].starts_with(needle))
}

fn first_diff(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0)
}

/// A small sequential PRNG (splitmix64) for message sizes and other per-connection choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix64(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(p: &Pattern, offset: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        p.fill(offset, &mut v);
        v
    }

    #[test]
    fn fill_is_random_access() {
        // Generating a range piecewise at odd offsets gives the same bytes as all at once.
        let p = Pattern::new(42);
        let whole = stream(&p, 0, 1000);
        for (start, len) in [
            (0, 1),
            (1, 7),
            (3, 8),
            (5, 17),
            (8, 64),
            (13, 500),
            (999, 1),
        ] {
            assert_eq!(stream(&p, start, len)[..], whole[start as usize..][..len]);
        }
        assert_ne!(stream(&Pattern::new(43), 0, 64), whole[..64]);
    }

    #[test]
    fn streams_wrap_around_the_table_seamlessly() {
        let p = Pattern::new(3);
        let len = 2 * TABLE_LEN + 1000;
        let whole = stream(&p, 0, len);
        assert_eq!(
            whole[..1000],
            whole[TABLE_LEN..TABLE_LEN + 1000],
            "period is the table"
        );
        let wrap = TABLE_LEN - p.start;
        for start in [wrap - 5, wrap, wrap + 5, TABLE_LEN - 1, TABLE_LEN + 7] {
            assert_eq!(stream(&p, start as u64, 64)[..], whole[start..start + 64]);
        }
        assert_eq!(p.verify(0, &whole), Ok(()));
        let mut bad = whole.clone();
        bad[TABLE_LEN + 12_345] ^= 0x80;
        assert_eq!(p.verify(0, &bad), Err(TABLE_LEN + 12_345));
    }

    #[test]
    fn verify_accepts_the_stream_at_any_split() {
        let p = Pattern::new(7);
        let whole = stream(&p, 0, 300);
        for cut in 0..300 {
            assert_eq!(p.verify(0, &whole[..cut]), Ok(()));
            assert_eq!(p.verify(cut as u64, &whole[cut..]), Ok(()));
        }
    }

    #[test]
    fn verify_pins_a_flipped_byte() {
        let p = Pattern::new(9);
        let whole = stream(&p, 0, 200);
        for i in 0..200 {
            let mut bad = whole.clone();
            bad[i] ^= 0x01;
            assert_eq!(p.verify(0, &bad), Err(i), "flip at {i}");
            // Same check when the chunk starts at an unaligned offset.
            if i >= 3 {
                assert_eq!(p.verify(3, &bad[3..]), Err(i - 3));
            }
        }
    }

    #[test]
    fn verify_catches_drop_duplicate_and_swap() {
        let p = Pattern::new(11);
        let whole = stream(&p, 0, 256);
        for i in 0..255 {
            let mut dropped = whole.clone();
            dropped.remove(i);
            assert!(p.verify(0, &dropped).is_err(), "drop at {i}");
            let mut dup = whole.clone();
            dup.insert(i, whole[i]);
            // A duplicate is only invisible when the next byte happens to be equal, in
            // which case the shift shows one byte later; either way it is an error.
            assert!(p.verify(0, &dup).is_err(), "duplicate at {i}");
            if whole[i] != whole[i + 1] {
                let mut swapped = whole.clone();
                swapped.swap(i, i + 1);
                assert_eq!(p.verify(0, &swapped), Err(i), "swap at {i}");
            }
        }
    }

    #[test]
    fn runs_are_located_in_their_stream() {
        let p = Pattern::new(21);
        let whole = stream(&p, 0, 3 * TABLE_LEN);
        for at in [0, 5, TABLE_LEN - 3, TABLE_LEN + 100] {
            let pos = table_position(&whole[at..at + 16]).expect("a run of the stream");
            let offsets: Vec<u64> = p.offsets_at(pos, 3 * TABLE_LEN as u64).collect();
            assert!(offsets.contains(&(at as u64)), "{at}: {offsets:?}");
            assert_eq!(offsets.len(), 3, "one per period");
        }
        assert_eq!(
            table_position(&whole[..MIN_LOCATABLE - 1]),
            None,
            "too short"
        );
        let mut altered = whole[..16].to_vec();
        altered[7] ^= 0xff;
        assert_eq!(
            table_position(&altered),
            None,
            "no stream holds an altered run"
        );
    }

    #[test]
    fn keys_are_distinct() {
        let a = derive_key(1, 0);
        assert_ne!(a, derive_key(1, 1));
        assert_ne!(a, derive_key(2, 0));
    }

    #[test]
    fn rng_is_deterministic() {
        let (mut a, mut b) = (Rng::new(5), Rng::new(5));
        for _ in 0..10 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }
}
