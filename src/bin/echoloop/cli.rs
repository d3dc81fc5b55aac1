//! The `echoloop` command line: flags mapped onto [`Config`], and clap's errors turned into
//! one line.
//!
//! This is the only place that knows about clap; embedders build a `Config` directly.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::Parser;
use log::LevelFilter;

use echoloop::config::{default_max_connections, Config, DEFAULT_PORT, DEFAULT_ZERO_COPY_CONNS};
use echoloop::listen::{resolve_host, ListenSpec, Listener, Protocol};
use echoloop::service::ServiceKind;
use echoloop::units::{parse_duration, parse_size};

use crate::logging::{Sink, DEFAULT_SYSLOG_SOCKET};

/// A timeout that can be turned off: a duration, or `off` (also `0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Option<Duration>);

fn parse_timeout(text: &str) -> Result<Timeout, String> {
    match text.trim() {
        "off" | "0" => Ok(Timeout(None)),
        other => parse_duration(other).map(|d| Timeout(Some(d))),
    }
}

/// The addresses one `--bind` value stands for: an IP address, or every address of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindAddrs(pub Vec<IpAddr>);

fn parse_bind(text: &str) -> Result<BindAddrs, String> {
    let text = text.trim();
    if text.parse::<IpAddr>().is_err() && text.contains(':') && !text.starts_with('[') {
        return Err(format!(
            "'{text}' is not an address (no port here: use --port, or --listen for more)"
        ));
    }
    resolve_host(text).map(BindAddrs).map_err(|e| e.0)
}

/// The echo listener's port, or `off` for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoPort(pub Option<u16>);

fn parse_port(text: &str) -> Result<EchoPort, String> {
    match text.trim() {
        "off" => Ok(EchoPort(None)),
        other => other
            .parse::<u16>()
            .map(|port| EchoPort(Some(port)))
            .map_err(|_| format!("'{other}' is not a port (0 to 65535, or off)")),
    }
}

/// A single-threaded mio reactor serving echo (RFC 862) over TCP and UDP, and the inetd
/// family beside it (discard, chargen, daytime, time, unixtime) with --listen.
#[derive(Debug, Parser)]
#[command(name = "echoloop", version, about, long_about = None)]
pub struct Cli {
    /// Address to serve on; repeat for several. An IP address or a name (localhost: every
    /// address it resolves to). 0.0.0.0 or :: exposes the services beyond this machine; ::
    /// is dual stack (IPV6_V6ONLY off): it serves IPv4 too.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1", value_parser = parse_bind)]
    pub bind: Vec<BindAddrs>,

    /// Port of the echo listener, TCP and UDP; 0 picks a free one (printed at start); off
    /// serves only the --listen listeners.
    #[arg(long, value_name = "N|off", default_value_t = EchoPort(Some(DEFAULT_PORT)), value_parser = parse_port)]
    pub port: EchoPort,

    /// Adds a listener; repeat for several. SERVICE is echo, discard, chargen, daytime,
    /// time or unixtime; without ADDR it listens on every --bind address; without /tcp or
    /// /udp, on both. E.g. time=12345, daytime=7013/tcp, chargen=[::1]:7019/udp.
    #[arg(long, value_name = "SERVICE=[ADDR:]PORT[/tcp|/udp]")]
    pub listen: Vec<ListenSpec>,

    /// Listen backlog (capped by the kernel's net.core.somaxconn).
    #[arg(long, value_name = "N", default_value_t = Config::default().backlog)]
    pub backlog: u32,

    /// Serve UDP only.
    #[arg(long, conflicts_with = "no_udp")]
    pub no_tcp: bool,

    /// Serve TCP only.
    #[arg(long)]
    pub no_udp: bool,

    /// Pending output per connection before reading pauses (backpressure), e.g. 16M.
    #[arg(long, value_name = "SIZE", default_value = "32M", value_parser = parse_size)]
    pub max_pending: usize,

    /// How long shutdown waits for pending output to drain, e.g. 5s.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Log the counters this often, e.g. 10s (off by default).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub stats_interval: Option<Duration>,

