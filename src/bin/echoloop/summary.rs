//! The exit summary for a person: a short aligned block, one line per topic of the counter
//! table (connections, closes by reason, bytes, drops, ...) and one per service, zeros left
//! out. Scripts get `summary key=value ...` instead (the `Display` of [`Stats`]); `main` picks
//! one by `--summary` and whether stdout is a terminal.
//!
//! Which counter goes on which line, and under which label, is in the table (`Counter::line`,
//! `Counter::label`): a new counter shows up here without an edit.

use std::fmt::Write as _;

use echoloop::counters::{Counter, Unit};
use echoloop::Stats;

/// The aligned block, one labelled row per topic, ending with a newline.
pub fn human(stats: &Stats) -> String {
    let secs = stats.uptime.as_secs_f64();
    let per_sec = |count: u64| if secs > 0.0 { count as f64 / secs } else { 0.0 };
    let mut rows: Vec<(String, String)> = vec![("uptime".to_string(), format!("{secs:.1} s"))];
    for (line, counters) in lines(stats.counters()) {
        rows.push((line.to_string(), join_nonzero(&counters)));
    }
    rows.push((
        "rates".to_string(),
        format!(
            "{:.1} connections/s; tcp in {}/s, out {}/s; udp in {:.1}/s (over the uptime)",
            per_sec(stats.conn_accepted),
            bytes(per_sec(stats.tcp_bytes_in) as u64),
            bytes(per_sec(stats.tcp_bytes_out) as u64),
            per_sec(stats.udp_datagrams_in),
        ),
    ));
    for service in &stats.services {
        let counters: Vec<_> = service.counters().collect();
        rows.push((format!("svc {}", service.name), join_nonzero(&counters)));
    }
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    let mut block = String::from("echoloop summary\n");
    for (label, value) in rows {
        let _ = writeln!(block, "  {label:<width$}  {value}");
    }
    block
}

/// The table's counters grouped by their summary line, lines in order of first appearance.
fn lines(
    counters: impl Iterator<Item = (&'static Counter, u64)>,
) -> Vec<(&'static str, Vec<(&'static Counter, u64)>)> {
    let mut lines: Vec<(&'static str, Vec<(&'static Counter, u64)>)> = Vec::new();
    for (counter, value) in counters {
        match lines.iter_mut().find(|(line, _)| *line == counter.line) {
            Some((_, members)) => members.push((counter, value)),
            None => lines.push((counter.line, vec![(counter, value)])),
        }
    }
    lines
}

/// `label value` pairs whose value is not zero (bytes in binary units), or `none`.
fn join_nonzero(counters: &[(&'static Counter, u64)]) -> String {
    let parts: Vec<String> = counters
        .iter()
        .filter(|(_, value)| *value > 0)
        .map(|(counter, value)| match counter.unit {
            Unit::Bytes => format!("{} {}", counter.label, bytes(*value)),
            _ => format!("{} {value}", counter.label),
        })
        .collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

/// A byte count in binary units with one decimal (exact below 1 KiB).
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn byte_counts_read_in_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(37_763_584), "36.0 MiB");
    }

    /// Every row's value starts in the same column, each topic of the table has its line with
    /// the zeros left out, and each service has its own.
    #[test]
    fn the_block_is_aligned_and_names_what_happened() {
        let mut stats = Stats::default();
        stats.uptime = Duration::from_secs(2);
        stats.conn_accepted = 4;
        stats.conn_closed = 4;
        stats.closed_peer = 3;
        stats.closed_stalled = 1;
        stats.tcp_bytes_in = 4096;
        stats.tcp_bytes_out = 2048;
        stats.tcp_bytes_discarded = 2048;
        stats.tcp_discarded_stall_timeout = 2048;
        stats.udp_dropped_queue_full = 5;
        stats.services = vec![echoloop::ServiceStats::default()];
        stats.services[0].name = "echo".to_string();
        stats.services[0].tcp_bytes_in = 4096;
        let block = human(&stats);
        // Two spaces of indent, the longest label ("accept errors"), two spaces: the values.
        let column = 2 + "accept errors".len() + 2;
        for row in block.lines().skip(1) {
            assert!(row[..column].ends_with("  "), "{row:?} in\n{block}");
            assert_ne!(row.as_bytes()[column], b' ', "{row:?} in\n{block}");
        }
        for expected in [
            "  connections    accepted 4, closed 4\n",
            "  closed by      peer 3, stall timeout 1\n",
            "  tcp bytes      in 4.0 KiB, out 2.0 KiB, discarded 2.0 KiB\n",
            "  discarded      stall timeout 2.0 KiB\n",
            "  udp dropped    queue full 5\n",
            "  rejected       none\n",
            "  rates          2.0 connections/s; tcp in 2.0 KiB/s, out 1.0 KiB/s; udp in 0.0/s",
            "  svc echo       tcp in 4.0 KiB\n",
        ] {
            assert!(block.contains(expected), "{expected:?} in\n{block}");
        }
    }
}
