//! The `--listen` flag: `SERVICE=[ADDR:]PORT[/tcp|/udp]`, for example `time=12345` (TCP and
//! UDP on every bind address), `daytime=7013/tcp`, `chargen=127.0.0.1:7019/udp`,
//! `echo=[::1]:7008`, `unixtime=localhost:12345`. ADDR is an IPv4 address, an IPv6 address in
//! brackets, or a name, resolved once at start to every address it has (both families where
//! it has both). Without ADDR, the listener is bound on each `--bind` address. Each value
//! becomes the library's [`Listener`]s; the syntax is the command line's, not the library's.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use echoloop::listen::{Listener, Protocol};
use echoloop::service::ServiceKind;

/// A `--listen` value as typed: the address may still be a name, or absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// What it serves.
    pub service: ServiceKind,
    /// The address or name; `None` means every bind address.
    pub host: Option<String>,
    /// The port.
    pub port: u16,
    /// `None` when no `/tcp` or `/udp` suffix was given (then both, unless turned off).
    pub protocol: Option<Protocol>,
}

/// Why a `--listen` value or an address was refused; one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenError(pub String);

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ListenError {}

impl FromStr for ListenSpec {
    type Err = ListenError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |why: &str| {
            Err(ListenError(format!(
                "'{text}': {why} (expected SERVICE=[ADDR:]PORT[/tcp|/udp], e.g. time=12345/udp)"
            )))
        };
        let Some((service, place)) = text.split_once('=') else {
            return fail("no '='");
        };
        let service = match service.parse::<ServiceKind>() {
            Ok(service) => service,
            Err(e) => return fail(&e.to_string()),
        };
        let (place, protocol) = match place.rsplit_once('/') {
            Some((place, suffix)) => match suffix.to_ascii_lowercase().as_str() {
                "tcp" => (place, Some(Protocol::Tcp)),
                "udp" => (place, Some(Protocol::Udp)),
                _ => return fail(&format!("unknown protocol '{suffix}'")),
            },
            None => (place, None),
        };
        let (host, port) = match place.rsplit_once(':') {
            None => (None, place),
            Some((host, port)) => {
                let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                    Some(v6) if v6.parse::<std::net::Ipv6Addr>().is_ok() => v6,
                    Some(_) => return fail("not an IPv6 address in brackets"),
                    None if host.contains(':') => {
                        return fail("write an IPv6 address in brackets, e.g. [::1]:7007")
                    }
                    None if host.is_empty() => return fail("empty address before ':'"),
                    None => host,
                };
                (Some(host.to_string()), port)
            }
        };
        let Ok(port) = port.parse::<u16>() else {
            return fail(&format!("'{port}' is not a port (0 to 65535)"));
        };
        Ok(ListenSpec {
            service,
            host,
            port,
            protocol,
        })
    }
}

impl ListenSpec {
    /// The listeners this spec stands for: one per address of its host (resolved), or one
    /// per `binds` address when it names none. `default_protocol` applies when no suffix
    /// was given.
    pub fn listeners(
        &self,
        binds: &[IpAddr],
        default_protocol: Protocol,
    ) -> Result<Vec<Listener>, ListenError> {
        let addresses = match &self.host {
            Some(host) => resolve_host(host)?,
            None => binds.to_vec(),
        };
        Ok(addresses
            .into_iter()
            .map(|ip| Listener {
                service: self.service.clone(),
                protocol: self.protocol.unwrap_or(default_protocol),
                addr: SocketAddr::new(ip, self.port),
            })
            .collect())
    }
}

/// An IP address, an IPv6 address in brackets, or a host name (RFC 1123 syntax, checked
/// before anything is asked of the resolver) resolved once, through the system's resolver
/// (`/etc/hosts` first), to every address it has, without duplicates, in the resolver's
/// order. Anything else is refused, so that `127.0.0.1` followed by an invisible character
/// (a non-breaking space pasted from a web page) is an error, not a bind on `127.0.0.1`.
pub fn resolve_host(host: &str) -> Result<Vec<IpAddr>, ListenError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    if let Err(why) = check_host_name(bare) {
        return Err(ListenError(format!(
            "{host:?} is neither an IP address nor a host name: {why}"
        )));
    }
    let resolved: io::Result<Vec<SocketAddr>> =
        (bare, 0u16).to_socket_addrs().map(|addrs| addrs.collect());
    let mut ips: Vec<IpAddr> = Vec::new();
    match resolved {
        Ok(addrs) => {
            for addr in addrs {
                if !ips.contains(&addr.ip()) {
                    ips.push(addr.ip());
                }
            }
        }
        Err(e) => return Err(ListenError(format!("cannot resolve '{host}': {e}"))),
    }
    if ips.is_empty() {
        return Err(ListenError(format!("'{host}' resolves to no address")));
    }
    Ok(ips)
}

