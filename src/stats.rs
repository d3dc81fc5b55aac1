//! Counters: what the server did, readable by an embedder and printed as one `key=value` line.
//!
//! Every policy decision bumps a counter here (as Redis does in `server.stat_*`), so a user can
//! cross-check a load generator against the server: bytes the generator saw echoed must equal
//! `tcp_bytes_out`. The same line serves humans and scripts: `summary key=value ...`. Both
//! structs are declared as tables (`counters`): one line per counter gives its field, its
//! merge, its `key=value` pair, its line in the human summary and its Prometheus series.
//!
//! # The accounting
//! The books balance at any moment ([`Stats::accounting_holds`]), for each service and for
//! the whole server, whose byte and datagram counters are the sums of the services':
//!
//! ```text
//! tcp_bytes_in + tcp_bytes_generated = tcp_bytes_out + tcp_bytes_discarded + pending_bytes
//! udp_datagrams_in                   = udp_datagrams_out + udp_dropped + udp_queued_datagrams
//! ```
//!
//! A byte read is echoed (out or pending), or discarded for a named reason: the connection
//! closed with it pending (drain, stall or idle timeout, reset, I/O error), it arrived while
//! the server lingered after its FIN, or a service consumed it without answering byte for
//! byte (discard, or chargen's input). A byte a service wrote beyond the bytes it was given in
//! the same call is generated (chargen, daytime, time, or a longer answer). So for a service
//! called with `n` bytes that writes `m`: `min(n, m)` count as echoed, `m - n` as generated
//! when `m > n`, `n - m` as discarded (`tcp_discarded_service`) when `n > m`. Every datagram
//! received is answered (out or queued), or dropped for a named reason, including the
//! service's choice to answer with silence (`udp_dropped_unanswered`).

use std::fmt;
use std::time::Duration;

use crate::connection::{CloseReason, Outcome};
use crate::counters::{counters, own, part, split, split_rest};

/// Why a datagram got no reply; each reason has its `udp_dropped_*` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UdpDrop {
    QueueFull,
    SendError,
    PrivilegedPort,
    OwnAddress,
    Loop,
    Truncated,
    Shutdown,
    RateLimited,
    Unanswered,
}

