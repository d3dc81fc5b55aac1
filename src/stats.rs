//! Counters: what the server did, readable by an embedder and printed as one `key=value` line.
//!
//! Every policy decision bumps a counter here (as Redis does in `server.stat_*`), so a user can
//! cross-check a load generator against the server: bytes the generator saw echoed must equal
//! `tcp_bytes_out`. The same line serves humans and scripts: `summary key=value ...`.
//!
//! The accounting is exact, at any moment ([`Stats::accounting_holds`]): every TCP byte read
//! was echoed, is pending, or was discarded for a named reason
//! (`tcp_bytes_in = tcp_bytes_out + pending_bytes + tcp_bytes_discarded`), and every datagram
//! received was echoed, is queued, or was dropped for a named reason
//! (`udp_datagrams_in = udp_datagrams_out + udp_queued_datagrams + udp_dropped`).

use std::fmt;
use std::time::Duration;

use crate::connection::{CloseReason, Outcome};

/// The server's counters. Plain integers: the loop is single-threaded, so no atomics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Time since the server started running.
    pub uptime: Duration,
    /// TCP connections accepted.
    pub conn_accepted: u64,
    /// TCP connections currently open.
    pub conn_active: u64,
    /// TCP connections closed, all reasons together.
    pub conn_closed: u64,
    /// ... of which the peer closed in order.
    pub closed_peer: u64,
    /// ... of which the peer reset or abandoned (see [`CloseReason::Reset`]).
    pub closed_reset: u64,
    /// ... of which ended on another I/O error.
    pub closed_io_error: u64,
    /// ... of which closed in order during shutdown.
    pub closed_shutdown: u64,
    /// ... of which were cut off by the drain deadline.
    pub closed_drain_timeout: u64,
    /// ... of which were idle for the idle timeout.
    pub closed_idle: u64,
    /// ... of which made no write progress for the stall timeout.
    pub closed_stalled: u64,
    /// Connections accepted and closed at once because `max_connections` was reached.
    pub rejected_max_connections: u64,
    /// Connections accepted and closed at once because their source IP had too many.
    pub rejected_per_source: u64,
    /// `accept` failures that were survived (EMFILE, ENFILE, ECONNABORTED, ...).
    pub accept_errors: u64,
    /// ... of which were out of descriptors (EMFILE/ENFILE), pausing accepts briefly.
    pub accept_fd_exhausted: u64,
    /// Bytes read from TCP clients (including those read and discarded while lingering).
    pub tcp_bytes_in: u64,
    /// Bytes written back to TCP clients.
    pub tcp_bytes_out: u64,
    /// Bytes read and never echoed, all reasons together (the `tcp_discarded_*` below).
    pub tcp_bytes_discarded: u64,
    /// ... pending when the drain deadline closed their connection.
    pub tcp_discarded_drain_timeout: u64,
    /// ... pending when the stall timeout closed their connection.
    pub tcp_discarded_stall_timeout: u64,
    /// ... pending when the idle timeout closed their connection.
    pub tcp_discarded_idle_timeout: u64,
    /// ... pending when the peer reset the connection (or a write found it gone).
    pub tcp_discarded_reset: u64,
    /// ... pending when another I/O error ended the connection.
    pub tcp_discarded_io_error: u64,
    /// ... read while lingering after shutdown, by design: the server had sent its FIN and
    /// reads only to reach the peer's, so closing sends no RST.
    pub tcp_discarded_linger: u64,
    /// Times a connection hit its pending-output limit and stopped being read.
    pub backpressure_pauses: u64,
    /// ... of which happened because the global memory budget lowered the limit.
    pub memory_budget_pauses: u64,
    /// Connections switched to zero-copy echo (a pipe and `splice`), since the start.
    pub zero_copy_conns: u64,
    /// Pipes given back before their connection closed: it went idle, or descriptors ran
    /// short (connections come first).
    pub zero_copy_reclaimed: u64,
    /// Bulk connections that stayed on the copying path because no pipe could be made
    /// (out of descriptors).
    pub zero_copy_unavailable: u64,
    /// Pending output summed over all connections, now (a gauge).
    pub pending_bytes: u64,
    /// Zero-copy pipes held by connections now (a gauge).
    pub zero_copy_pipes_open: u64,
    /// Datagrams received.
    pub udp_datagrams_in: u64,
    /// Datagrams echoed.
    pub udp_datagrams_out: u64,
    /// UDP payload bytes received.
    pub udp_bytes_in: u64,
    /// UDP payload bytes echoed.
    pub udp_bytes_out: u64,
    /// Replies dropped because the reply queue was full.
    pub udp_dropped_queue_full: u64,
    /// Replies dropped because `send_to` failed (e.g. no route, message too long).
    pub udp_dropped_send_error: u64,
    /// Datagrams not answered because they came from port 0 or a privileged port (< 1024),
    /// where the small services (echo, chargen, daytime) live: no echo loops between them.
    pub udp_dropped_privileged_port: u64,
    /// Datagrams not answered because they came from the server's own address.
    pub udp_dropped_own_address: u64,
    /// Datagrams not answered because the peer kept sending back exactly what we had just
    /// sent it (an echo loop with another server, broken here).
    pub udp_dropped_loop: u64,
    /// Datagrams the kernel truncated (`MSG_TRUNC`), dropped rather than echoed short.
    pub udp_dropped_truncated: u64,
    /// Replies still queued when shutdown closed the UDP socket.
    pub udp_dropped_shutdown: u64,
    /// Replies waiting in the queue now (a gauge).
    pub udp_queued_datagrams: u64,
    /// Datagrams not answered because their source was over its reply rate (services that
    /// can amplify, on a listener beyond loopback; see `service::reply_limit`).
    pub udp_dropped_rate_limited: u64,
    /// Counters per service, in the order the listeners were configured; one entry per
    /// service name, summed over its listeners.
    pub services: Vec<ServiceStats>,
}

