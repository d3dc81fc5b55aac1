//! `echoloop-bench`: load generator for TCP and UDP echo servers (RFC 862).
//!
//! Thin on purpose: parse flags (clap) -> [`Options`] -> [`loadgen::run`] -> print -> exit
//! code. All behaviour lives in `echoloop::loadgen`.
//!
//! Exit codes: 0 clean run; 1 verification failed (mismatch, lost or extra bytes, corrupted
//! datagram) or nothing could connect; 2 usage error (bad flag or target).

use clap::{Parser, Subcommand};
use echoloop_bench::options::{self, parse_duration, parse_rate, parse_size};
use echoloop_bench::report::{EXIT_FAILED, EXIT_USAGE};
use echoloop_bench::{self as loadgen, LoadgenError, Mode, Options};
use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

mod tools;

const AFTER_HELP: &str = "\
Sizes: 64, 1K, 64K, 1M, or a range 64..4K (a random size per message).
Durations: 10s, 500ms, 2m, or a plain number of seconds.

Every echoed byte is checked against what was sent. Exit codes: 0 success,
1 verification failure (mismatch, lost or extra bytes) or no connection at all,
2 usage error.";

/// Load generator for echo servers: closed-loop, pipelined, streaming, open-loop (rate),
/// connection churn and UDP, with every echoed byte verified.
#[derive(Debug, Parser)]
#[command(name = "echoloop-bench", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    mode: ModeCmd,

    /// Echo server address.
    #[arg(
        long,
        global = true,
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:7007"
    )]
    target: String,

    /// Worker threads, each with its own poll loop and a share of the connections.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,

    /// Connections (TCP), sockets (UDP), or concurrent connect/echo/close loops (churn).
    #[arg(short = 'c', long, global = true, default_value_t = 50)]
    connections: usize,

    /// Message size: 64, 1K, 64K, 1M, or a range such as 64..4K.
    #[arg(long, global = true, default_value = "64", value_parser = check_size)]
    size: String,

    /// Measured time: 10s, 500ms, or a number of seconds.
    #[arg(short = 'd', long, global = true, default_value = "10s", value_parser = duration)]
    duration: Duration,

    /// Time before measuring starts (traffic flows and is verified, but not measured).
    #[arg(long, global = true, default_value = "0s", value_parser = duration)]
    warmup: Duration,

    /// New connections per second across all threads (default: as fast as possible).
    #[arg(long, global = true, value_name = "PER_SEC", value_parser = rate)]
    connect_rate: Option<f64>,

    /// After the run, how long echoes may stop arriving before the rest counts as lost
    /// (the wait extends while echoes keep arriving, up to 10 times this).
    #[arg(long, global = true, default_value = "2s", value_parser = duration)]
    drain_timeout: Duration,

    /// Abandon (and count) a connect that takes longer than this.
    #[arg(long, global = true, default_value = "5s", value_parser = duration)]
    connect_timeout: Duration,

    /// Seed for payloads and random sizes.
    #[arg(long, global = true, default_value_t = 0x5eed)]
    seed: u64,

    /// Print one JSON object on stdout instead of the human summary.
    #[arg(long, global = true)]
    json: bool,

    /// No progress line on stderr (it is only shown on a terminal anyway).
    #[arg(short = 'q', long, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum ModeCmd {
    /// One message in flight per connection (closed loop).
    Pingpong,
    /// Several messages in flight per connection (closed loop).
    Pipeline {
        /// Messages in flight per connection.
        #[arg(long, default_value_t = 16)]
        depth: usize,
    },
    /// Continuous writing and reading; reports throughput.
    Stream {
        /// Bytes in flight per connection.
        #[arg(long, default_value = "256K", value_parser = size)]
        window: usize,
    },
    /// Open loop at a fixed total rate; latency from the intended send time.
    Rate {
        /// Messages per second across all connections (1000, 50k, 1.5M).
        #[arg(long, value_parser = rate)]
        rate: f64,
    },
    /// Connect, one echo, close, repeat; reports connections per second.
    Churn,
    /// Datagrams with sequence numbers; reports loss, duplicates and reordering.
    Udp {
        /// Datagrams per second across all sockets (open loop); default: window pacing.
        #[arg(long, value_parser = rate)]
        rate: Option<f64>,
        /// Outstanding datagrams per socket when not rate-paced.
        #[arg(long, default_value_t = 1)]
        window: usize,
        /// A datagram unanswered this long frees its window slot (it may still arrive).
        #[arg(long, default_value = "500ms", value_parser = duration)]
        loss_timeout: Duration,
    },
    /// Tool: send --count messages at an interval, check each echo, print RTTs as ping does.
    Ping(tools::PingArgs),
    /// Tool: ask a time (RFC 868) or unixtime server and print the date.
    Time(tools::TimeArgs),
}

