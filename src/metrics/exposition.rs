//! [`Stats`] in the Prometheus text exposition format (version 0.0.4), rendered by the
//! `prometheus-client` crate rather than by hand: it owns the format's details (escaping,
//! `_total` suffixes, HELP/TYPE lines) so this file only says which counter means what.
//!
//! The reactor keeps plain integers (no atomics on the hot path), so a scrape renders a
//! *snapshot*: a `Collector` built from copies of the counters, encoded once, dropped.
//!
//! Which counter goes in which family comes from the counter tables (`counters`, `stats`):
//! this file only walks them. Labels: every series carries `reactor="N"` (one snapshot per
//! reactor of a `--threads` group); a family split by reason or kind carries that label; the
//! `service_*` families carry `service="NAME"` beside `reactor`.
//!
//! `echoloop_build_info{version,host} 1` (the Prometheus "info" convention) names the machine,
//! or the pod, since a pod's host name is its name: behind a load balancer, the one label that
//! tells the backends apart when the scrape configuration adds none.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::counters::{Counter, Kind, Metric};
use crate::stats::Stats;

/// The HTTP `Content-Type` of what [`render`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every metric name starts with this (`echoloop_...`).
const PREFIX: &str = "echoloop";

/// This machine's (or container's) host name: in Kubernetes, the pod's name. Read from
/// `/proc/sys/kernel/hostname` (the UTS namespace's), `unknown` where that file is absent.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// What the `/metrics` endpoint itself has done, shown on its page: an operator sees there
/// whether silent or slow clients are taking the scrape slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ScrapeCounts {
    /// Responses sent in full (pages and refusals).
    pub(crate) responses: u64,
    /// Connections closed to make room for a new one, all slots being held.
    pub(crate) evictions: u64,
}

/// Renders one snapshot per reactor (index = reactor number) as a `/metrics` page.
pub fn render(reactors: &[Stats]) -> String {
    render_with(reactors, None)
}

/// As [`render`], with the endpoint's own counts when the page is served by it.
pub(crate) fn render_with(reactors: &[Stats], scrapes: Option<ScrapeCounts>) -> String {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(Snapshot {
        reactors: reactors.to_vec(),
        scrapes,
    }));
    let mut page = String::new();
    // Writing into a String cannot fail; an encoder error would be a bug in a name above.
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut page, &registry) {
        log::error!("cannot render metrics: {e}");
    }
    page
}

/// One metric family as read from one set of counters: its samples, each with the value of
/// the family's split label (or none).
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    split_label: &'static str,
    samples: Vec<(&'static str, u64)>,
}

