//! `echoloop-bench`: load generator for TCP and UDP echo servers (RFC 862).
//!
//! Thin on purpose: parse flags (clap) -> [`Options`] -> [`loadgen::run`] -> print -> exit
//! code. All behaviour lives in `echoloop::loadgen`.
//!
//! Exit codes: see [`AFTER_HELP`] (and the table in docs/load-testing.md).
//!
//! Signals: the first SIGINT/SIGTERM stops the run (or the knee search) and the report for
//! the time it ran is printed, marked interrupted; a second one exits at once.

mod check_cmd;

use clap::{Parser, Subcommand};
use echoloop_bench::knee::{self, KneeConfig};
use echoloop_bench::options::{self, parse_duration, parse_rate, parse_size};
use echoloop_bench::report::{EXIT_FAILED, EXIT_SIGNAL_BASE, EXIT_USAGE};
use echoloop_bench::{self as loadgen, histogram, merge, IntervalRow, LoadgenError, Mode, Options};
use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// Connections (or sockets, or churn loops) when `-c` is not given.
const DEFAULT_CONNECTIONS: usize = 50;
use std::time::Duration;

mod tools;

const AFTER_HELP: &str = "\
Sizes: 64, 1K, 64K, 1M, or a range 64..4K (a random size per message).
Durations: 10s, 500ms, 2m, 1m30s, or a plain number of seconds.

Every echoed byte is checked against what was sent. Exit codes:
  0   success
  1   verification failure (corrupted, lost or extra bytes or datagrams), or no
      connection at all
  2   usage error
  3   UDP loss above --max-loss
  4   more failed connects than --max-connect-errors
  5   knee: no rate tried met the p99 target
  130/143  stopped by SIGINT/SIGTERM (report printed) when nothing above applies
The first SIGINT or SIGTERM stops the run and prints the report for the time it
ran; a second one exits at once.";

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
    #[arg(short = 't', long, global = true, default_value_t = 1)]
    threads: usize,

    /// Connections (TCP), sockets (UDP), or concurrent connect/echo/close loops (churn)
    /// [default: 50]; for `ping`, the number of messages, as in ping(1).
    #[arg(short = 'c', long, global = true)]
    connections: Option<usize>,

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

    /// Print a line per interval (rate, throughput, p50/p99, errors; on stderr with --json)
    /// and put the series in the JSON.
    #[arg(long, global = true, value_name = "DURATION", value_parser = duration)]
    interval: Option<Duration>,

    /// Write the full latency histogram to FILE: an HdrHistogram interval log if FILE ends
    /// in .hlog, else the percentile distribution (.hgrm, as wrk2 -U prints it).
    #[arg(long, global = true, value_name = "FILE")]
    histogram: Option<std::path::PathBuf>,

    /// UDP: loss (percent of datagrams sent) above which the exit code is 3
    /// [default: 0 on a loopback target, 1 elsewhere].
    #[arg(long, global = true, value_name = "PERCENT")]
    max_loss: Option<f64>,

    /// Failed connects tolerated before the exit code is 4.
    #[arg(long, global = true, value_name = "N", default_value_t = 0)]
    max_connect_errors: u64,

    /// Open loop: stop sleeping this long before each send deadline and poll without
    /// blocking, for precise send times (0 = timer only, less CPU).
    #[arg(long, global = true, value_name = "DURATION", default_value = "100us", value_parser = duration)]
    spin: Duration,

    /// Wait until this wall-clock time before connecting (RFC 3339 such as
    /// 2026-12-06T03:00:00Z, or Unix seconds), so that generators on several machines
    /// measure together; `merge` checks that their windows overlap.
    #[arg(long, global = true, value_name = "TIME", value_parser = start_at)]
    start_at: Option<std::time::SystemTime>,
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
    /// Find the highest open-loop rate whose p99 stays under a target: raise the rate
    /// step by step, then bisect. Each step lasts --step-duration.
    Knee(KneeArgs),
    /// Combine JSON reports of concurrent runs (several processes or machines) exactly:
    /// counts summed, histograms added, percentiles from the sum.
    Merge {
        /// JSON reports written with --json.
        #[arg(required = true, value_name = "REPORT.json")]
        files: Vec<std::path::PathBuf>,
    },
    /// Conformance battery: is the server a correct echo before you measure it? One line
    /// per check (PASS/FAIL/SKIP), exit 1 on any failure. Uses --target, --seed, --json.
    Check(check_cmd::CheckArgs),
    /// Tool: send --count messages at an interval, check each echo, print RTTs as ping does.
    Ping(tools::PingArgs),
    /// Tool: ask a time (RFC 868) or unixtime server and print the date.
    Time(tools::TimeArgs),
}

