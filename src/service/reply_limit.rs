//! Rate limits for UDP replies that could reflect and amplify: token buckets per source
//! address and one for all sources together.
//!
//! chargen, daytime, time and unixtime answer a datagram they did not have to, and chargen's
//! answer is up to 512 bytes for an empty request. A forged source address turns such a
//! server into a reflector aimed at the address's owner. The reactor keeps its other guards
//! (no reply to port 0 or ports below 1024, none to itself); on a listener bound beyond
//! loopback it also asks this limiter before each reply of such a service. A source gets
//! `rate` replies a second after a burst of `2 × rate`; all sources together get `100 ×
//! rate`, so many forged sources cannot add up to a flood either. Refused replies are
//! counted, not queued. Echo (a reply exactly as long as its request) and discard (no reply)
//! are not limited: they cannot amplify.
//!
//! The table of sources is bounded: when it is full, sources whose buckets have refilled are
//! forgotten (they would start full anyway); if none has, new sources are refused until one
//! does, and the global bucket still bounds the total.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Most sources remembered at once.
pub(crate) const MAX_SOURCES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(capacity: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: capacity,
            updated: now,
        }
    }

    fn refill(&mut self, rate: f64, capacity: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(capacity);
        self.updated = now;
    }
}

/// Per-source and global token buckets for one listener's UDP replies.
#[derive(Debug)]
pub(crate) struct ReplyLimit {
    rate: f64,
    burst: f64,
    total: Bucket,
    sources: HashMap<IpAddr, Bucket>,
}

impl ReplyLimit {
    /// `rate` replies per second per source (at least 1), bursts of twice that.
    pub(crate) fn new(rate: u32, now: Instant) -> ReplyLimit {
        let rate = f64::from(rate.max(1));
        ReplyLimit {
            rate,
            burst: 2.0 * rate,
            total: Bucket::full(200.0 * rate, now),
            sources: HashMap::new(),
        }
    }

    /// True when `source` may get a reply now; takes a token from its bucket and the total.
    pub(crate) fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        let (rate, burst) = (self.rate, self.burst);
        self.total.refill(100.0 * rate, 200.0 * rate, now);
        if self.total.tokens < 1.0 {
            return false;
        }
        if !self.sources.contains_key(&source) && self.sources.len() >= MAX_SOURCES {
            self.sources.retain(|_, bucket| {
                bucket.refill(rate, burst, now);
                bucket.tokens < burst
            });
            if self.sources.len() >= MAX_SOURCES {
                return false;
            }
        }
        let bucket = self
            .sources
            .entry(source)
            .or_insert_with(|| Bucket::full(burst, now));
        bucket.refill(rate, burst, now);
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        self.total.tokens -= 1.0;
        true
    }

    /// Sources remembered now.
    #[cfg(test)]
    fn sources(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut limit = ReplyLimit::new(10, start);
        let allowed = (0..100).filter(|_| limit.allow(ip(1), start)).count();
        assert_eq!(allowed, 20, "a burst of twice the rate");
        let later = start + Duration::from_millis(500);
        let allowed = (0..100).filter(|_| limit.allow(ip(1), later)).count();
        assert_eq!(allowed, 5, "half a second at 10/s");
        assert!(
            limit.allow(ip(2), later),
            "another source has its own bucket"
        );
    }

    #[test]
    fn many_sources_together_are_bounded_by_the_total() {
        let start = Instant::now();
        let mut limit = ReplyLimit::new(1, start);
        let allowed = (0..1000).filter(|&n| limit.allow(ip(n), start)).count();
        assert_eq!(allowed, 200, "the global burst is 200 × rate");
        let later = start + Duration::from_secs(1);
        let allowed = (1000..2000).filter(|&n| limit.allow(ip(n), later)).count();
        assert_eq!(allowed, 100, "the global rate is 100 × rate");
    }

    #[test]
    fn the_source_table_stays_bounded() {
        let start = Instant::now();
        let mut limit = ReplyLimit::new(1_000, start);
        for n in 0..(MAX_SOURCES as u32 + 100) {
            limit.allow(ip(n), start);
        }
        assert!(limit.sources() <= MAX_SOURCES);
        // Once their buckets refill, old sources make room for new ones.
        let later = start + Duration::from_secs(10);
        assert!(limit.allow(ip(u32::MAX), later));
        assert!(limit.sources() <= MAX_SOURCES);
    }
}
