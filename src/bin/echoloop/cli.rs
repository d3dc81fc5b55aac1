//! The `echoloop` command line: flags mapped onto [`Config`], and clap's errors turned into
//! one line.
//!
//! This is the only place that knows about clap; embedders build a `Config` directly.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Parser, ValueEnum};
use log::LevelFilter;

use echoloop::config::{
    default_max_connections, Config, LoopGuard, DEFAULT_PORT, DEFAULT_ZERO_COPY_CONNS,
};
use echoloop::listen::{Listener, Protocol};
use echoloop::service::ServiceKind;
use echoloop::units::{parse_duration, parse_size, MAX_DURATION};
use echoloop::{ConfigError, ServerError};

use crate::listen_flag::{resolve_host, ListenSpec};

use crate::logging::{Sink, DEFAULT_SYSLOG_SOCKET};

/// A timeout that can be turned off: a duration, or `off` (also `0`). A timeout of
/// [`MAX_DURATION`] or more (`forever`, or a number that long) never fires, so it is off too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Option<Duration>);

fn parse_timeout(text: &str) -> Result<Timeout, String> {
    match text.trim() {
        "off" | "0" => Ok(Timeout(None)),
        other => parse_duration(other).map(|d| Timeout(Some(d).filter(|&d| d < MAX_DURATION))),
    }
}

/// How many reactors: a number, or `auto` for one per available core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threads(pub usize);

/// The most reactors `--threads` takes: more than cores only adds context switches, and far
/// more exhausts threads and descriptors.
const MAX_THREADS: usize = 1024;

fn parse_threads(text: &str) -> Result<Threads, String> {
    match text.trim() {
        "auto" => Ok(Threads(
            std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS)),
        )),
        other => match other.parse::<usize>() {
            Ok(0) | Err(_) => Err(format!(
                "'{other}' is not a number of threads (1 or more, or auto)"
            )),
            Ok(n) if n > MAX_THREADS => Err(format!(
                "{n} threads is more than {MAX_THREADS}, the most reactors echoloop runs"
            )),
            Ok(n) => Ok(Threads(n)),
        },
    }
}

/// Log levels, as `--log-level` spells them (clap lists them when a value is wrong).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// No log at all.
    Off,
    /// Failures only.
    Error,
    /// Failures and warnings (public bind, descriptors running out).
    Warn,
    /// Start, shutdown and stats lines.
    Info,
    /// One line per connection event.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The `log` crate's filter for this level.
    pub fn filter(self) -> LevelFilter {
        match self {
            LogLevel::Off => LevelFilter::Off,
            LogLevel::Error => LevelFilter::Error,
            LogLevel::Warn => LevelFilter::Warn,
            LogLevel::Info => LevelFilter::Info,
            LogLevel::Debug => LevelFilter::Debug,
            LogLevel::Trace => LevelFilter::Trace,
        }
    }
}

/// How the exit summary is printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum SummaryFormat {
    /// An aligned block when stdout is a terminal, else the `summary key=value` line.
    #[default]
    Auto,
    /// The aligned block, for a person.
    Human,
    /// One `summary key=value ...` line, for scripts.
    Kv,
}

/// `--udp-loop-guard`: which UDP peers the echo-loop guard watches ([`LoopGuard`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LoopGuardFlag {
    /// Peers beyond loopback (a loopback source cannot come from another host).
    #[default]
    Auto,
    /// Every peer, loopback included.
    On,
    /// No peer.
    Off,
}

impl From<LoopGuardFlag> for LoopGuard {
    fn from(flag: LoopGuardFlag) -> Self {
        match flag {
            LoopGuardFlag::Auto => LoopGuard::Auto,
            LoopGuardFlag::On => LoopGuard::On,
            LoopGuardFlag::Off => LoopGuard::Off,
        }
    }
}

/// What `--generate` writes to stdout, from this very command definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generated {
    /// The man page (roff), e.g. `echoloop --generate man > echoloop.1`.
    Man,
    /// bash completions.
    Bash,
    /// zsh completions.
    Zsh,
    /// fish completions.
    Fish,
}

/// Printed at the end of `--help`: what scripts and service managers rely on.
const AFTER_HELP: &str = "\
Signals:
  SIGINT, SIGTERM, SIGHUP  stop accepting, drain pending output (up to --drain-timeout),
                           print the summary, exit 0; a second one exits at once (130)
  SIGUSR1                  log the counters and rates now (stderr) and keep serving
  SIGPIPE                  ignored: a closed stdout or client never ends the server

