//! The exit summary for a person: a short aligned block (connections, bytes, rates, closes by
//! reason, drops, bytes discarded by reason). Scripts get `summary key=value ...` instead (the `Display` of [`Stats`]);
//! `main` picks one by `--summary` and whether stdout is a terminal.

use std::fmt::Write as _;

use echoloop::Stats;

/// The aligned block, one labelled row per topic, ending with a newline.
pub fn human(stats: &Stats) -> String {
    let secs = stats.uptime.as_secs_f64();
    let per_sec = |count: u64| if secs > 0.0 { count as f64 / secs } else { 0.0 };
    let mut rows: Vec<(&str, String)> = vec![
        ("uptime", format!("{secs:.1} s")),
        (
            "connections",
            format!(
                "{} accepted ({:.1}/s), {} open, {} closed, {} rejected",
                stats.conn_accepted,
                per_sec(stats.conn_accepted),
                stats.conn_active,
                stats.conn_closed,
                stats.rejected_max_connections + stats.rejected_per_source,
            ),
        ),
        (
            "closed by",
            join_nonzero(&[
                ("peer", stats.closed_peer),
                ("reset", stats.closed_reset),
                ("io error", stats.closed_io_error),
                ("shutdown", stats.closed_shutdown),
                ("drain timeout", stats.closed_drain_timeout),
                ("idle timeout", stats.closed_idle),
                ("stall timeout", stats.closed_stalled),
            ]),
        ),
        (
            "tcp bytes",
            format!(
                "{} in, {} out, {} pending, {} discarded",
                bytes(stats.tcp_bytes_in),
                bytes(stats.tcp_bytes_out),
                bytes(stats.pending_bytes),
                bytes(stats.tcp_bytes_discarded),
            ),
        ),
        (
            "tcp rate",
            format!(
                "{}/s in, {}/s out (average over the uptime)",
                bytes(per_sec(stats.tcp_bytes_in) as u64),
                bytes(per_sec(stats.tcp_bytes_out) as u64),
            ),
        ),
        (
            "udp",
            format!(
                "{} datagrams in ({}), {} out ({}), {} queued, {} dropped",
                stats.udp_datagrams_in,
                bytes(stats.udp_bytes_in),
                stats.udp_datagrams_out,
                bytes(stats.udp_bytes_out),
                stats.udp_queued_datagrams,
                stats.udp_dropped(),
            ),
        ),
    ];
    let dropped = join_nonzero(&[
        (
            "rejected at max connections",
            stats.rejected_max_connections,
        ),
        ("rejected per source", stats.rejected_per_source),
        ("accept errors", stats.accept_errors),
        ("udp queue full", stats.udp_dropped_queue_full),
        ("udp send error", stats.udp_dropped_send_error),
        ("udp privileged port", stats.udp_dropped_privileged_port),
        ("udp own address", stats.udp_dropped_own_address),
        ("udp echo loop", stats.udp_dropped_loop),
        ("udp truncated", stats.udp_dropped_truncated),
        ("udp at shutdown", stats.udp_dropped_shutdown),
    ]);
    let discarded = join_nonzero(&[
        ("drain timeout", stats.tcp_discarded_drain_timeout),
        ("stall timeout", stats.tcp_discarded_stall_timeout),
        ("idle timeout", stats.tcp_discarded_idle_timeout),
        ("reset", stats.tcp_discarded_reset),
        ("io error", stats.tcp_discarded_io_error),
        ("linger", stats.tcp_discarded_linger),
    ]);
    rows.push((
        "discarded",
        format!("{discarded} (bytes read, never echoed)"),
    ));
    rows.push(("dropped", dropped));
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    let mut block = String::from("echoloop summary\n");
    for (label, value) in rows {
        let _ = writeln!(block, "  {label:<width$}  {value}");
    }
    block
}

/// `name count` pairs whose count is not zero, or `none`.
fn join_nonzero(counts: &[(&str, u64)]) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, count)| *count > 0)
        .map(|(name, count)| format!("{name} {count}"))
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

    /// Every row's value starts in the same column, and the figures a person looks for
    /// (closes by reason, rates, drops) are there.
    #[test]
    fn the_block_is_aligned_and_names_what_happened() {
        let stats = Stats {
            uptime: Duration::from_secs(2),
            conn_accepted: 4,
            conn_closed: 4,
            closed_peer: 3,
            closed_stalled: 1,
            tcp_bytes_in: 4096,
            tcp_bytes_out: 2048,
            tcp_bytes_discarded: 2048,
            tcp_discarded_stall_timeout: 2048,
            udp_dropped_queue_full: 5,
            ..Stats::default()
        };
        let block = human(&stats);
        // Two spaces of indent, the longest label ("connections"), two spaces: the values.
        let column = 2 + "connections".len() + 2;
        for row in block.lines().skip(1) {
            assert!(row[..column].ends_with("  "), "{row:?} in\n{block}");
            assert_ne!(row.as_bytes()[column], b' ', "{row:?} in\n{block}");
        }
        for expected in [
            "4 accepted (2.0/s)",
            "peer 3, stall timeout 1",
            "4.0 KiB in, 2.0 KiB out, 0 B pending, 2.0 KiB discarded",
            "2.0 KiB/s in, 1.0 KiB/s out",
            "udp queue full 5",
            "stall timeout 2048 (bytes read, never echoed)",
        ] {
            assert!(block.contains(expected), "{expected:?} in\n{block}");
        }
    }
}
