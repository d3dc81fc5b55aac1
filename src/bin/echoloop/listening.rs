//! The start-up line on stdout: every bound socket, in a form scripts parse.
//!
//! `listening tcp=ADDR udp=ADDR [metrics=ADDR]` names the first echo listener (`off` for a
//! side it does not serve) and the metrics endpoint, exactly as before services existed, so
//! scripts written for the plain echo server keep working. When anything else is bound (another service, another address), one
//! `SERVICE/PROTOCOL=ADDR` field per socket follows, in the order of the flags, e.g.
//!
//! ```text
//! listening tcp=127.0.0.1:7007 udp=127.0.0.1:7007 echo/tcp=127.0.0.1:7007 echo/udp=127.0.0.1:7007 time/udp=127.0.0.1:12345
//! ```
//!
//! Every field is `key=value` without spaces; a script that wants every listener reads the
//! fields whose key has a `/`.

use std::fmt::Write;
use std::net::SocketAddr;

use echoloop::listen::{Endpoint, Protocol};
use echoloop::service::ServiceKind;

/// The line, without its newline; `metrics=ADDR` follows the two leading fields when the
/// metrics endpoint is on.
pub fn line(endpoints: &[Endpoint], metrics: Option<SocketAddr>) -> String {
    let first_echo = |protocol: Protocol| {
        endpoints
            .iter()
            .find(|e| e.service == ServiceKind::Echo && e.protocol == protocol)
            .map_or_else(|| "off".to_string(), |e| e.addr.to_string())
    };
    let mut line = format!(
        "listening tcp={} udp={}",
        first_echo(Protocol::Tcp),
        first_echo(Protocol::Udp)
    );
    if let Some(metrics) = metrics {
        let _ = write!(line, " metrics={metrics}");
    }
    if !is_plain_echo(endpoints) {
        for endpoint in endpoints {
            let _ = write!(line, " {endpoint}");
        }
    }
    line
}

/// True when the sockets are one echo listener's (TCP, UDP or both on one address): the
/// two leading fields then say everything.
fn is_plain_echo(endpoints: &[Endpoint]) -> bool {
    let echo = endpoints.iter().all(|e| e.service == ServiceKind::Echo);
    let one_address = endpoints
        .windows(2)
        .all(|w| w[0].addr.ip() == w[1].addr.ip());
    let once_each =
        endpoints.len() <= 2 && endpoints.windows(2).all(|w| w[0].protocol != w[1].protocol);
    echo && one_address && once_each
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(service: ServiceKind, protocol: Protocol, addr: &str) -> Endpoint {
        Endpoint {
            service,
            protocol,
            addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn plain_echo_keeps_the_old_line() {
        let both = [
            endpoint(ServiceKind::Echo, Protocol::Tcp, "127.0.0.1:7007"),
            endpoint(ServiceKind::Echo, Protocol::Udp, "127.0.0.1:7007"),
        ];
        assert_eq!(
            line(&both, None),
            "listening tcp=127.0.0.1:7007 udp=127.0.0.1:7007"
        );
        assert_eq!(
            line(&both[..1], None),
            "listening tcp=127.0.0.1:7007 udp=off"
        );
    }

    #[test]
    fn other_services_and_addresses_are_listed_one_field_each() {
        let many = [
            endpoint(ServiceKind::Echo, Protocol::Tcp, "127.0.0.1:7007"),
            endpoint(ServiceKind::Echo, Protocol::Tcp, "[::1]:7007"),
            endpoint(ServiceKind::Time, Protocol::Udp, "127.0.0.1:12345"),
        ];
        assert_eq!(
            line(&many, None),
            "listening tcp=127.0.0.1:7007 udp=off echo/tcp=127.0.0.1:7007 \
             echo/tcp=[::1]:7007 time/udp=127.0.0.1:12345"
        );
        let no_echo = [endpoint(
            ServiceKind::Daytime,
            Protocol::Tcp,
            "127.0.0.1:13",
        )];
        assert_eq!(
            line(&no_echo, None),
            "listening tcp=off udp=off daytime/tcp=127.0.0.1:13"
        );
    }
}