/// What one service did, over all its listeners. In the stats line as
/// `svc.NAME.KEY=VALUE`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// The service's name (`echo`, `time`, ...).
    pub name: String,
    /// TCP connections accepted.
    pub conn_accepted: u64,
    /// Bytes read from its TCP clients.
    pub tcp_bytes_in: u64,
    /// Bytes written to its TCP clients.
    pub tcp_bytes_out: u64,
    /// Datagrams received.
    pub udp_datagrams_in: u64,
    /// Replies sent.
    pub udp_datagrams_out: u64,
}

impl ServiceStats {
    /// Adds another reactor's counters for the same service.
    pub(crate) fn merge(&mut self, other: &ServiceStats) {
        let ServiceStats {
            name: _,
            conn_accepted,
            tcp_bytes_in,
            tcp_bytes_out,
            udp_datagrams_in,
            udp_datagrams_out,
        } = *other;
        self.conn_accepted += conn_accepted;
        self.tcp_bytes_in += tcp_bytes_in;
        self.tcp_bytes_out += tcp_bytes_out;
        self.udp_datagrams_in += udp_datagrams_in;
        self.udp_datagrams_out += udp_datagrams_out;
    }

    /// Counts what one drive of one of its connections did.
    pub(crate) fn record_drive(&mut self, outcome: &Outcome) {
        self.tcp_bytes_in += outcome.bytes_read as u64;
        self.tcp_bytes_out += outcome.bytes_written as u64;
    }
}

impl Stats {
    /// Counts what one drive of a connection did: bytes each way, bytes discarded while
    /// lingering, and backpressure pauses.
    pub(crate) fn record_drive(&mut self, outcome: &Outcome) {
        let lingered = outcome.bytes_discarded as u64;
        self.tcp_bytes_in += outcome.bytes_read as u64 + lingered;
        self.tcp_bytes_out += outcome.bytes_written as u64;
        self.tcp_bytes_discarded += lingered;
        self.tcp_discarded_linger += lingered;
        self.backpressure_pauses += outcome.pauses as u64;
    }

    /// Counts the output still pending when a connection closed for `reason` as discarded.
    pub(crate) fn record_discard(&mut self, reason: CloseReason, pending: u64) {
        if pending == 0 {
            return;
        }
        let counter = match reason {
            CloseReason::DrainTimeout => &mut self.tcp_discarded_drain_timeout,
            CloseReason::StallTimeout => &mut self.tcp_discarded_stall_timeout,
            CloseReason::IdleTimeout => &mut self.tcp_discarded_idle_timeout,
            CloseReason::Reset => &mut self.tcp_discarded_reset,
            // An orderly close happens only with nothing pending; should one ever not, the
            // bytes still land in a counter rather than vanish.
            CloseReason::IoError | CloseReason::PeerClosed | CloseReason::Shutdown => {
                &mut self.tcp_discarded_io_error
            }
        };
        *counter += pending;
        self.tcp_bytes_discarded += pending;
    }