#[derive(Debug, clap::Args)]
struct KneeArgs {
    /// The p99 latency (corrected) a rate must stay at or under.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    p99: Duration,
    /// Search with rate-paced UDP datagrams instead of TCP rate mode.
    #[arg(long)]
    udp: bool,
    /// First rate tried, per second.
    #[arg(long, default_value = "1000", value_parser = rate)]
    start_rate: f64,
    /// Highest rate tried, per second.
    #[arg(long, default_value = "10M", value_parser = rate)]
    max_rate: f64,
    /// Length of each step (measured).
    #[arg(long, default_value = "2s", value_parser = duration)]
    step_duration: Duration,
    /// Unmeasured time at the start of each step, while connections come up.
    #[arg(long, default_value = "500ms", value_parser = duration)]
    step_warmup: Duration,
    /// Stop bisecting when the passing and failing rates are this close (fraction).
    #[arg(long, default_value_t = 0.05)]
    precision: f64,
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
fn start_at(s: &str) -> Result<std::time::SystemTime, String> {
    loadgen::start_at::parse(s).map_err(|e| e.0)
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
            // clap's own message is several lines; keep the first, which says what is wrong,
            // and for a missing argument the next ones too, which name it.
            let text = e.render().to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let first = lines.next().unwrap_or("invalid arguments");
            let first = first.trim_start_matches("error: ");
            if e.kind() == MissingRequiredArgument {
                let names: Vec<&str> = lines.take_while(|l| !l.starts_with("Usage:")).collect();
                return usage_error(&format!("missing {}", names.join(", ")));
            }
            return usage_error(first);
        }
    };
    let target = match resolve(&cli.target) {
        Ok(t) => t,
        Err(msg) => return usage_error(&msg),
    };
    match &cli.mode {
        ModeCmd::Ping(args) => {
            let count_from_c = cli.connections.map(|c| c as u64);
            let stop = Stop::install();
            let (code, interrupted) =
                tools::ping(args, target, &cli.size, count_from_c, &stop.flag);
            return stop.exit_code(code, interrupted);
        }
        ModeCmd::Time(args) => return tools::time(args, target),
        _ => {}
    }
    let stop = Stop::install();
    let mode = match cli.mode {
        ModeCmd::Merge { ref files } => return merge_files(files, cli.json),
        ModeCmd::Knee(ref k) => Mode::Rate { rate: k.start_rate },
        ModeCmd::Pingpong => Mode::PingPong,
        ModeCmd::Pipeline { depth } => Mode::Pipeline { depth },
        ModeCmd::Stream { window } => Mode::Stream { window },
        ModeCmd::Rate { rate } => Mode::Rate { rate },
        ModeCmd::Churn => Mode::Churn,
        ModeCmd::Udp { rate, window, .. } => Mode::Udp { window, rate },
        ModeCmd::Ping(_) | ModeCmd::Time(_) => unreachable!("tools returned above"),
        ModeCmd::Check(ref args) => return check_cmd::run(args, target, cli.seed, cli.json),
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
    opts.connections = cli.connections.unwrap_or(DEFAULT_CONNECTIONS);
    opts.duration = cli.duration;
    opts.warmup = cli.warmup;
    opts.connect_rate = cli.connect_rate;
    opts.drain_timeout = cli.drain_timeout;
    opts.connect_timeout = cli.connect_timeout;
    opts.seed = cli.seed;
    opts.progress = !cli.quiet && std::io::stderr().is_terminal();
    opts.command_line = command_line();
    opts.interval = cli.interval;
    opts.max_loss = cli.max_loss;
    opts.max_connect_errors = cli.max_connect_errors;
    opts.spin = cli.spin;
    opts.start_at = cli.start_at;
    if let ModeCmd::Knee(k) = &cli.mode {
        opts.duration = k.step_duration;
        opts.warmup = k.step_warmup;
        opts.progress = false;
        // The search starts together with its peers; its steps then follow one another.
        if let Some(at) = opts.start_at.take() {
            loadgen::start_at::wait_until(at, &stop.flag, Duration::from_millis(50));
        }
        return run_knee(&opts, k, cli.json, &stop);
    }

    let mut show = interval_printer(opts.interval.is_some(), opts.progress, cli.json);
    let report = match loadgen::run_until(&opts, &stop.flag, &mut show) {
        Ok(r) => r,
        Err(LoadgenError::Options(e)) => return usage_error(&e.0),
        Err(e) => {
            eprintln!("echoloop-bench: {e}");
            return ExitCode::from(EXIT_FAILED as u8);
        }
    };
    if opts.progress && opts.interval.is_none() {
        eprintln!();
    }
    if cli.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.human());
    }
    if let Some(path) = &cli.histogram {
        if let Err(e) = write_histogram(path, &report) {
            eprintln!("echoloop-bench: cannot write {}: {e}", path.display());
            return ExitCode::from(EXIT_FAILED as u8);
        }
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
    if report.interrupted {
        eprintln!("echoloop-bench: interrupted: the report covers the time the run lasted");
    }
    stop.exit_code(report.exit_code(), report.interrupted)
}