counters! {
    /// The server's counters, in the order of the stats line. Plain integers: the loop is
    /// single-threaded, so no atomics. Read them from [`Server::run`](crate::Server::run)'s
    /// result, while it runs through a [`StatsHandle`](crate::StatsHandle), or from
    /// [`Server::stats`](crate::Server::stats) before it runs.
    pub struct Stats {
        /// Time since the server started running.
        pub uptime: Duration,
        /// Counters per service, in the order the listeners were configured; one entry per
        /// service name, summed over its listeners. The TCP byte and datagram counters above
        /// are the sums of these.
        pub services: Vec<ServiceStats>,
    }
    counters {
        /// TCP connections accepted.
        conn_accepted: Counter Count, "connections", "accepted", own("connections_accepted");
        /// TCP connections open now.
        conn_active: Gauge Count, "connections", "open", own("connections_open");
        /// TCP connections closed, by reason.
        conn_closed: Counter Count, "connections", "closed", split("connections_closed", "reason");
        /// ... of which the peer closed in order.
        closed_peer: Counter Count, "closed by", "peer", part("connections_closed", "peer");
        /// ... of which the peer reset or abandoned.
        closed_reset: Counter Count, "closed by", "reset", part("connections_closed", "reset");
        /// ... of which ended on another I/O error.
        closed_io_error: Counter Count, "closed by", "io error", part("connections_closed", "io_error");
        /// ... of which closed in order during shutdown.
        closed_shutdown: Counter Count, "closed by", "shutdown", part("connections_closed", "shutdown");
        /// ... of which were cut off by the drain deadline.
        closed_drain_timeout: Counter Count, "closed by", "drain timeout", part("connections_closed", "drain_timeout");
        /// ... of which were idle for the idle timeout.
        closed_idle: Counter Count, "closed by", "idle timeout", part("connections_closed", "idle_timeout");
        /// ... of which made no write progress for the stall timeout.
        closed_stalled: Counter Count, "closed by", "stall timeout", part("connections_closed", "stall_timeout");
        /// TCP connections accepted and closed at once by admission control, by reason.
        conn_rejected: Counter Count, "connections", "rejected", split("connections_rejected", "reason");
        /// ... of which arrived with max_connections reached.
        rejected_max_connections: Counter Count, "rejected", "at max connections", part("connections_rejected", "max_connections");
        /// ... of which came from a source IP that had too many.
        rejected_per_source: Counter Count, "rejected", "per source", part("connections_rejected", "per_source");
        /// accept() failures survived, by kind (fd_exhausted: EMFILE/ENFILE).
        accept_errors: Counter Count, "accept errors", "all", split_rest("accept_errors", "kind", "other");
        /// ... of which were out of descriptors (EMFILE/ENFILE), pausing accepts briefly.
        accept_fd_exhausted: Counter Count, "accept errors", "out of descriptors", part("accept_errors", "fd_exhausted");
        /// Bytes read from TCP clients.
        tcp_bytes_in: Counter Bytes, "tcp bytes", "in", own("tcp_received_bytes");
        /// Bytes services wrote to TCP clients beyond the bytes they were given (chargen,
        /// daytime, time).
        tcp_bytes_generated: Counter Bytes, "tcp bytes", "generated", own("tcp_generated_bytes");
        /// Bytes written to TCP clients.
        tcp_bytes_out: Counter Bytes, "tcp bytes", "out", own("tcp_sent_bytes");
        /// Bytes read from TCP clients (or generated for them) and never sent, by reason.
        tcp_bytes_discarded: Counter Bytes, "tcp bytes", "discarded", split("tcp_discarded_bytes", "reason");
        /// ... pending when the drain deadline closed their connection.
        tcp_discarded_drain_timeout: Counter Bytes, "discarded", "drain timeout", part("tcp_discarded_bytes", "drain_timeout");
        /// ... pending when the stall timeout closed their connection.
        tcp_discarded_stall_timeout: Counter Bytes, "discarded", "stall timeout", part("tcp_discarded_bytes", "stall_timeout");
        /// ... pending when the idle timeout closed their connection.
        tcp_discarded_idle_timeout: Counter Bytes, "discarded", "idle timeout", part("tcp_discarded_bytes", "idle_timeout");
        /// ... pending when the peer reset the connection (or a write found it gone).
        tcp_discarded_reset: Counter Bytes, "discarded", "reset", part("tcp_discarded_bytes", "reset");
        /// ... pending when another I/O error ended the connection.
        tcp_discarded_io_error: Counter Bytes, "discarded", "io error", part("tcp_discarded_bytes", "io_error");
        /// ... read while lingering after shutdown, by design: the server had sent its FIN and
        /// reads only to reach the peer's, so closing sends no RST.
        tcp_discarded_linger: Counter Bytes, "discarded", "linger", part("tcp_discarded_bytes", "linger");
        /// ... consumed by a service without an answer byte for byte, by design (discard, and
        /// chargen's input).
        tcp_discarded_service: Counter Bytes, "discarded", "by the service", part("tcp_discarded_bytes", "service");
        /// Connections switched to zero-copy echo (splice through a pipe), since the start.
        zero_copy_conns: Counter Count, "zero copy", "connections", own("zero_copy_connections");
        /// Pipes given back before their connection closed: it went idle, or descriptors ran
        /// short (connections come first).
        zero_copy_reclaimed: Counter Count, "zero copy", "pipes reclaimed", own("zero_copy_reclaimed");
        /// Bulk connections left on the copying path because no pipe could be made.
        zero_copy_unavailable: Counter Count, "zero copy", "no pipe", own("zero_copy_unavailable");
        /// Zero-copy pipes held by connections now.
        zero_copy_pipes_open: Gauge Count, "zero copy", "pipes open", own("zero_copy_pipes_open");
        /// Output waiting to be sent, summed over connections, now.
        pending_bytes: Gauge Bytes, "tcp bytes", "pending", own("pending_bytes");
        /// Times a connection reached its pending-output limit and stopped being read.
        backpressure_pauses: Counter Count, "backpressure", "pauses", own("backpressure_pauses");
        /// Backpressure pauses caused by the global memory budget.
        memory_budget_pauses: Counter Count, "backpressure", "from the memory budget", own("memory_budget_pauses");
        /// Connections that had work but got no wake-up for it, re-driven by the watchdog.
        stalls_recovered: Counter Count, "watchdog", "stalls recovered", own("stalls_recovered");
        /// UDP datagrams received.
        udp_datagrams_in: Counter Count, "udp datagrams", "in", own("udp_received_datagrams");
        /// UDP datagrams sent in reply.
        udp_datagrams_out: Counter Count, "udp datagrams", "out", own("udp_sent_datagrams");
        /// UDP payload bytes received.
        udp_bytes_in: Counter Bytes, "udp bytes", "in", own("udp_received_bytes");
        /// UDP payload bytes sent in reply.
        udp_bytes_out: Counter Bytes, "udp bytes", "out", own("udp_sent_bytes");
        /// ... dropped because the reply queue was full.
        udp_dropped_queue_full: Counter Count, "udp dropped", "queue full", part("udp_dropped_datagrams", "queue_full");
        /// ... dropped because send_to failed (no route, message too long).
        udp_dropped_send_error: Counter Count, "udp dropped", "send error", part("udp_dropped_datagrams", "send_error");
        /// ... not answered because they came from port 0 or a privileged port (below 1024),
        /// where the small services live: no echo loops between them.
        udp_dropped_privileged_port: Counter Count, "udp dropped", "privileged port", part("udp_dropped_datagrams", "privileged_port");
        /// ... not answered because they came from the server's own address.
        udp_dropped_own_address: Counter Count, "udp dropped", "own address", part("udp_dropped_datagrams", "own_address");
        /// ... not answered because the peer kept sending back exactly what we had just sent
        /// it (an echo loop with another server, broken here).
        udp_dropped_loop: Counter Count, "udp dropped", "echo loop", part("udp_dropped_datagrams", "loop");
        /// ... truncated by the kernel (MSG_TRUNC), dropped rather than echoed short.
        udp_dropped_truncated: Counter Count, "udp dropped", "truncated", part("udp_dropped_datagrams", "truncated");
        /// ... replies still queued when shutdown closed the UDP socket.
        udp_dropped_shutdown: Counter Count, "udp dropped", "at shutdown", part("udp_dropped_datagrams", "shutdown");
        /// ... not answered because their source was over its reply rate (services that can
        /// amplify, on a listener beyond loopback).
        udp_dropped_rate_limited: Counter Count, "udp dropped", "rate limited", part("udp_dropped_datagrams", "rate_limited");
        /// ... answered with silence by their service (discard, or a reply too long to send).
        udp_dropped_unanswered: Counter Count, "udp dropped", "unanswered", part("udp_dropped_datagrams", "unanswered");
        /// UDP datagrams received and not answered, by reason.
        udp_dropped: Counter Count, "udp datagrams", "dropped", split("udp_dropped_datagrams", "reason");
        /// UDP replies waiting for the socket now.
        udp_queued_datagrams: Gauge Count, "udp datagrams", "queued", own("udp_queued_datagrams");
    }
}

