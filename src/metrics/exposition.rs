//! [`Stats`] in the Prometheus text exposition format (version 0.0.4), rendered by the
//! `prometheus-client` crate rather than by hand: it owns the format's details (escaping,
//! `_total` suffixes, HELP/TYPE lines) so this file only says which counter means what.
//!
//! The reactor keeps plain integers (no atomics on the hot path), so a scrape renders a
//! *snapshot*: a `Collector` built from copies of the counters, encoded once, dropped.
//!
//! Labels: every per-reactor series carries `reactor="N"` (with `--threads N`, a scrape
//! passes one snapshot per reactor). Per-reason counters use a `reason` label. The services'
//! own counters are not on the page yet; a per-service label would sit beside `reactor`, and
//! `SeriesLabels` is the one place to add it.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::stats::Stats;

/// The HTTP `Content-Type` of what [`render`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every metric name starts with this (`echoloop_...`).
const PREFIX: &str = "echoloop";

/// Renders one snapshot per reactor (index = reactor number) as a `/metrics` page.
pub fn render(reactors: &[Stats]) -> String {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(Snapshot {
        reactors: reactors.to_vec(),
    }));
    let mut page = String::new();
    // Writing into a String cannot fail; an encoder error would be a bug in a name above.
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut page, &registry) {
        log::error!("cannot render metrics: {e}");
    }
    page
}

/// The labels of one series: its reactor, and the reason or kind where a family splits.
struct SeriesLabels<'a> {
    reactor: &'a str,
    split: Option<(&'static str, &'static str)>,
}

impl SeriesLabels<'_> {
    fn pairs(&self) -> Vec<(&str, &str)> {
        let mut pairs = vec![("reactor", self.reactor)];
        pairs.extend(self.split);
        pairs
    }
}

/// One metric family as read from one reactor's [`Stats`]: its samples, each with the value of
/// the family's split label (or none).
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    split_label: &'static str,
    samples: Vec<(&'static str, u64)>,
}

fn counter(name: &'static str, help: &'static str, value: u64) -> Family {
    Family {
        name,
        help,
        kind: MetricType::Counter,
        split_label: "",
        samples: vec![("", value)],
    }
}

fn gauge(name: &'static str, help: &'static str, value: u64) -> Family {
    Family {
        kind: MetricType::Gauge,
        ..counter(name, help, value)
    }
}

