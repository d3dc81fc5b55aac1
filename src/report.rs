//! The periodic stats line (and the one SIGUSR1 asks for): the totals of [`Stats`] followed by
//! per-second rates over the interval since the previous line, so an operator reads both "how
//! much so far" and "how fast now" without subtracting two lines by hand.
//!
//! The line stays `key=value` pairs separated by spaces: rates are `*_per_s` keys after
//! `interval_s`, and the byte accounting (`Stats::accounting_holds`) applies to its totals.

use std::fmt;
use std::time::Duration;

use crate::stats::Stats;

/// Remembers the previous report so the next one can show rates.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reporter {
    previous: Stats,
}

/// One report: totals now, and rates since the previous report.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// The counters now.
    pub totals: Stats,
    /// The time since the previous report (or since the start, for the first).
    pub interval: Duration,
    /// Per-second rates over `interval`.
    pub rates: Rates,
}

/// Per-second rates of the counters that move with traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Rates {
    /// TCP connections accepted per second.
    pub conn_accepted: f64,
    /// TCP connections closed per second.
    pub conn_closed: f64,
    /// TCP bytes read per second.
    pub tcp_bytes_in: f64,
    /// TCP bytes echoed per second.
    pub tcp_bytes_out: f64,
    /// UDP datagrams received per second.
    pub udp_datagrams_in: f64,
    /// UDP datagrams echoed per second.
    pub udp_datagrams_out: f64,
}

impl Reporter {
    /// The report for `now`, which becomes the base of the next one's rates.
    pub(crate) fn report(&mut self, now: Stats) -> Report {
        let interval = now.uptime.saturating_sub(self.previous.uptime);
        let secs = interval.as_secs_f64();
        let rate = |later: u64, earlier: u64| {
            if secs > 0.0 {
                later.saturating_sub(earlier) as f64 / secs
            } else {
                0.0
            }
        };
        let before = &self.previous;
        let rates = Rates {
            conn_accepted: rate(now.conn_accepted, before.conn_accepted),
            conn_closed: rate(now.conn_closed, before.conn_closed),
            tcp_bytes_in: rate(now.tcp_bytes_in, before.tcp_bytes_in),
            tcp_bytes_out: rate(now.tcp_bytes_out, before.tcp_bytes_out),
            udp_datagrams_in: rate(now.udp_datagrams_in, before.udp_datagrams_in),
            udp_datagrams_out: rate(now.udp_datagrams_out, before.udp_datagrams_out),
        };
        self.previous = now.clone();
        Report {
            totals: now,
            interval,
            rates,
        }
    }
}

/// `<totals> interval_s=… conn_accepted_per_s=… …`, one line.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.rates;
        write!(
            f,
            "{} interval_s={:.3} conn_accepted_per_s={:.1} conn_closed_per_s={:.1} \
             tcp_bytes_in_per_s={:.0} tcp_bytes_out_per_s={:.0} udp_datagrams_in_per_s={:.1} \
             udp_datagrams_out_per_s={:.1}",
            self.totals,
            self.interval.as_secs_f64(),
            r.conn_accepted,
            r.conn_closed,
            r.tcp_bytes_in,
            r.tcp_bytes_out,
            r.udp_datagrams_in,
            r.udp_datagrams_out,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, tcp_bytes_in: u64, conn_accepted: u64) -> Stats {
        Stats {
            uptime: Duration::from_secs(secs),
            tcp_bytes_in,
            conn_accepted,
            ..Stats::default()
        }
    }

    /// Rates cover the interval since the previous report, not the whole uptime.
    #[test]
    fn rates_are_over_the_last_interval() {
        let mut reporter = Reporter::default();
        let first = reporter.report(at(10, 1000, 10));
        assert_eq!(first.interval, Duration::from_secs(10));
        assert_eq!(first.rates.tcp_bytes_in, 100.0);
        let second = reporter.report(at(12, 5000, 10));
        assert_eq!(second.interval, Duration::from_secs(2));
        assert_eq!(second.rates.tcp_bytes_in, 2000.0);
        assert_eq!(second.rates.conn_accepted, 0.0);
    }

    #[test]
    fn a_zero_interval_gives_zero_rates_not_nan() {
        let mut reporter = Reporter::default();
        reporter.report(at(5, 100, 1));
        let again = reporter.report(at(5, 100, 1));
        assert_eq!(again.rates, Rates::default());
    }

    #[test]
    fn the_line_is_totals_then_rates_as_key_values() {
        let mut reporter = Reporter::default();
        let line = reporter.report(at(4, 4096, 2)).to_string();
        assert!(line.starts_with("uptime_s=4.000 "), "{line}");
        for expected in [
            "tcp_bytes_in=4096",
            "interval_s=4.000",
            "tcp_bytes_in_per_s=1024",
            "conn_accepted_per_s=0.5",
        ] {
            assert!(
                line.split(' ').any(|kv| kv == expected),
                "{expected} in {line}"
            );
        }
        assert!(line.split(' ').all(|kv| kv.contains('=')), "{line}");
    }
}
