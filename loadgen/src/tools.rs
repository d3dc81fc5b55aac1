//! The `ping` and `time` subcommands: their flags and how their results become output and
//! exit codes. The work is in the library (`ping`, `time_client`); this keeps `main.rs`
//! to one line per tool.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use clap::{Args, ValueEnum};
use echoloop::service::time::Epoch;
use echoloop_bench::options::{parse_duration, parse_size};
use echoloop_bench::ping::{self, PingOptions};
use echoloop_bench::report::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use echoloop_bench::time_client::{self, TimeOptions};

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.0)
}

/// Flags of `ping`.
#[derive(Debug, Args)]
pub struct PingArgs {
    /// Messages to send [default: 5]. `-c N` says the same, as for ping(1): ping uses one
    /// connection, so the global `-c` is its count.
    #[arg(short = 'n', long)]
    count: Option<u64>,
    /// Time between sends.
    #[arg(short = 'i', long, default_value = "1s", value_parser = duration)]
    interval: Duration,
    /// How long to wait for each echo.
    #[arg(short = 'W', long, default_value = "1s", value_parser = duration)]
    timeout: Duration,
    /// Ping over UDP instead of TCP.
    #[arg(long)]
    udp: bool,
}

/// The server's epoch for `time`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Service {
    /// Seconds since 1970 (the tutorials' server, echoloop --listen unixtime=...).
    Unixtime,
    /// Seconds since 1900 (RFC 868, echoloop --listen time=...).
    Time,
}

/// Flags of `time`.
#[derive(Debug, Args)]
pub struct TimeArgs {
    /// What the server sends.
    #[arg(long, value_enum, default_value = "unixtime")]
    service: Service,
    /// Ask over TCP instead of UDP.
    #[arg(long)]
    tcp: bool,
    /// Compare with the local clock; fail when they differ by more than --tolerance.
    #[arg(long)]
    check: bool,
    /// Largest accepted difference for --check.
    #[arg(long, default_value = "2s", value_parser = duration)]
    tolerance: Duration,
    /// How long to wait for the answer.
    #[arg(short = 'W', long, default_value = "2s", value_parser = duration)]
    timeout: Duration,
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(code as u8)
}

/// Runs `ping` until done or `stop` is raised; returns its exit code (1 when any echo is
/// missing or wrong) and whether it was stopped. `count_from_c` is the global `-c`, when
/// given: ping's count, as in ping(1).
pub fn ping(
    args: &PingArgs,
    target: SocketAddr,
    size: &str,
    count_from_c: Option<u64>,
    stop: &AtomicBool,
) -> (i32, bool) {
    let size = match parse_size(size) {
        Ok(size) if size >= ping::MIN_SIZE => size,
        _ => {
            eprintln!(
                "echoloop-bench: ping needs one --size of at least {} bytes",
                ping::MIN_SIZE
            );
            return (EXIT_USAGE, false);
        }
    };
    let count = args.count.or(count_from_c).unwrap_or(5);
    if count == 0 {
        eprintln!("echoloop-bench: --count must be at least 1");
        return (EXIT_USAGE, false);
    }
    let options = PingOptions {
        target,
        udp: args.udp,
        count,
        interval: args.interval,
        size,
        timeout: args.timeout,
    };
    let code = match ping::run(&options, &mut std::io::stdout(), stop) {
        Ok(tally) if tally.all_echoed() => EXIT_OK,
        Ok(_) => EXIT_FAILED,
        Err(e) => {
            eprintln!("echoloop-bench: ping {target}: {e}");
            EXIT_FAILED
        }
    };
    (code, stop.load(Relaxed))
}

/// Runs `time`; exit 1 on no answer, a bad answer, or (with --check) a clock too far off.
pub fn time(args: &TimeArgs, target: SocketAddr) -> ExitCode {
    let options = TimeOptions {
        target,
        tcp: args.tcp,
        epoch: match args.service {
            Service::Unixtime => Epoch::Unix,
            Service::Time => Epoch::Rfc868,
        },
        timeout: args.timeout,
    };
    let server = match time_client::ask(&options) {
        Ok(secs) => secs,
        Err(e) => {
            eprintln!("echoloop-bench: {e}");
            return exit(EXIT_FAILED);
        }
    };
    println!("{}", time_client::ctime(server));
    if !args.check {
        return exit(EXIT_OK);
    }
    let offset = time_client::offset_from_local(server, SystemTime::now());
    let within = offset.unsigned_abs() <= args.tolerance.as_secs();
    println!(
        "offset {offset:+} s from the local clock ({} within {} s)",
        if within { "ok," } else { "NOT" },
        args.tolerance.as_secs()
    );
    exit(if within { EXIT_OK } else { EXIT_FAILED })
}
