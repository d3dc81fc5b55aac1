//! The `/metrics` endpoint's place in the loop: its tokens, routing its events, its timeouts
//! (the oldest scrape's deadline is `Timer::ScrapeExpiry` in the registry).
//! The endpoint itself (sockets, HTTP, the page) lives in `crate::metrics`; without the
//! `metrics` feature these hooks compile to nothing.

use std::time::Instant;

use mio::Token;

#[cfg(feature = "metrics")]
use super::deadlines::Timer;
use super::Server;

/// The metrics listener, below the other reserved tokens.
#[cfg(feature = "metrics")]
pub(super) const METRICS_LISTENER: Token = Token(usize::MAX - 4);
/// The scrape connections take the `MAX_SCRAPES` tokens below the listener's.
#[cfg(feature = "metrics")]
pub(super) const METRICS_FIRST_SCRAPE: Token =
    Token(METRICS_LISTENER.0 - crate::metrics::MAX_SCRAPES);

impl Server {
    /// True for the metrics listener's token and its scrape connections'.
    pub(super) fn is_metrics_token(&self, token: Token) -> bool {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            return metrics.owns(token);
        }
        let _ = token;
        false
    }

    /// Lets the endpoint accept, read a request, or answer it; the page is a snapshot of
    /// the counters taken only when a complete request asks for it.
    pub(super) fn on_metrics_ready(&mut self, token: Token, now: Instant) {
        #[cfg(feature = "metrics")]
        if let Some(mut metrics) = self.metrics.take() {
            metrics.on_ready(self.poll.registry(), token, now, &|| self.snapshots());
            self.deadlines
                .set(Timer::ScrapeExpiry, metrics.next_deadline());
            self.metrics = Some(metrics);
        }
        let _ = (token, now);
    }

    /// The oldest scrape connection's deadline came: closes the ones past theirs, and sets
    /// the timer for the next.
    pub(super) fn expire_scrapes(&mut self, now: Instant) {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = self.metrics.as_mut() {
            metrics.expire(now);
            self.deadlines
                .set(Timer::ScrapeExpiry, metrics.next_deadline());
        }
        let _ = now;
    }
}