counters! {
    /// What one service did, over all its listeners. In the stats line as
    /// `svc.NAME.KEY=VALUE`; on the `/metrics` page with a `service` label. Its books balance
    /// as the whole server's do (see the module doc).
    pub struct ServiceStats {
        /// The service's name (`echo`, `time`, ...).
        pub name: String,
    }
    counters {
        /// TCP connections accepted, per service.
        conn_accepted: Counter Count, "service", "connections", own("service_connections_accepted");
        /// Bytes read from TCP clients, per service.
        tcp_bytes_in: Counter Bytes, "service", "tcp in", own("service_tcp_received_bytes");
        /// Bytes a service wrote beyond the bytes it was given, per service.
        tcp_bytes_generated: Counter Bytes, "service", "tcp generated", own("service_tcp_generated_bytes");
        /// Bytes written to TCP clients, per service.
        tcp_bytes_out: Counter Bytes, "service", "tcp out", own("service_tcp_sent_bytes");
        /// Bytes never sent, all reasons together, per service.
        tcp_bytes_discarded: Counter Bytes, "service", "tcp discarded", own("service_tcp_discarded_bytes");
        /// Output waiting to be sent now, per service.
        pending_bytes: Gauge Bytes, "service", "tcp pending", own("service_pending_bytes");
        /// UDP datagrams received, per service.
        udp_datagrams_in: Counter Count, "service", "udp in", own("service_udp_received_datagrams");
        /// UDP datagrams sent in reply, per service.
        udp_datagrams_out: Counter Count, "service", "udp out", own("service_udp_sent_datagrams");
        /// UDP datagrams received and not answered, all reasons together, per service.
        udp_dropped: Counter Count, "service", "udp dropped", own("service_udp_dropped_datagrams");
        /// UDP replies waiting for the socket now, per service.
        udp_queued_datagrams: Gauge Count, "service", "udp queued", own("service_udp_queued_datagrams");
    }
}