fn split(
    name: &'static str,
    help: &'static str,
    label: &'static str,
    samples: Vec<(&'static str, u64)>,
) -> Family {
    Family {
        name,
        help,
        kind: MetricType::Counter,
        split_label: label,
        samples,
    }
}

/// Every counter and gauge of one reactor, in page order.
fn families(s: &Stats) -> Vec<Family> {
    vec![
        counter(
            "connections_accepted",
            "TCP connections accepted.",
            s.conn_accepted,
        ),
        split(
            "connections_closed",
            "TCP connections closed, by reason.",
            "reason",
            vec![
                ("peer", s.closed_peer),
                ("reset", s.closed_reset),
                ("io_error", s.closed_io_error),
                ("shutdown", s.closed_shutdown),
                ("drain_timeout", s.closed_drain_timeout),
                ("idle_timeout", s.closed_idle),
                ("stall_timeout", s.closed_stalled),
            ],
        ),
        split(
            "connections_rejected",
            "TCP connections accepted and closed at once by admission control, by reason.",
            "reason",
            vec![
                ("max_connections", s.rejected_max_connections),
                ("per_source", s.rejected_per_source),
            ],
        ),
        split(
            "accept_errors",
            "accept() failures survived, by kind (fd_exhausted: EMFILE/ENFILE).",
            "kind",
            vec![
                ("fd_exhausted", s.accept_fd_exhausted),
                (
                    "other",
                    s.accept_errors.saturating_sub(s.accept_fd_exhausted),
                ),
            ],
        ),
        counter(
            "tcp_received_bytes",
            "Bytes read from TCP clients.",
            s.tcp_bytes_in,
        ),
        counter(
            "tcp_sent_bytes",
            "Bytes echoed to TCP clients.",
            s.tcp_bytes_out,
        ),
        split(
            "tcp_discarded_bytes",
            "Bytes read from TCP clients and never echoed, by reason.",
            "reason",
            vec![
                ("drain_timeout", s.tcp_discarded_drain_timeout),
                ("stall_timeout", s.tcp_discarded_stall_timeout),
                ("idle_timeout", s.tcp_discarded_idle_timeout),
                ("reset", s.tcp_discarded_reset),
                ("io_error", s.tcp_discarded_io_error),
                ("linger", s.tcp_discarded_linger),
            ],
        ),
        counter(
            "backpressure_pauses",
            "Times a connection reached its pending-output limit and stopped being read.",
            s.backpressure_pauses,
        ),
        counter(
            "memory_budget_pauses",
            "Backpressure pauses caused by the global memory budget.",
            s.memory_budget_pauses,
        ),
        counter(
            "zero_copy_connections",
            "Connections switched to zero-copy echo (splice through a pipe).",
            s.zero_copy_conns,
        ),
        counter(
            "zero_copy_unavailable",
            "Bulk connections left on the copying path because no pipe could be made.",
            s.zero_copy_unavailable,
        ),
        counter(
            "udp_received_datagrams",
            "UDP datagrams received.",
            s.udp_datagrams_in,
        ),
        counter(
            "udp_sent_datagrams",
            "UDP datagrams echoed.",
            s.udp_datagrams_out,
        ),
        counter(
            "udp_received_bytes",
            "UDP payload bytes received.",
            s.udp_bytes_in,
        ),
        counter(
            "udp_sent_bytes",
            "UDP payload bytes echoed.",
            s.udp_bytes_out,
        ),
        split(
            "udp_dropped_datagrams",
            "UDP datagrams received and not echoed, by reason.",
            "reason",
            vec![
                ("queue_full", s.udp_dropped_queue_full),
                ("send_error", s.udp_dropped_send_error),
                ("privileged_port", s.udp_dropped_privileged_port),
                ("own_address", s.udp_dropped_own_address),
                ("loop", s.udp_dropped_loop),
                ("truncated", s.udp_dropped_truncated),
                ("shutdown", s.udp_dropped_shutdown),
            ],
        ),
        gauge(
            "connections_open",
            "TCP connections open now.",
            s.conn_active,
        ),
        gauge(
            "pending_bytes",
            "Output waiting to be echoed, summed over connections, now.",
            s.pending_bytes,
        ),
        gauge(
            "zero_copy_pipes_open",
            "Zero-copy pipes held by connections now.",
            s.zero_copy_pipes_open,
        ),
        gauge(
            "udp_queued_datagrams",
            "UDP replies waiting for the socket now.",
            s.udp_queued_datagrams,
        ),
    ]
}

/// The counters of every reactor at the moment of the scrape.
#[derive(Debug)]
struct Snapshot {
    reactors: Vec<Stats>,
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let reactors = encoder.encode_descriptor(
            "reactors",
            "Event loops (threads) serving.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.reactors.len() as u64).encode(reactors)?;
        let uptime = self
            .reactors
            .iter()
            .map(|s| s.uptime.as_secs_f64())
            .fold(0.0, f64::max);
        let metric = encoder.encode_descriptor(
            "uptime_seconds",
            "Seconds since the server started running.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(uptime).encode(metric)?;
        let per_reactor: Vec<(String, Vec<Family>)> = self
            .reactors
            .iter()
            .enumerate()
            .map(|(index, stats)| (index.to_string(), families(stats)))
            .collect();
        let Some((_, layout)) = per_reactor.first() else {
            return Ok(());
        };
        for (position, family) in layout.iter().enumerate() {
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, family.kind)?;
            for (reactor, families) in &per_reactor {
                let this = &families[position];
                for &(split_value, value) in &this.samples {
                    let series = SeriesLabels {
                        reactor,
                        split: (!this.split_label.is_empty())
                            .then_some((this.split_label, split_value)),
                    };
                    let labels = series.pairs();
                    let sample = metric.encode_family(&labels)?;
                    match this.kind {
                        MetricType::Counter => ConstCounter::new(value).encode(sample)?,
                        _ => ConstGauge::new(value).encode(sample)?,
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample_stats() -> Stats {
        Stats {
            uptime: Duration::from_millis(1500),
            conn_accepted: 7,
            conn_active: 2,
            closed_peer: 4,
            closed_stalled: 1,
            tcp_bytes_in: 1000,
            tcp_bytes_out: 900,
            pending_bytes: 100,
            udp_dropped_queue_full: 3,
            ..Stats::default()
        }
    }

    #[test]
    fn counters_gauges_and_labels_render_in_text_format() {
        let page = render(&[sample_stats()]);
        for line in [
            "# TYPE echoloop_connections_accepted_total counter",
            "echoloop_connections_accepted_total{reactor=\"0\"} 7",
            "echoloop_connections_closed_total{reactor=\"0\",reason=\"stall_timeout\"} 1",
            "echoloop_tcp_received_bytes_total{reactor=\"0\"} 1000",
            "echoloop_udp_dropped_datagrams_total{reactor=\"0\",reason=\"queue_full\"} 3",
            "# TYPE echoloop_connections_open gauge",
            "echoloop_connections_open{reactor=\"0\"} 2",
            "echoloop_pending_bytes{reactor=\"0\"} 100",
            "echoloop_reactors 1",
            "echoloop_uptime_seconds 1.5",
        ] {
            assert!(page.lines().any(|l| l == line), "{line:?} in\n{page}");
        }
        assert!(!page.contains("# EOF"), "Prometheus text, not OpenMetrics");
    }

    /// Each family is described once, with one series per reactor.
    #[test]
    fn several_reactors_share_one_family() {
        let page = render(&[sample_stats(), Stats::default()]);
        let described = page
            .lines()
            .filter(|l| *l == "# TYPE echoloop_connections_accepted_total counter")
            .count();
        assert_eq!(described, 1, "{page}");
        assert!(page.contains("echoloop_connections_accepted_total{reactor=\"1\"} 0"));
        assert!(page.contains("echoloop_reactors 2"));
    }
}