    /// Most connections served at once; more are accepted and closed at once (client sees
    /// EOF). Default: the open-file limit minus 32, minus 2 per zero-copy connection.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// Most connections echoing with zero copy (splice through a pipe, 2 descriptors each);
    /// bulk connections beyond it copy. 0 turns zero copy off. Linux only.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ZERO_COPY_CONNS)]
    pub zero_copy_conns: usize,

    /// Most connections from one source IP (default: no limit).
    #[arg(long, value_name = "N")]
    pub max_per_source: Option<usize>,

    /// Soft bound on pending output across all connections; above it, connections over a
    /// fair share pause reading, e.g. 512M.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size)]
    pub memory_budget: usize,

    /// Close connections that move no byte for this long, e.g. 5m ("off" by default).
    #[arg(long, value_name = "DURATION", default_value = "off", value_parser = parse_timeout)]
    pub idle_timeout: Timeout,

    /// Close connections whose pending output makes no progress for this long ("off" to
    /// disable).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_timeout)]
    pub stall_timeout: Timeout,

    /// UDP replies per second per source for services that can amplify (chargen, daytime,
    /// time, unixtime) on a listener beyond loopback; bursts of twice that.
    #[arg(long, value_name = "N", default_value_t = Config::default().udp_reply_rate)]
    pub udp_reply_rate: u32,

    /// Log level: off, error, warn, info, debug, trace (overrides RUST_LOG).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<LevelFilter>,

    /// Send log records to the local syslog (facility daemon, ident echoloop[pid]) instead
    /// of stderr.
    #[arg(long)]
    pub syslog: bool,

    /// The syslog socket (implies --syslog) [default: /dev/log].
    #[arg(long, value_name = "PATH")]
    pub syslog_socket: Option<PathBuf>,
}

impl std::fmt::Display for EchoPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(port) => write!(f, "{port}"),
            None => f.write_str("off"),
        }
    }
}

impl Cli {
    /// Where log records go.
    pub fn log_sink(&self) -> Sink {
        match (&self.syslog_socket, self.syslog) {
            (Some(path), _) => Sink::Syslog(path.clone()),
            (None, true) => Sink::Syslog(DEFAULT_SYSLOG_SOCKET.into()),
            (None, false) => Sink::Stderr,
        }
    }

    /// Every --bind address, names resolved, without duplicates, and without a `0.0.0.0`
    /// that a dual-stack `::` already covers (both could not bind one port).
    fn bind_addrs(&self) -> Vec<IpAddr> {
        let mut addrs: Vec<IpAddr> = Vec::new();
        for ip in self.bind.iter().flat_map(|b| b.0.iter()) {
            if !addrs.contains(ip) {
                addrs.push(*ip);
            }
        }
        let any_v6 = IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED);
        if addrs.contains(&any_v6) {
            addrs.retain(|ip| *ip != IpAddr::from(std::net::Ipv4Addr::UNSPECIFIED));
        }
        addrs
    }

    /// The listeners beyond the first echo listener: echo on the other --bind addresses,
    /// then each --listen. --no-tcp and --no-udp apply to every listener without a /tcp or
    /// /udp suffix; a suffix says exactly what is wanted.
    fn extra_listeners(&self, binds: &[IpAddr]) -> Result<Vec<Listener>, String> {
        let default_protocol = Protocol::from_flags(!self.no_tcp, !self.no_udp);
        let mut listeners = Vec::new();
        if let (Some(port), Some(protocol)) = (self.port.0, default_protocol) {
            for &ip in &binds[1..] {
                listeners.push(Listener {
                    service: ServiceKind::Echo,
                    protocol,
                    addr: std::net::SocketAddr::new(ip, port),
                });
            }
        }
        for spec in &self.listen {
            let protocol = default_protocol.unwrap_or(Protocol::Both);
            listeners.extend(spec.listeners(binds, protocol).map_err(|e| e.0)?);
        }
        Ok(listeners)
    }

    /// The configuration these flags describe; everything else keeps its default. Fails
    /// when a --listen name does not resolve.
    pub fn to_config(&self) -> Result<Config, String> {
        let defaults = Config::default();
        let binds = self.bind_addrs();
        let echo = self.port.0.is_some();
        Ok(Config {
            bind: binds[0],
            port: self.port.0.unwrap_or(DEFAULT_PORT),
            tcp: echo && !self.no_tcp,
            udp: echo && !self.no_udp,
            listeners: self.extra_listeners(&binds)?,
            udp_reply_rate: self.udp_reply_rate,
            backlog: self.backlog,
            max_pending: self.max_pending,
            low_water: self.max_pending / 4,
            drain_timeout: self.drain_timeout,
            stats_interval: self.stats_interval,
            max_connections: self
                .max_connections
                .unwrap_or_else(|| default_max_connections(self.zero_copy_conns)),
            zero_copy_conns: self.zero_copy_conns,
            max_per_source: self.max_per_source,
            memory_budget: self.memory_budget,
            idle_timeout: self.idle_timeout.0,
            stall_timeout: self.stall_timeout.0,
            ..defaults
        })
    }
}

