//! Deterministic payload streams: what a connection sends, and the check of what comes back.
//!
//! Every connection owns an endless byte stream defined by a 64-bit key: the byte at offset
//! `i` is byte `i % 8` of `splitmix64(key + (i / 8) * GAMMA)`. Because any offset can be
//! computed directly (random access, no state), the sender can regenerate bytes the socket
//! did not take instead of buffering them, and the receiver checks each echoed chunk against
//! the offset it expects next without ever storing a copy of what was sent. TCP promises
//! in-order delivery, so "the next byte received must equal the next byte of the stream"
//! catches any corruption, drop, duplicate or reordering at the first byte it shifts.
//!
//! The generator is splitmix64 (Steele, Lea, Flood 2014): a few multiplies per 8 bytes,
//! no tables, good enough avalanche that a one-byte shift changes every following word.
//! Sans-IO: no sockets and no clock; see the unit tests and `benches/loadgen.rs`.

/// Weyl-sequence increment of splitmix64 (2^64 / golden ratio).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

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
    key: u64,
}

impl Pattern {
    /// The stream named by `key`.
    pub fn new(key: u64) -> Pattern {
        Pattern { key }
    }

    /// The 8 bytes starting at offset `block * 8`, as a little-endian word.
    #[inline(always)]
    fn word(&self, block: u64) -> u64 {
        mix64(self.key.wrapping_add(block.wrapping_mul(GAMMA)))
    }

    /// Writes the stream's bytes `[offset, offset + buf.len())` into `buf`.
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        let head = (((8 - (offset % 8)) % 8) as usize).min(buf.len());
        let (first, rest) = buf.split_at_mut(head);
        if !first.is_empty() {
            let w = self.word(offset / 8).to_le_bytes();
            let start = (offset % 8) as usize;
            first.copy_from_slice(&w[start..start + head]);
        }
        // From here on `offset + head` is a multiple of 8: whole words.
        let mut block = (offset + head as u64) / 8;
        let mut chunks = rest.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.word(block).to_le_bytes());
            block += 1;
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let n = tail.len();
            tail.copy_from_slice(&self.word(block).to_le_bytes()[..n]);
        }
    }

    /// Checks that `data` equals the stream's bytes starting at `offset`.
    /// Returns the index in `data` of the first wrong byte, if any.
    pub fn verify(&self, offset: u64, data: &[u8]) -> Result<(), usize> {
        let head = (((8 - (offset % 8)) % 8) as usize).min(data.len());
        let (first, rest) = data.split_at(head);
        if !first.is_empty() {
            let w = self.word(offset / 8).to_le_bytes();
            let start = (offset % 8) as usize;
            if first != &w[start..start + head] {
                return Err(first_diff(first, &w[start..start + head]));
            }
        }
        let mut block = (offset + head as u64) / 8;
        let mut chunks = rest.chunks_exact(8);
        // Compare whole words and only look for the exact byte once one differs: the
        // common (correct) case is one load, one mix and one compare per 8 bytes.
        for (i, chunk) in (&mut chunks).enumerate() {
            let got = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            let want = self.word(block);
            if got != want {
                return Err(head + i * 8 + first_diff(chunk, &want.to_le_bytes()));
            }
            block += 1;
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let w = self.word(block).to_le_bytes();
            if tail != &w[..tail.len()] {
                return Err(data.len() - tail.len() + first_diff(tail, &w));
            }
        }
        Ok(())
    }
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