    /// Whether every byte and datagram is accounted for (see the module doc). `pending_bytes`
    /// and `udp_queued_datagrams` must be current, as in [`Server::stats`](crate::Server::stats).
    pub fn accounting_holds(&self) -> bool {
        let discarded_by_reason = self.tcp_discarded_drain_timeout
            + self.tcp_discarded_stall_timeout
            + self.tcp_discarded_idle_timeout
            + self.tcp_discarded_reset
            + self.tcp_discarded_io_error
            + self.tcp_discarded_linger;
        discarded_by_reason == self.tcp_bytes_discarded
            && self.tcp_bytes_in
                == self.tcp_bytes_out + self.pending_bytes + self.tcp_bytes_discarded
            && self.udp_datagrams_in
                == self.udp_datagrams_out + self.udp_queued_datagrams + self.udp_dropped()
    }

    /// Counts one closed connection under its reason.
    pub(crate) fn record_close(&mut self, reason: CloseReason) {
        self.conn_closed += 1;
        self.conn_active = self.conn_active.saturating_sub(1);
        let counter = match reason {
            CloseReason::PeerClosed => &mut self.closed_peer,
            CloseReason::Reset => &mut self.closed_reset,
            CloseReason::IoError => &mut self.closed_io_error,
            CloseReason::Shutdown => &mut self.closed_shutdown,
            CloseReason::DrainTimeout => &mut self.closed_drain_timeout,
            CloseReason::IdleTimeout => &mut self.closed_idle,
            CloseReason::StallTimeout => &mut self.closed_stalled,
        };
        *counter += 1;
    }

    /// Adds another reactor's counters to these (a [`ServerGroup`](crate::ServerGroup) sums
    /// its reactors'); the uptime is the longer of the two. Every field is named, so a new
    /// counter cannot be forgotten here.
    pub fn merge(&mut self, other: &Stats) {
        let Stats {
            uptime,
            conn_accepted,
            conn_active,
            conn_closed,
            closed_peer,
            closed_reset,
            closed_io_error,
            closed_shutdown,
            closed_drain_timeout,
            closed_idle,
            closed_stalled,
            rejected_max_connections,
            rejected_per_source,
            accept_errors,
            accept_fd_exhausted,
            tcp_bytes_in,
            tcp_bytes_out,
            tcp_bytes_discarded,
            backpressure_pauses,
            memory_budget_pauses,
            zero_copy_conns,
            zero_copy_reclaimed,
            zero_copy_unavailable,
            pending_bytes,
            udp_datagrams_in,
            udp_datagrams_out,
            udp_bytes_in,
            udp_bytes_out,
            udp_dropped_queue_full,
            udp_dropped_send_error,
            udp_dropped_privileged_port,
            udp_dropped_own_address,
            udp_dropped_loop,
            udp_dropped_truncated,
            tcp_discarded_drain_timeout,
            tcp_discarded_stall_timeout,
            tcp_discarded_idle_timeout,
            tcp_discarded_reset,
            tcp_discarded_io_error,
            tcp_discarded_linger,
            zero_copy_pipes_open,
            udp_dropped_shutdown,
            udp_queued_datagrams,
            udp_dropped_rate_limited,
            services,
        } = other.clone();
        self.uptime = self.uptime.max(uptime);
        self.conn_accepted += conn_accepted;
        self.conn_active += conn_active;
        self.conn_closed += conn_closed;
        self.closed_peer += closed_peer;
        self.closed_reset += closed_reset;
        self.closed_io_error += closed_io_error;
        self.closed_shutdown += closed_shutdown;
        self.closed_drain_timeout += closed_drain_timeout;
        self.closed_idle += closed_idle;
        self.closed_stalled += closed_stalled;
        self.rejected_max_connections += rejected_max_connections;
        self.rejected_per_source += rejected_per_source;
        self.accept_errors += accept_errors;
        self.accept_fd_exhausted += accept_fd_exhausted;
        self.tcp_bytes_in += tcp_bytes_in;
        self.tcp_bytes_out += tcp_bytes_out;
        self.tcp_bytes_discarded += tcp_bytes_discarded;
        self.backpressure_pauses += backpressure_pauses;
        self.memory_budget_pauses += memory_budget_pauses;
        self.zero_copy_conns += zero_copy_conns;
        self.zero_copy_reclaimed += zero_copy_reclaimed;
        self.zero_copy_unavailable += zero_copy_unavailable;
        self.pending_bytes += pending_bytes;
        self.udp_datagrams_in += udp_datagrams_in;
        self.udp_datagrams_out += udp_datagrams_out;
        self.udp_bytes_in += udp_bytes_in;
        self.udp_bytes_out += udp_bytes_out;
        self.udp_dropped_queue_full += udp_dropped_queue_full;
        self.udp_dropped_send_error += udp_dropped_send_error;
        self.udp_dropped_privileged_port += udp_dropped_privileged_port;
        self.udp_dropped_own_address += udp_dropped_own_address;
        self.udp_dropped_loop += udp_dropped_loop;
        self.udp_dropped_truncated += udp_dropped_truncated;
        self.tcp_discarded_drain_timeout += tcp_discarded_drain_timeout;
        self.tcp_discarded_stall_timeout += tcp_discarded_stall_timeout;
        self.tcp_discarded_idle_timeout += tcp_discarded_idle_timeout;
        self.tcp_discarded_reset += tcp_discarded_reset;
        self.tcp_discarded_io_error += tcp_discarded_io_error;
        self.tcp_discarded_linger += tcp_discarded_linger;
        self.zero_copy_pipes_open += zero_copy_pipes_open;
        self.udp_dropped_shutdown += udp_dropped_shutdown;
        self.udp_queued_datagrams += udp_queued_datagrams;
        self.udp_dropped_rate_limited += udp_dropped_rate_limited;
        // Every reactor of a group serves the same listeners; match services by name anyway.
        for service in services {
            match self.services.iter_mut().find(|s| s.name == service.name) {
                Some(mine) => mine.merge(&service),
                None => self.services.push(service),
            }
        }
    }