Exit codes:
  0    graceful shutdown (also when stdout was closed and the summary could not be printed)
  1    a failure while running (the event loop could not poll)
  2    bad usage: unknown flag, bad value, unusable address, port in use or privileged
  130  a second signal cut the drain short";

/// The addresses one `--bind` value stands for: an IP address, or every address of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindAddrs(pub Vec<IpAddr>);

fn parse_bind(text: &str) -> Result<BindAddrs, String> {
    // Not trimmed: `resolve_host` refuses stray whitespace (a trailing non-breaking space
    // would otherwise vanish and the server start on the address before it).
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
#[command(name = "echoloop", version, about, long_about = None, after_help = AFTER_HELP)]
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

    /// Pending output per connection before reading pauses (backpressure), e.g. 16M, for a
    /// client that stopped reading; one that reads is held to 256K.
    #[arg(long, value_name = "SIZE", default_value = "32M", value_parser = parse_size)]
    pub max_pending: usize,

    /// How long shutdown waits for pending output to drain, e.g. 5s.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Log the counters this often, e.g. 10s (off by default).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub stats_interval: Option<Duration>,

    /// Most connections served at once; more are accepted and closed at once (client sees
    /// EOF). Default: the open-file limit minus 32 (and 4 per further reactor); zero-copy
    /// pipes only use descriptors that connections leave spare.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// Most connections echoing with zero copy (splice through a pipe, 2 descriptors each,
    /// made only from spare descriptors); bulk connections beyond it copy. 0 turns zero copy
    /// off. Linux only.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ZERO_COPY_CONNS)]
    pub zero_copy_conns: usize,

    /// Most connections from one source IP (default: no limit).
    #[arg(long, value_name = "N")]
    pub max_per_source: Option<usize>,

    /// Bound on pending output across all connections (plus at most 64K per connection);
    /// connections grow only into what is left of it and pause at it, e.g. 512M.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size)]
    pub memory_budget: usize,

    /// Close connections that move no byte for this long, e.g. 5m ("off" by default).
    #[arg(long, value_name = "DURATION", default_value = "off", value_parser = parse_timeout)]
    pub idle_timeout: Timeout,

    /// Close connections whose pending output makes no progress for this long ("off" to
    /// disable).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_timeout)]
    pub stall_timeout: Timeout,

    /// Reactors, each a single-threaded event loop on its own thread with its own listener
    /// and UDP socket on the same port (SO_REUSEPORT); "auto" is one per available core.
    #[arg(long, value_name = "N|auto", default_value = "1", value_parser = parse_threads)]
    pub threads: Threads,

    /// Pin reactor i to the i-th core this process may run on.
    #[arg(long)]
    pub pin: bool,

    /// Keep the soft open-file limit as it is (by default it is raised to the hard limit at
    /// start).
    #[arg(long)]
    pub no_raise_nofile: bool,

    /// UDP replies per second per source for services that can amplify (chargen, daytime,
    /// time, unixtime) on a listener beyond loopback; bursts of twice that.
    #[arg(long, value_name = "N", default_value_t = Config::default().udp_reply_rate)]
    pub udp_reply_rate: u32,

    /// Which UDP peers the echo-loop guard watches: a peer that keeps sending back exactly
    /// what it was just sent loses one datagram in 1,025 (that ends a loop between two echo
    /// servers; a client repeating its payload loses it too). auto: peers beyond loopback;
    /// on: every peer; off: none (a forged datagram can then loop forever between this
    /// server and another exposed echo server).
    #[arg(long, value_name = "WHEN", value_enum, default_value_t = LoopGuardFlag::Auto)]
    pub udp_loop_guard: LoopGuardFlag,

    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (off by default), e.g.
    /// 127.0.0.1:9107; a non-loopback address exposes the counters (logged as a warning).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,

    /// Log level (overrides RUST_LOG; default info).
    #[arg(long, value_name = "LEVEL", value_enum)]
    pub log_level: Option<LogLevel>,

    /// The exit summary: an aligned block on a terminal, one key=value line otherwise.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = SummaryFormat::Auto)]
    pub summary: SummaryFormat,

    /// Print the man page or shell completions for this command and exit.
    #[arg(long, value_name = "WHAT", value_enum, hide = true)]
    pub generate: Option<Generated>,

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
            udp_loop_guard: self.udp_loop_guard.into(),
            backlog: self.backlog,
            max_pending: self.max_pending,
            low_water: self.max_pending / 4,
            drain_timeout: self.drain_timeout,
            stats_interval: self.stats_interval,
            max_connections: self
                .max_connections
                .unwrap_or_else(|| default_max_connections(self.threads.0)),
            zero_copy_conns: self.zero_copy_conns,
            max_per_source: self.max_per_source,
            memory_budget: self.memory_budget,
            idle_timeout: self.idle_timeout.0,
            stall_timeout: self.stall_timeout.0,
            metrics: self.metrics,
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

/// Clap's error as one line: its first line without the `error: ` prefix, the allowed values
/// when clap knows them (they would be on a line of their own), plus a hint.
pub fn one_line(error: &clap::Error, program: &str) -> String {
    let rendered = error.to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    let message = first.strip_prefix("error: ").unwrap_or(first);
    match error.get(ContextKind::ValidValue) {
        Some(ContextValue::Strings(values)) if !values.is_empty() => format!(
            "{message}; allowed: {} (try '{program} --help')",
            values.join(", ")
        ),
        _ => format!("{message} (try '{program} --help')"),
    }
}

/// A server error in the command line's words: a refused configuration, or a port in use,
/// names the flag that sets the value (the library names the `Config` field, which a user of
/// the binary never sees).
pub fn explain(error: &ServerError) -> String {
    if let ServerError::Bind {
        protocol, source, ..
    } = error
    {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            let flag = match *protocol {
                "metrics" => "pick another with --metrics ADDR:PORT",
                _ => "pick another with --port, or --port 0 for any free port",
            };
            return format!(
                "{} (hint: another process holds this port; {flag})",
                error.cause()
            );
        }
    }
    let ServerError::Config(config) = error else {
        return error.to_string();
    };
    let in_flags = match config {
        ConfigError::NothingToServe => "nothing to serve: --no-tcp and --no-udp, and no --listen",
        ConfigError::ZeroBacklog => "--backlog must be at least 1",
        ConfigError::MaxPendingTooSmall => {
            "--max-pending must be at least 64K (one read's worth of echo)"
        }
        ConfigError::LowWaterNotBelowMaxPending => "the low-water mark must be below --max-pending",
        ConfigError::ZeroStatsInterval => "--stats-interval must be longer than zero",
        ConfigError::ZeroConnectionLimit => {
            "--max-connections and --max-per-source must be at least 1"
        }
        ConfigError::MemoryBudgetTooSmall => "--memory-budget must be at least 1M",
        ConfigError::ZeroTimeout => {
            "--idle-timeout and --stall-timeout must be longer than zero (leave them off instead)"
        }
        _ => return error.to_string(),
    };
    format!("invalid configuration: {in_flags}")
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
        assert_eq!(
            cli.log_level.map(LogLevel::filter),
            Some(LevelFilter::Debug)
        );
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
    fn udp_loop_guard_is_auto_on_or_off() {
        let guard = |args: &[&str]| run(args).to_config().unwrap().udp_loop_guard;
        assert_eq!(guard(&[]), LoopGuard::Auto);
        assert_eq!(guard(&["--udp-loop-guard", "on"]), LoopGuard::On);
        assert_eq!(guard(&["--udp-loop-guard", "off"]), LoopGuard::Off);
        assert!(invalid(&["--udp-loop-guard", "maybe"]).contains("allowed: auto, on, off"));
    }

    #[test]
    fn threads_take_a_number_or_auto() {
        assert_eq!(run(&[]).threads, Threads(1));
        assert_eq!(run(&["--threads", "4"]).threads, Threads(4));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(run(&["--threads", "auto"]).threads, Threads(cores));
        assert!(invalid(&["--threads", "0"]).contains("not a number of threads"));
        assert!(invalid(&["--threads", "many"]).contains("not a number of threads"));
        assert!(invalid(&["--threads", "1025"]).contains("the most reactors"));
        assert_eq!(run(&["--threads", "1024"]).threads, Threads(1024));
        let cli = run(&["--threads", "3", "--pin", "--no-raise-nofile"]);
        assert!(cli.pin && cli.no_raise_nofile);
        // Each further reactor holds four more descriptors.
        assert_eq!(
            cli.to_config().unwrap().max_connections + 8,
            run(&[]).to_config().unwrap().max_connections
        );
    }

    #[test]
    fn durations_at_any_size_are_capped_or_off() {
        let huge = "10000000000000000000";
        let config = run(&[
            "--idle-timeout",
            huge,
            "--stall-timeout",
            "forever",
            "--drain-timeout",
            huge,
            "--stats-interval",
            huge,
        ])
        .to_config()
        .unwrap();
        assert_eq!(
            config.idle_timeout, None,
            "a timeout that never fires is off"
        );
        assert_eq!(config.stall_timeout, None);
        assert_eq!(config.drain_timeout, MAX_DURATION);
        assert_eq!(config.stats_interval, Some(MAX_DURATION));
        assert_eq!(config.validate(), Ok(()));
        let long = run(&["--idle-timeout", "36524d"]).to_config().unwrap();
        assert_eq!(
            long.idle_timeout,
            Some(Duration::from_secs(36_524 * 86_400))
        );
    }

    #[test]
    fn sizes_too_large_for_memory_are_refused_in_one_line() {
        for flag in ["--max-pending", "--memory-budget"] {
            let message = invalid(&[flag, "99999999999999999999G"]);
            assert!(message.contains("too large"), "{message}");
            assert!(!message.contains('\n'));
        }
        let config = run(&["--max-pending", &usize::MAX.to_string()])
            .to_config()
            .unwrap();
        assert_eq!(config.low_water, usize::MAX / 4);
        assert_eq!(config.validate(), Ok(()));
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

    /// A wrong `--log-level` names every level it would have taken, still on one line.
    #[test]
    fn wrong_log_level_lists_the_allowed_values() {
        let message = invalid(&["--log-level", "loud"]);
        assert!(message.contains("'loud'"), "{message}");
        assert!(
            message.contains("allowed: off, error, warn, info, debug, trace"),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
    }

    /// `--help` ends with the exit codes and the signals, which scripts and units rely on.
    #[test]
    fn help_lists_exit_codes_and_signals() {
        let Parsed::Print(help) = parse(["echoloop", "--help"]) else {
            panic!("--help prints");
        };
        for code in ["0 ", "1 ", "2 ", "130 "] {
            assert!(
                help.contains(&format!("\n  {code}")),
                "exit code {code}in {help}"
            );
        }
        for signal in ["SIGHUP", "SIGUSR1", "SIGPIPE"] {
            assert!(help.contains(signal), "{signal} in {help}");
        }
        assert!(!help.contains("--generate"), "the generator flag is hidden");
    }

    #[test]
    fn metrics_takes_an_address_with_port() {
        assert_eq!(run(&[]).to_config().unwrap().metrics, None);
        let config = run(&["--metrics", "127.0.0.1:9107"]).to_config().unwrap();
        assert_eq!(config.metrics, Some("127.0.0.1:9107".parse().unwrap()));
        assert!(!config.metrics_exposed());
        assert!(run(&["--metrics", "0.0.0.0:0"])
            .to_config()
            .unwrap()
            .metrics_exposed());
        assert!(invalid(&["--metrics", "127.0.0.1"]).contains("invalid value"));
    }

    #[test]
    fn summary_format_and_generate_parse() {
        assert_eq!(run(&[]).summary, SummaryFormat::Auto);
        assert_eq!(run(&["--summary", "kv"]).summary, SummaryFormat::Kv);
        assert_eq!(run(&["--generate", "zsh"]).generate, Some(Generated::Zsh));
        assert!(invalid(&["--summary", "pretty"]).contains("allowed: auto, human, kv"));
    }

    /// The library names `Config` fields; the binary's message names the flag instead.
    #[test]
    fn refused_configurations_name_the_flag() {
        let error = ServerError::Config(ConfigError::MaxPendingTooSmall);
        assert!(error.to_string().contains("max_pending"), "{error}");
        assert_eq!(
            explain(&error),
            "invalid configuration: --max-pending must be at least 64K (one read's worth of echo)"
        );
        let zero = ServerError::Config(ConfigError::ZeroStatsInterval);
        assert!(explain(&zero).contains("--stats-interval"));
    }
}
