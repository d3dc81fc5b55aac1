//! The one random generator of the tests and benches: SplitMix64, seeded, so a failing test
//! prints its seed and replays from it (`ECHOLOOP_TEST_SEED`). Plus [`pattern`], a cheap
//! deterministic payload whose every shift or repeat shows up as a mismatch.
//!
//! SplitMix64 (Steele, Lea and Flood, 2014) is one addition and one mixing function per
//! word: fast enough to fill megabytes in debug builds, and well mixed from any seed,
//! including 0. [`hash64`] is its mixing step on its own, for position-keyed bytes (byte `i`
//! of a message = `hash64(i)`) that need no generator state.

/// Weyl-sequence increment of SplitMix64 (2^64 / golden ratio).
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// A seeded SplitMix64 generator.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `ECHOLOOP_TEST_SEED` if set, else from the clock; the seed is printed with
    /// `test`'s name so the run can be replayed.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("ECHOLOOP_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("{test}: seed {seed} (rerun with ECHOLOOP_TEST_SEED={seed})");
        Rng::new(seed)
    }

    /// A generator that replays the same sequence for the same `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `low..=high` (up to a negligible modulo bias).
    pub fn range(&mut self, low: usize, high: usize) -> usize {
        low + (self.next_u64() % (high - low + 1) as u64) as usize
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// A well-mixed hash of one word: the first output of `Rng::new(x)`.
pub fn hash64(x: u64) -> u64 {
    mix(x.wrapping_add(GOLDEN))
}

/// SplitMix64's output function: a bijective mixer of one word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A deterministic, position-dependent pattern: cheap to make, and a shifted or repeated
/// byte shows up as a mismatch.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published SplitMix64 reference outputs for seed 1234567, so the generator is the
    /// real one and a seed means the same sequence everywhere.
    #[test]
    fn matches_the_reference_sequence() {
        let mut rng = Rng::new(1_234_567);
        let first: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(
            first,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423
            ]
        );
        assert_eq!(hash64(1_234_567), first[0]);
    }

    /// The same seed replays the same bytes; `range` stays within its bounds.
    #[test]
    fn seeded_runs_replay_and_ranges_hold() {
        assert_eq!(Rng::new(7).bytes(64), Rng::new(7).bytes(64));
        assert_ne!(Rng::new(7).bytes(64), Rng::new(8).bytes(64));
        let mut rng = Rng::new(0);
        for _ in 0..1000 {
            let v = rng.range(3, 9);
            assert!((3..=9).contains(&v), "{v}");
        }
    }
}