/// The signal wiring: the first SIGINT/SIGTERM raises `flag` (the run stops and reports),
/// the second exits at once with 128 + the signal.
struct Stop {
    flag: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl Stop {
    fn install() -> Stop {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::flag;
        let stop = Stop {
            flag: Arc::new(AtomicBool::new(false)),
            signal: Arc::new(AtomicUsize::new(0)),
        };
        for sig in [SIGINT, SIGTERM] {
            // Order matters: the exit is armed only once the flag is already set, i.e. on
            // the second signal.
            let wired =
                flag::register_conditional_shutdown(sig, EXIT_SIGNAL_BASE + sig, stop.flag.clone())
                    .and_then(|_| flag::register_usize(sig, stop.signal.clone(), sig as usize))
                    .and_then(|_| flag::register(sig, stop.flag.clone()));
            if let Err(e) = wired {
                log::warn!("cannot handle signal {sig}: {e}");
            }
        }
        stop
    }

    /// The run's own exit code, or 128 + signal for an interrupted run that is otherwise
    /// clean.
    fn exit_code(&self, code: i32, interrupted: bool) -> ExitCode {
        let signal = self.signal.load(Relaxed) as i32;
        if code == 0 && interrupted && signal > 0 {
            ExitCode::from((EXIT_SIGNAL_BASE + signal) as u8)
        } else {
            ExitCode::from(code as u8)
        }
    }
}

/// Where interval rows go: with `--interval`, a line each on stdout (stderr under
/// `--json`, so stdout stays one JSON object); otherwise the live line on a terminal.
fn interval_printer(interval: bool, progress: bool, json: bool) -> impl FnMut(&IntervalRow) {
    use std::io::Write;
    move |row: &IntervalRow| {
        if interval && json {
            eprintln!("{}", row.line());
        } else if interval {
            println!("{}", row.line());
        } else if progress {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{}   ", row.line());
            let _ = err.flush();
        }
    }
}

fn write_histogram(path: &std::path::Path, report: &loadgen::Report) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let s = &report.stats;
    if path.extension().is_some_and(|e| e == "hlog") {
        let open_loop = matches!(
            report.options.mode,
            Mode::Rate { .. } | Mode::Udp { rate: Some(_), .. }
        );
        histogram::write_log(
            &s.latency,
            open_loop.then_some(&s.latency_uncorrected),
            report.run.started_at,
            report.options.warmup,
            report.measured,
            &mut file,
        )?;
    } else {
        histogram::write_percentiles(&s.latency, &mut file)?;
    }
    std::io::Write::flush(&mut file)
}

/// `merge`: reads the reports, prints the merged one.
fn merge_files(files: &[std::path::PathBuf], json: bool) -> ExitCode {
    let mut runs = Vec::new();
    for f in files {
        let name = f.display().to_string();
        let parsed = std::fs::read_to_string(f)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| format!("not JSON: {e}")));
        match parsed {
            Ok(v) => runs.push((name, v)),
            Err(e) => return usage_error(&format!("{name}: {e}")),
        }
    }
    match merge::merge(&runs) {
        Ok(m) => {
            for warning in m["merged"]["warnings"].as_array().into_iter().flatten() {
                eprintln!("echoloop-bench: merge: {}", warning.as_str().unwrap_or(""));
            }
            if json {
                println!("{m}");
            } else {
                print!("{}", merge::human(&m));
            }
            let code = m["exit_code"].as_i64().unwrap_or(0);
            ExitCode::from(u8::try_from(code).unwrap_or(EXIT_FAILED as u8))
        }
        Err(e) => usage_error(&e),
    }
}

/// `knee`: the search, a line per step on stderr, then the result.
fn run_knee(opts: &Options, k: &KneeArgs, json: bool, stop: &Stop) -> ExitCode {
    let mut cfg = KneeConfig::new(k.p99);
    cfg.start_rate = k.start_rate;
    cfg.max_rate = k.max_rate;
    cfg.precision = k.precision;
    let started = std::time::SystemTime::now();
    let mut show = |s: &knee::Step| eprintln!("{}", knee::step_line(s));
    let result = knee::find(opts, k.udp, &cfg, &stop.flag, &mut show);
    let found = match result {
        Ok(found) => found,
        Err(LoadgenError::Options(e)) => return usage_error(&e.0),
        Err(e) => {
            eprintln!("echoloop-bench: {e}");
            return ExitCode::from(EXIT_FAILED as u8);
        }
    };
    if json {
        let run = loadgen::RunInfo::collect(&opts.command_line, started).to_json();
        println!("{}", knee::to_json(&found, opts, k.udp, &cfg, run));
    } else {
        print!("{}", knee::human(&found, &cfg));
    }
    stop.exit_code(found.exit_code(), found.interrupted)
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

    /// `-c` is the connection count, and for `ping` its message count (as in ping(1)).
    #[test]
    fn c_counts_connections_or_pings() {
        let cli = Cli::try_parse_from(["b", "ping", "-c", "3"]).unwrap();
        assert_eq!(cli.connections, Some(3));
        assert!(matches!(cli.mode, ModeCmd::Ping(_)));
        let cli = Cli::try_parse_from(["b", "pingpong"]).unwrap();
        assert_eq!(cli.connections, None, "the default (50) is applied later");
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