/// What parsing the command line decided.
#[derive(Debug)]
pub enum Parsed {
    /// Run with these flags.
    Run(Box<Cli>),
    /// Help or version was asked for: print this and exit 0.
    Print(String),
    /// The command line is wrong: print `echoloop: <this>` and exit 2.
    Invalid(String),
}

/// Parses arguments (including the program name) without exiting or panicking.
pub fn parse<I, T>(args: I) -> Parsed
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(cli) => Parsed::Run(Box::new(cli)),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            Parsed::Print(e.to_string())
        }
        Err(e) => Parsed::Invalid(one_line(&e, "echoloop")),
    }
}

/// Clap's error as one line: its first line without the `error: ` prefix, plus a hint.
pub fn one_line(error: &clap::Error, program: &str) -> String {
    let rendered = error.to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    let message = first.strip_prefix("error: ").unwrap_or(first);
    format!("{message} (try '{program} --help')")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn run(args: &[&str]) -> Cli {
        match parse(std::iter::once("echoloop").chain(args.iter().copied())) {
            Parsed::Run(cli) => *cli,
            other => panic!("expected flags to parse, got {other:?}"),
        }
    }

    fn invalid(args: &[&str]) -> String {
        match parse(std::iter::once("echoloop").chain(args.iter().copied())) {
            Parsed::Invalid(message) => message,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_flags_give_the_default_config() {
        assert_eq!(run(&[]).to_config(), Ok(Config::default()));
        assert_eq!(run(&[]).log_sink(), Sink::Stderr);
    }

    #[test]
    fn bind_port_backlog_map_onto_config() {
        let config = run(&["--bind", "::", "--port", "0", "--backlog", "16"])
            .to_config()
            .unwrap();
        assert_eq!(config.bind, "::".parse::<IpAddr>().unwrap());
        assert_eq!(config.port, 0);
        assert_eq!(config.backlog, 16);
        assert!(config.is_exposed());
    }

    #[test]
    fn no_udp_and_no_tcp_turn_one_side_off() {
        assert!(!run(&["--no-udp"]).to_config().unwrap().udp);
        assert!(!run(&["--no-tcp"]).to_config().unwrap().tcp);
        assert!(invalid(&["--no-tcp", "--no-udp"]).contains("cannot be used with"));
    }

    #[test]
    fn sizes_and_durations_parse_with_units() {
        let cli = run(&[
            "--max-pending",
            "16M",
            "--drain-timeout",
            "250ms",
            "--stats-interval",
            "10s",
            "--log-level",
            "debug",
        ]);
        let config = cli.to_config().unwrap();
        assert_eq!(config.max_pending, 16 << 20);
        assert_eq!(config.low_water, 4 << 20);
        assert_eq!(config.drain_timeout, Duration::from_millis(250));
        assert_eq!(config.stats_interval, Some(Duration::from_secs(10)));
        assert_eq!(cli.log_level, Some(LevelFilter::Debug));
    }

    #[test]
    fn limits_and_timeouts_map_onto_config() {
        let config = run(&[
            "--max-connections",
            "100",
            "--max-per-source",
            "4",
            "--memory-budget",
            "64M",
            "--idle-timeout",
            "30s",
            "--stall-timeout",
            "off",
        ])
        .to_config()
        .unwrap();
        assert_eq!(config.max_connections, 100);
        assert_eq!(config.max_per_source, Some(4));
        assert_eq!(config.memory_budget, 64 << 20);
        assert_eq!(config.idle_timeout, Some(Duration::from_secs(30)));
        assert_eq!(config.stall_timeout, None);
        assert!(invalid(&["--stall-timeout", "soon"]).contains("not a duration"));
    }

    #[test]
    fn errors_are_one_line_with_a_hint() {
        let unknown = invalid(&["--frobnicate"]);
        assert!(unknown.contains("--frobnicate"), "{unknown}");
        assert!(unknown.ends_with("(try 'echoloop --help')"));
        assert!(!unknown.contains('\n'));
        let address = invalid(&["--bind", "localhost:80"]);
        assert!(address.contains("invalid value"), "{address}");
        assert!(!address.contains('\n'));
    }

    #[test]
    fn listen_adds_listeners_on_every_bind_address_beside_echo() {
        let config = run(&[
            "--bind",
            "127.0.0.1",
            "--bind",
            "::1",
            "--listen",
            "time=12345",
            "--listen",
            "daytime=[::1]:7013/tcp",
        ])
        .to_config()
        .unwrap();
        let all: Vec<String> = config
            .all_listeners()
            .iter()
            .map(|l| format!("{} {} {}", l.service, l.protocol.name(), l.addr))
            .collect();
        assert_eq!(
            all,
            [
                "echo tcp+udp 127.0.0.1:7007",
                "echo tcp+udp [::1]:7007",
                "time tcp+udp 127.0.0.1:12345",
                "time tcp+udp [::1]:12345",
                "daytime tcp [::1]:7013",
            ]
        );
    }

    #[test]
    fn port_off_and_no_udp_shape_the_listeners() {
        let config = run(&[
            "--port",
            "off",
            "--no-udp",
            "--listen",
            "chargen=7019",
            "--listen",
            "time=37/udp",
        ])
        .to_config()
        .unwrap();
        let all = config.all_listeners();
        assert_eq!(all.len(), 2, "no echo listener: {all:?}");
        assert_eq!(
            all[0].protocol,
            Protocol::Tcp,
            "--no-udp applies without a suffix"
        );
        assert_eq!(
            all[1].protocol,
            Protocol::Udp,
            "a suffix says exactly what is wanted"
        );
        assert!(run(&["--port", "off"])
            .to_config()
            .unwrap()
            .validate()
            .is_err());
        assert!(invalid(&["--port", "seven"]).contains("not a port"));
        assert!(invalid(&["--listen", "qotd=17"]).contains("unknown service"));
    }

    #[test]
    fn bind_names_resolve_and_addresses_with_ports_are_refused() {
        let config = run(&["--bind", "localhost", "--bind", "127.0.0.1"])
            .to_config()
            .unwrap();
        assert!(config.bind.is_loopback());
        let all = config.all_listeners();
        assert!(all
            .iter()
            .all(|l| l.addr.ip().is_loopback() && l.addr.port() == 7007));
        let mut ips: Vec<_> = all.iter().map(|l| l.addr.ip()).collect();
        ips.dedup();
        assert_eq!(ips.len(), all.len(), "duplicates merged: {all:?}");
        assert!(invalid(&["--bind", "127.0.0.1:7"]).contains("no port here"));
        let both = run(&["--bind", "0.0.0.0", "--bind", "::"])
            .to_config()
            .unwrap();
        let ips: Vec<String> = both
            .all_listeners()
            .iter()
            .map(|l| l.addr.ip().to_string())
            .collect();
        assert_eq!(ips, ["::"], "a dual-stack :: covers 0.0.0.0");
    }

    #[test]
    fn syslog_flags_choose_the_sink() {
        assert_eq!(
            run(&["--syslog"]).log_sink(),
            Sink::Syslog("/dev/log".into())
        );
        assert_eq!(
            run(&["--syslog-socket", "/tmp/x.sock"]).log_sink(),
            Sink::Syslog("/tmp/x.sock".into())
        );
    }

    #[test]
    fn help_is_printed_not_an_error() {
        let parsed = parse(["echoloop", "--help"]);
        assert!(matches!(parsed, Parsed::Print(text) if text.contains("--max-pending")));
    }
}