impl ServiceStats {
    /// Adds another reactor's counters for the same service.
    pub(crate) fn merge(&mut self, other: &ServiceStats) {
        self.add_counters(other);
    }

    /// Counts what one drive of one of its connections did (as [`Stats::record_drive`]).
    pub(crate) fn record_drive(&mut self, outcome: &Outcome) {
        self.tcp_bytes_in += outcome.bytes_in() as u64;
        self.tcp_bytes_generated += outcome.bytes_generated as u64;
        self.tcp_bytes_out += outcome.bytes_written as u64;
        self.tcp_bytes_discarded += outcome.bytes_dropped() as u64;
    }

    /// Whether its books balance (see the module doc). The gauges must be current.
    pub fn accounting_holds(&self) -> bool {
        self.tcp_bytes_in + self.tcp_bytes_generated
            == self.tcp_bytes_out + self.tcp_bytes_discarded + self.pending_bytes
            && self.udp_datagrams_in
                == self.udp_datagrams_out + self.udp_dropped + self.udp_queued_datagrams
    }
}

impl Stats {
    /// Counts what one drive of a connection did: bytes each way, bytes a service generated
    /// or consumed, bytes discarded while lingering, and backpressure pauses.
    pub(crate) fn record_drive(&mut self, outcome: &Outcome) {
        self.tcp_bytes_in += outcome.bytes_in() as u64;
        self.tcp_bytes_generated += outcome.bytes_generated as u64;
        self.tcp_bytes_out += outcome.bytes_written as u64;
        self.tcp_bytes_discarded += outcome.bytes_dropped() as u64;
        self.tcp_discarded_linger += outcome.bytes_discarded as u64;
        self.tcp_discarded_service += outcome.bytes_consumed as u64;
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

    /// Counts `count` datagrams that got no reply, under `reason` and in `udp_dropped`.
    pub(crate) fn record_udp_drop(&mut self, reason: UdpDrop, count: u64) {
        let counter = match reason {
            UdpDrop::QueueFull => &mut self.udp_dropped_queue_full,
            UdpDrop::SendError => &mut self.udp_dropped_send_error,
            UdpDrop::PrivilegedPort => &mut self.udp_dropped_privileged_port,
            UdpDrop::OwnAddress => &mut self.udp_dropped_own_address,
            UdpDrop::Loop => &mut self.udp_dropped_loop,
            UdpDrop::Truncated => &mut self.udp_dropped_truncated,
            UdpDrop::Shutdown => &mut self.udp_dropped_shutdown,
            UdpDrop::RateLimited => &mut self.udp_dropped_rate_limited,
            UdpDrop::Unanswered => &mut self.udp_dropped_unanswered,
        };
        *counter += count;
        self.udp_dropped += count;
    }

    /// Counts a connection refused by admission control under its reason.
    pub(crate) fn record_rejected(&mut self, at_max_connections: bool) {
        match at_max_connections {
            true => self.rejected_max_connections += 1,
            false => self.rejected_per_source += 1,
        }
        self.conn_rejected += 1;
    }

    /// Whether every byte and datagram is accounted for (see the module doc): for the whole
    /// server, for each service, and the whole as the sum of the services (when there are
    /// any); every total is the sum of its reasons. The gauges (`pending_bytes`,
    /// `udp_queued_datagrams`) must be current, as in a snapshot from
    /// [`Server::stats`](crate::Server::stats) or a [`StatsHandle`](crate::StatsHandle).
    pub fn accounting_holds(&self) -> bool {
        self.accounting_errors().is_empty()
    }

    /// What [`Stats::accounting_holds`] found wrong, one phrase each (empty when nothing).
    pub fn accounting_errors(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let whole = ServiceStats {
            name: "the server".to_string(),
            conn_accepted: self.conn_accepted,
            tcp_bytes_in: self.tcp_bytes_in,
            tcp_bytes_generated: self.tcp_bytes_generated,
            tcp_bytes_out: self.tcp_bytes_out,
            tcp_bytes_discarded: self.tcp_bytes_discarded,
            pending_bytes: self.pending_bytes,
            udp_datagrams_in: self.udp_datagrams_in,
            udp_datagrams_out: self.udp_datagrams_out,
            udp_dropped: self.udp_dropped,
            udp_queued_datagrams: self.udp_queued_datagrams,
        };
        for books in std::iter::once(&whole).chain(&self.services) {
            if !books.accounting_holds() {
                errors.push(format!("{}: books do not balance", books.name));
            }
        }
        if !self.services.is_empty() {
            let mut sum = ServiceStats {
                name: whole.name.clone(),
                ..ServiceStats::default()
            };
            for service in &self.services {
                sum.merge(service);
            }
            if sum != whole {
                errors.push("the services do not add up to the whole".to_string());
            }
        }
        // Every split total against its parts (the `rest` of a family may leave some over).
        for (total, value) in self.counters() {
            let crate::counters::Metric::Split { family, rest, .. } = total.metric else {
                continue;
            };
            let parts: u64 = self
                .counters()
                .filter(|(c, _)| matches!(c.metric, crate::counters::Metric::Part { family: f, .. } if f == family))
                .map(|(_, v)| v)
                .sum();
            let adds_up = match rest {
                None => parts == value,
                Some(_) => parts <= value,
            };
            if !adds_up {
                errors.push(format!(
                    "{} is not the sum of its reasons ({parts})",
                    total.key
                ));
            }
        }
        errors
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
    /// its reactors'); the uptime is the longer of the two.
    pub fn merge(&mut self, other: &Stats) {
        self.uptime = self.uptime.max(other.uptime);
        self.add_counters(other);
        // Every reactor of a group serves the same listeners; match services by name anyway.
        for service in &other.services {
            match self.services.iter_mut().find(|s| s.name == service.name) {
                Some(mine) => mine.merge(service),
                None => self.services.push(service.clone()),
            }
        }
    }

    /// Total UDP datagrams not answered, all reasons together (`udp_dropped`).
    pub fn udp_dropped(&self) -> u64 {
        self.udp_dropped
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

/// `key=value` pairs separated by spaces, in the table's order, then each service's as
/// `svc.NAME.key=value`; stable for scripts.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uptime_s={:.3}", self.uptime.as_secs_f64())?;
        for (counter, value) in self.counters() {
            write!(f, " {}={value}", counter.key)?;
        }
        for service in &self.services {
            for (counter, value) in service.counters() {
                write!(f, " svc.{}.{}={value}", service.name, counter.key)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{Kind, Metric};

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
        assert!(stats.accounting_holds(), "{stats}");
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

    /// A service's drive: what it generated and consumed balances its books and the whole's,
    /// and a drive counted in the whole but not in its service is caught.
    #[test]
    fn generated_and_consumed_bytes_balance_per_service() {
        let mut stats = Stats::default();
        let chargen = stats.service_index("chargen");
        let discard = stats.service_index("discard");
        let streamed = Outcome {
            bytes_read: 10,
            bytes_consumed: 10,
            bytes_generated: 500,
            bytes_written: 300,
            ..Outcome::default()
        };
        let swallowed = Outcome {
            bytes_read: 4096,
            bytes_consumed: 4096,
            ..Outcome::default()
        };
        for (service, outcome) in [(chargen, streamed), (discard, swallowed)] {
            stats.record_drive(&outcome);
            stats.services[service].record_drive(&outcome);
        }
        stats.pending_bytes = 200;
        stats.services[chargen].pending_bytes = 200;
        assert!(stats.accounting_holds(), "{:?}", stats.accounting_errors());
        assert_eq!(stats.tcp_discarded_service, 4106);
        stats.record_drive(&swallowed);
        assert_eq!(
            stats.accounting_errors(),
            ["the services do not add up to the whole"]
        );
    }

    #[test]
    fn udp_datagrams_balance_with_queue_and_drops() {
        let mut stats = Stats {
            udp_datagrams_in: 10,
            udp_datagrams_out: 6,
            udp_queued_datagrams: 1,
            ..Stats::default()
        };
        stats.record_udp_drop(UdpDrop::QueueFull, 2);
        stats.record_udp_drop(UdpDrop::Unanswered, 1);
        assert_eq!(stats.udp_dropped(), 3);
        assert!(stats.accounting_holds(), "{stats}");
        assert!(!Stats {
            udp_queued_datagrams: 0,
            ..stats.clone()
        }
        .accounting_holds());
        assert!(
            !Stats {
                udp_dropped_loop: 1,
                ..stats
            }
            .accounting_holds(),
            "a reason outside the total is caught"
        );
    }

    #[test]
    fn merge_sums_counters_and_keeps_the_longer_uptime() {
        let mut total = Stats {
            uptime: Duration::from_secs(2),
            conn_accepted: 3,
            ..Stats::default()
        };
        total.record_udp_drop(UdpDrop::OwnAddress, 1);
        total.service_index("echo");
        total.services[0].tcp_bytes_in = 5;
        let mut other = Stats {
            uptime: Duration::from_secs(5),
            conn_accepted: 4,
            pending_bytes: 10,
            ..Stats::default()
        };
        other.service_index("echo");
        other.service_index("time");
        other.services[0].tcp_bytes_in = 7;
        total.merge(&other);
        assert_eq!(total.uptime, Duration::from_secs(5));
        assert_eq!(total.conn_accepted, 7);
        assert_eq!(total.pending_bytes, 10);
        assert_eq!(total.udp_dropped(), 1);
        assert_eq!(total.services.len(), 2);
        assert_eq!(total.services[0].tcp_bytes_in, 12);
    }

    #[test]
    fn display_is_space_separated_key_values_in_table_order() {
        let mut stats = Stats {
            tcp_bytes_out: 42,
            ..Stats::default()
        };
        stats.service_index("echo");
        let line = stats.to_string();
        assert!(line.starts_with("uptime_s=0.000 conn_accepted=0 conn_active=0 "));
        assert!(line.split(' ').any(|kv| kv == "tcp_bytes_out=42"));
        assert!(line.split(' ').all(|kv| kv.contains('=')));
        assert!(line.ends_with(" svc.echo.udp_queued_datagrams=0"), "{line}");
        let keys: Vec<&str> = line
            .split(' ')
            .map(|kv| kv.split('=').next().unwrap())
            .collect();
        let position = |key: &str| keys.iter().position(|k| *k == key).unwrap();
        assert!(position("tcp_bytes_in") < position("tcp_bytes_out"));
        assert!(position("udp_dropped") < position("udp_queued_datagrams"));
    }

    /// The table is consistent: keys unique, every part has its family's total, gauges are
    /// levels that a scrape reads now.
    #[test]
    fn the_table_is_consistent() {
        let mut keys: Vec<&str> = Stats::COUNTERS.iter().map(|c| c.key).collect();
        keys.sort_unstable();
        let before = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), before, "duplicate keys");
        for counter in Stats::COUNTERS {
            assert!(!counter.help().is_empty(), "{} has no help", counter.key);
            if let Metric::Part { family, .. } = counter.metric {
                assert!(
                    Stats::COUNTERS.iter().any(|c| matches!(
                        c.metric,
                        Metric::Split { family: f, .. } if f == family
                    )),
                    "{} is part of {family}, which has no total",
                    counter.key
                );
            }
        }
        let gauges: Vec<&str> = Stats::COUNTERS
            .iter()
            .filter(|c| c.kind == Kind::Gauge)
            .map(|c| c.key)
            .collect();
        assert_eq!(
            gauges,
            [
                "conn_active",
                "zero_copy_pipes_open",
                "pending_bytes",
                "udp_queued_datagrams"
            ]
        );
    }
}