fn check_size(s: &str) -> Result<String, String> {
    options::parse_size_spec(s)
        .map(|_| s.to_string())
        .map_err(|e| e.0)
}
fn size(s: &str) -> Result<usize, String> {
    parse_size(s).map_err(|e| e.0)
}
fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.0)
}
fn rate(s: &str) -> Result<f64, String> {
    parse_rate(s).map_err(|e| e.0)
}

/// Prints `echoloop-bench: <message>` on one line and returns the usage exit code.
fn usage_error(message: &str) -> ExitCode {
    eprintln!("echoloop-bench: {message} (try 'echoloop-bench --help')");
    ExitCode::from(EXIT_USAGE as u8)
}

fn resolve(target: &str) -> Result<SocketAddr, String> {
    let hint = "expected HOST:PORT, e.g. 127.0.0.1:7007";
    match target.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("--target '{target}' resolves to no address")),
        Err(e) => Err(format!("invalid --target '{target}': {e} ({hint})")),
    }
}

/// The command line as typed, with arguments containing spaces quoted.
fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if a.contains(char::is_whitespace) || a.is_empty() {
                format!("'{a}'")
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(
                e.kind(),
                DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::from(e.exit_code() as u8);
            }
            // clap's own message is several lines; keep the first, which says what is wrong.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            return usage_error(first.trim_start_matches("error: "));
        }
    };
    let target = match resolve(&cli.target) {
        Ok(t) => t,
        Err(msg) => return usage_error(&msg),
    };
    match &cli.mode {
        ModeCmd::Ping(args) => return tools::ping(args, target, &cli.size),
        ModeCmd::Time(args) => return tools::time(args, target),
        _ => {}
    }
    let mode = match cli.mode {
        ModeCmd::Pingpong => Mode::PingPong,
        ModeCmd::Pipeline { depth } => Mode::Pipeline { depth },
        ModeCmd::Stream { window } => Mode::Stream { window },
        ModeCmd::Rate { rate } => Mode::Rate { rate },
        ModeCmd::Churn => Mode::Churn,
        ModeCmd::Udp { rate, window, .. } => Mode::Udp { window, rate },
        ModeCmd::Ping(_) | ModeCmd::Time(_) => unreachable!("tools returned above"),
    };
    let mut opts = Options::new(mode, target);
    if let ModeCmd::Udp { loss_timeout, .. } = cli.mode {
        opts.loss_timeout = loss_timeout;
    }
    opts = match opts.with_size(&cli.size) {
        Ok(o) => o,
        Err(e) => return usage_error(&e.0),
    };
    opts.threads = cli.threads;
    opts.connections = cli.connections;
    opts.duration = cli.duration;
    opts.warmup = cli.warmup;
    opts.connect_rate = cli.connect_rate;
    opts.drain_timeout = cli.drain_timeout;
    opts.connect_timeout = cli.connect_timeout;
    opts.seed = cli.seed;
    opts.progress = !cli.quiet && std::io::stderr().is_terminal();
    opts.command_line = command_line();

    let report = match loadgen::run(&opts) {
        Ok(r) => r,
        Err(LoadgenError::Options(e)) => return usage_error(&e.0),
        Err(e) => {
            eprintln!("echoloop-bench: {e}");
            return ExitCode::from(EXIT_FAILED as u8);
        }
    };
    if cli.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.human());
    }
    let e = &report.stats.errors;
    if e.connect + e.io > 0 {
        eprintln!(
            "echoloop-bench: warning: {} connect errors, {} i/o errors",
            e.connect, e.io
        );
    }
    if let Some(why) = report.failure() {
        eprintln!("echoloop-bench: {why}");
    }
    ExitCode::from(report.exit_code() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_map_onto_modes() {
        let cli =
            Cli::try_parse_from(["b", "pipeline", "--depth", "4", "--size", "64..4K"]).unwrap();
        assert!(matches!(cli.mode, ModeCmd::Pipeline { depth: 4 }));
        assert_eq!(cli.size, "64..4K");
        let cli =
            Cli::try_parse_from(["b", "--duration", "500ms", "rate", "--rate", "10k"]).unwrap();
        assert_eq!(cli.duration, Duration::from_millis(500));
        assert!(matches!(cli.mode, ModeCmd::Rate { rate } if rate == 10_000.0));
        assert!(
            Cli::try_parse_from(["b", "rate"]).is_err(),
            "--rate is required"
        );
        assert!(Cli::try_parse_from(["b", "pingpong", "--size", "1X"]).is_err());
        assert!(Cli::try_parse_from(["b", "pingpong", "--duration", "soon"]).is_err());
    }

    #[test]
    fn targets_resolve() {
        assert_eq!(
            resolve("127.0.0.1:7007"),
            Ok("127.0.0.1:7007".parse().unwrap())
        );
        assert_eq!(resolve("[::1]:7"), Ok("[::1]:7".parse().unwrap()));
        assert!(resolve("127.0.0.1").is_err());
        assert!(resolve("nonsense").is_err());
    }
}