    /// Total UDP replies dropped, all reasons together.
    pub fn udp_dropped(&self) -> u64 {
        self.udp_dropped_queue_full
            + self.udp_dropped_send_error
            + self.udp_dropped_privileged_port
            + self.udp_dropped_own_address
            + self.udp_dropped_loop
            + self.udp_dropped_truncated
            + self.udp_dropped_shutdown
            + self.udp_dropped_rate_limited
    }

    /// The index of `name`'s entry in [`Stats::services`], made if new.
    pub(crate) fn service_index(&mut self, name: &str) -> usize {
        match self.services.iter().position(|s| s.name == name) {
            Some(index) => index,
            None => {
                self.services.push(ServiceStats {
                    name: name.to_string(),
                    ..ServiceStats::default()
                });
                self.services.len() - 1
            }
        }
    }
}

/// `key=value` pairs separated by spaces, in a fixed order; stable for scripts.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uptime_s={:.3}", self.uptime.as_secs_f64())?;
        let fields: [(&str, u64); 44] = [
            ("conn_accepted", self.conn_accepted),
            ("conn_active", self.conn_active),
            ("conn_closed", self.conn_closed),
            ("closed_peer", self.closed_peer),
            ("closed_reset", self.closed_reset),
            ("closed_io_error", self.closed_io_error),
            ("closed_shutdown", self.closed_shutdown),
            ("closed_drain_timeout", self.closed_drain_timeout),
            ("closed_idle", self.closed_idle),
            ("closed_stalled", self.closed_stalled),
            ("rejected_max_connections", self.rejected_max_connections),
            ("rejected_per_source", self.rejected_per_source),
            ("accept_errors", self.accept_errors),
            ("accept_fd_exhausted", self.accept_fd_exhausted),
            ("tcp_bytes_in", self.tcp_bytes_in),
            ("tcp_bytes_out", self.tcp_bytes_out),
            ("tcp_bytes_discarded", self.tcp_bytes_discarded),
            (
                "tcp_discarded_drain_timeout",
                self.tcp_discarded_drain_timeout,
            ),
            (
                "tcp_discarded_stall_timeout",
                self.tcp_discarded_stall_timeout,
            ),
            (
                "tcp_discarded_idle_timeout",
                self.tcp_discarded_idle_timeout,
            ),
            ("tcp_discarded_reset", self.tcp_discarded_reset),
            ("tcp_discarded_io_error", self.tcp_discarded_io_error),
            ("tcp_discarded_linger", self.tcp_discarded_linger),
            ("zero_copy_conns", self.zero_copy_conns),
            ("zero_copy_reclaimed", self.zero_copy_reclaimed),
            ("zero_copy_unavailable", self.zero_copy_unavailable),
            ("zero_copy_pipes_open", self.zero_copy_pipes_open),
            ("pending_bytes", self.pending_bytes),
            ("backpressure_pauses", self.backpressure_pauses),
            ("memory_budget_pauses", self.memory_budget_pauses),
            ("udp_datagrams_in", self.udp_datagrams_in),
            ("udp_datagrams_out", self.udp_datagrams_out),
            ("udp_bytes_in", self.udp_bytes_in),
            ("udp_bytes_out", self.udp_bytes_out),
            ("udp_dropped_queue_full", self.udp_dropped_queue_full),
            ("udp_dropped_send_error", self.udp_dropped_send_error),
            (
                "udp_dropped_privileged_port",
                self.udp_dropped_privileged_port,
            ),
            ("udp_dropped_own_address", self.udp_dropped_own_address),
            ("udp_dropped_loop", self.udp_dropped_loop),
            ("udp_dropped_truncated", self.udp_dropped_truncated),
            ("udp_dropped_shutdown", self.udp_dropped_shutdown),
            ("udp_dropped_rate_limited", self.udp_dropped_rate_limited),
            ("udp_dropped", self.udp_dropped()),
            ("udp_queued_datagrams", self.udp_queued_datagrams),
        ];
        for (key, value) in fields {
            write!(f, " {key}={value}")?;
        }
        for service in &self.services {
            let fields = [
                ("conn_accepted", service.conn_accepted),
                ("tcp_bytes_in", service.tcp_bytes_in),
                ("tcp_bytes_out", service.tcp_bytes_out),
                ("udp_datagrams_in", service.udp_datagrams_in),
                ("udp_datagrams_out", service.udp_datagrams_out),
            ];
            for (key, value) in fields {
                write!(f, " svc.{}.{key}={value}", service.name)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_land_in_their_own_counter() {
        let mut stats = Stats {
            conn_active: 2,
            ..Stats::default()
        };
        stats.record_close(CloseReason::Reset);
        stats.record_close(CloseReason::PeerClosed);
        assert_eq!(stats.conn_closed, 2);
        assert_eq!(stats.conn_active, 0);
        assert_eq!(stats.closed_reset, 1);
        assert_eq!(stats.closed_peer, 1);
    }

    /// Pending output of a closing connection lands under its reason; the invariant holds
    /// before and after, and a byte that vanished would break it.
    #[test]
    fn discards_are_counted_by_reason_and_the_books_balance() {
        let mut stats = Stats {
            tcp_bytes_in: 100,
            tcp_bytes_out: 40,
            pending_bytes: 60,
            ..Stats::default()
        };
        assert!(stats.accounting_holds());
        stats.record_discard(CloseReason::StallTimeout, 50);
        stats.record_discard(CloseReason::DrainTimeout, 10);
        stats.pending_bytes = 0;
        assert_eq!(stats.tcp_discarded_stall_timeout, 50);
        assert_eq!(stats.tcp_discarded_drain_timeout, 10);
        assert_eq!(stats.tcp_bytes_discarded, 60);
        assert!(stats.accounting_holds(), "{stats}");
        stats.tcp_bytes_in += 1;
        assert!(!stats.accounting_holds(), "one unaccounted byte is caught");
    }

    #[test]
    fn udp_datagrams_balance_with_queue_and_drops() {
        let stats = Stats {
            udp_datagrams_in: 10,
            udp_datagrams_out: 6,
            udp_queued_datagrams: 1,
            udp_dropped_queue_full: 2,
            udp_dropped_shutdown: 1,
            ..Stats::default()
        };
        assert!(stats.accounting_holds(), "{stats}");
        assert!(!Stats {
            udp_queued_datagrams: 0,
            ..stats
        }
        .accounting_holds());
    }

    #[test]
    fn merge_sums_counters_and_keeps_the_longer_uptime() {
        let mut total = Stats {
            uptime: Duration::from_secs(2),
            conn_accepted: 3,
            udp_dropped_own_address: 1,
            ..Stats::default()
        };
        total.merge(&Stats {
            uptime: Duration::from_secs(5),
            conn_accepted: 4,
            pending_bytes: 10,
            ..Stats::default()
        });
        assert_eq!(total.uptime, Duration::from_secs(5));
        assert_eq!(total.conn_accepted, 7);
        assert_eq!(total.pending_bytes, 10);
        assert_eq!(total.udp_dropped(), 1);
    }

    #[test]
    fn display_is_space_separated_key_values() {
        let stats = Stats {
            tcp_bytes_out: 42,
            ..Stats::default()
        };
        let line = stats.to_string();
        assert!(line.starts_with("uptime_s=0.000 "));
        assert!(line.split(' ').any(|kv| kv == "tcp_bytes_out=42"));
        assert!(line.split(' ').all(|kv| kv.contains('=')));
    }
}