/// The families of one counter table (`Stats::counters()` or a service's), in table order:
/// a counter with a family of its own is one; a split total is a family of its parts' series,
/// plus its remainder where the table names one.
fn families(counters: &[(&'static Counter, u64)]) -> Vec<Family> {
    let mut families = Vec::new();
    for &(counter, value) in counters {
        let kind = match counter.kind {
            Kind::Gauge => MetricType::Gauge,
            _ => MetricType::Counter,
        };
        let (name, split_label, samples) = match counter.metric {
            Metric::Own(name) => (name, "", vec![("", value)]),
            Metric::Split {
                family,
                label,
                rest,
            } => {
                let mut samples: Vec<(&'static str, u64)> = counters
                    .iter()
                    .filter_map(|&(part, value)| match part.metric {
                        Metric::Part {
                            family: f,
                            value: v,
                        } if f == family => Some((v, value)),
                        _ => None,
                    })
                    .collect();
                if let Some(rest) = rest {
                    let parts: u64 = samples.iter().map(|&(_, v)| v).sum();
                    samples.push((rest, value.saturating_sub(parts)));
                }
                (family, label, samples)
            }
            _ => continue,
        };
        families.push(Family {
            name,
            help: counter.help(),
            kind,
            split_label,
            samples,
        });
    }
    families
}

/// The counters of every reactor at the moment of the scrape.
#[derive(Debug)]
struct Snapshot {
    reactors: Vec<Stats>,
    scrapes: Option<ScrapeCounts>,
}

/// One set of series: the labels they all carry, and their families.
type Series = (Vec<(&'static str, String)>, Vec<Family>);

impl Snapshot {
    /// Per reactor, its own counters (labelled `reactor`); then per reactor and service, the
    /// service's (labelled `reactor` and `service`).
    fn series(&self) -> (Vec<Series>, Vec<Series>) {
        let mut whole = Vec::new();
        let mut services = Vec::new();
        for (index, stats) in self.reactors.iter().enumerate() {
            let reactor = ("reactor", index.to_string());
            let counters: Vec<_> = stats.counters().collect();
            whole.push((vec![reactor.clone()], families(&counters)));
            for service in &stats.services {
                let counters: Vec<_> = service.counters().collect();
                let labels = vec![reactor.clone(), ("service", service.name.clone())];
                services.push((labels, families(&counters)));
            }
        }
        (whole, services)
    }
}

/// Writes each family once, with every set's series of it (all sets share one layout).
fn encode_sets(encoder: &mut DescriptorEncoder, sets: &[Series]) -> fmt::Result {
    let Some((_, layout)) = sets.first() else {
        return Ok(());
    };
    for (position, family) in layout.iter().enumerate() {
        let mut metric = encoder.encode_descriptor(family.name, family.help, None, family.kind)?;
        for (labels, families) in sets {
            let this = &families[position];
            for &(split_value, value) in &this.samples {
                let mut pairs: Vec<(&str, &str)> =
                    labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                if !this.split_label.is_empty() {
                    pairs.push((this.split_label, split_value));
                }
                let sample = metric.encode_family(&pairs)?;
                match this.kind {
                    MetricType::Counter => ConstCounter::new(value).encode(sample)?,
                    _ => ConstGauge::new(value).encode(sample)?,
                }
            }
        }
    }
    Ok(())
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
        let mut info = encoder.encode_descriptor(
            "build_info",
            "Always 1: the version serving and the host (in Kubernetes, the pod) it runs on.",
            None,
            MetricType::Gauge,
        )?;
        let host = host_name();
        let labels = [
            ("version", env!("CARGO_PKG_VERSION")),
            ("host", host.as_str()),
        ];
        ConstGauge::new(1).encode(info.encode_family(&labels)?)?;
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
        if let Some(scrapes) = self.scrapes {
            let metric = encoder.encode_descriptor(
                "metrics_responses",
                "Responses this /metrics endpoint has sent in full (pages and refusals).",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(scrapes.responses).encode(metric)?;
            let metric = encoder.encode_descriptor(
                "metrics_evictions",
                "Scrape connections closed to make room for a new one: all slots were held \
                 (by silent, slow or stalled clients).",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(scrapes.evictions).encode(metric)?;
        }
        let (whole, services) = self.series();
        encode_sets(&mut encoder, &whole)?;
        encode_sets(&mut encoder, &services)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample_stats() -> Stats {
        let mut stats = Stats {
            uptime: Duration::from_millis(1500),
            conn_accepted: 7,
            conn_active: 2,
            closed_peer: 4,
            closed_stalled: 1,
            tcp_bytes_in: 1000,
            tcp_bytes_out: 900,
            pending_bytes: 100,
            udp_dropped_queue_full: 3,
            accept_errors: 5,
            accept_fd_exhausted: 2,
            ..Stats::default()
        };
        let echo = stats.service_index("echo");
        stats.services[echo].tcp_bytes_in = 1000;
        stats
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
            "echoloop_accept_errors_total{reactor=\"0\",kind=\"fd_exhausted\"} 2",
            "echoloop_accept_errors_total{reactor=\"0\",kind=\"other\"} 3",
            "echoloop_udp_dropped_datagrams_total{reactor=\"0\",reason=\"unanswered\"} 0",
            "# HELP echoloop_tcp_received_bytes_total Bytes read from TCP clients.",
            "echoloop_service_tcp_received_bytes_total{reactor=\"0\",service=\"echo\"} 1000",
            "echoloop_service_pending_bytes{reactor=\"0\",service=\"echo\"} 0",
        ] {
            assert!(page.lines().any(|l| l == line), "{line:?} in\n{page}");
        }
        assert!(!page.contains("# EOF"), "Prometheus text, not OpenMetrics");
        // A total that is the sum of its series is not a series itself.
        assert!(!page.contains("echoloop_connections_closed_total{reactor=\"0\"}"));
    }

    /// The info series names the version and the host, so backends behind one balancer are
    /// told apart by their own page.
    #[test]
    fn build_info_names_version_and_host() {
        let page = render(&[sample_stats()]);
        let host = host_name();
        assert!(!host.is_empty());
        let line = format!(
            "echoloop_build_info{{version=\"{}\",host=\"{host}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(page.lines().any(|l| l == line), "{line:?} in\n{page}");
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