/// Checks RFC 1123 host name syntax: dot-separated labels of 1 to 63 ASCII letters, digits
/// and hyphens, none starting or ending with a hyphen, 253 characters at most (a final dot,
/// as in a fully qualified name, is allowed). Says what is wrong.
fn check_host_name(name: &str) -> Result<(), String> {
    if let Some((at, c)) = name
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "character U+{:04X} ({c:?}) at byte {at} is not allowed",
            u32::from(c)
        ));
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("an empty label (two dots in a row, or a leading dot)".into());
        }
        if label.len() > 63 {
            return Err(format!("the label {label:?} is longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("the label {label:?} starts or ends with '-'"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> ListenSpec {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn refused(text: &str) -> String {
        text.parse::<ListenSpec>().unwrap_err().to_string()
    }

    #[test]
    fn port_only_address_and_protocol_forms() {
        let time = spec("time=12345");
        assert_eq!(time.service, ServiceKind::Time);
        assert_eq!((time.host, time.port, time.protocol), (None, 12345, None));
        let daytime = spec("daytime=7013/tcp");
        assert_eq!(daytime.protocol, Some(Protocol::Tcp));
        let chargen = spec("chargen=127.0.0.1:7019/UDP");
        assert_eq!(chargen.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(chargen.protocol, Some(Protocol::Udp));
        let v6 = spec("echo=[::1]:0");
        assert_eq!((v6.host.as_deref(), v6.port), (Some("::1"), 0));
        assert_eq!(
            spec("unixtime=localhost:1").host.as_deref(),
            Some("localhost")
        );
    }

    #[test]
    fn mistakes_are_named() {
        assert!(refused("time").contains("no '='"));
        assert!(refused("qotd=17").contains("unknown service 'qotd'"));
        assert!(refused("time=70000").contains("not a port"));
        assert!(refused("time=12345/sctp").contains("unknown protocol 'sctp'"));
        assert!(refused("echo=::1:7").contains("brackets"));
        assert!(refused("echo=[nope]:7").contains("brackets"));
        assert!(refused("echo=:7").contains("empty address"));
    }

    #[test]
    fn listeners_go_on_every_bind_address_unless_one_is_named() {
        let binds: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let all = spec("time=37").listeners(&binds, Protocol::Both).unwrap();
        let addrs: Vec<String> = all.iter().map(|l| l.addr.to_string()).collect();
        assert_eq!(addrs, ["127.0.0.1:37", "[::1]:37"]);
        assert!(all.iter().all(|l| l.protocol == Protocol::Both));
        let one = spec("time=[::1]:37/udp")
            .listeners(&binds, Protocol::Both)
            .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].protocol, Protocol::Udp);
        let tcp_only = spec("time=37").listeners(&binds, Protocol::Tcp).unwrap();
        assert!(tcp_only.iter().all(|l| l.protocol == Protocol::Tcp));
    }

    #[test]
    fn names_resolve_to_every_address_once() {
        let local = resolve_host("localhost").unwrap();
        assert!(!local.is_empty() && local.iter().all(IpAddr::is_loopback));
        let mut unique = local.clone();
        unique.dedup();
        assert_eq!(unique.len(), local.len());
        assert_eq!(
            resolve_host("[::1]").unwrap(),
            ["::1".parse::<IpAddr>().unwrap()]
        );
    }

    /// A pasted invisible character, spaces, and other things that are not host names are
    /// refused before the resolver is asked (which might have ignored them).
    #[test]
    fn only_addresses_and_rfc_1123_names_are_hosts() {
        for good in ["localhost", "a", "example.com.", "x-1.y2", "1.2.3.4.nip"] {
            assert!(check_host_name(good).is_ok(), "{good}");
        }
        let refused = |host: &str| resolve_host(host).unwrap_err().0;
        let nbsp = refused("127.0.0.1\u{a0}");
        assert!(
            nbsp.contains("U+00A0") && nbsp.contains("at byte 9"),
            "{nbsp}"
        );
        assert!(refused(" 127.0.0.1").contains("U+0020"));
        assert!(refused("under_score").contains("U+005F"));
        assert!(refused("").contains("empty"));
        assert!(refused("a..b").contains("empty label"));
        assert!(refused("-a.b").contains("'-'"));
        assert!(refused(&"a".repeat(64)).contains("63"));
        assert!(refused(&["abc"; 64].join(".")).contains("253"));
        assert!(refused("ex\u{e4}mple.com").contains("U+00E4"));
        for one_line in [nbsp, refused("a\nb")] {
            assert_eq!(one_line.lines().count(), 1, "{one_line}");
        }
    }
}
