//! The `check` subcommand's flags and its run: maps flags onto
//! [`echoloop_bench::check::CheckOptions`], runs the battery, prints one line per check (or
//! one JSON object) and returns the exit code (0 all passed, 1 a check failed, 2 usage).

use clap::Args;
use echoloop_bench::check::{self, CheckOptions};
use echoloop_bench::report::EXIT_USAGE;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// Flags of `echoloop-bench check` (besides the global `--target`, `--seed` and `--json`).
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also check UDP echo on the same port.
    #[arg(long)]
    pub udp: bool,
    /// The small battery: seconds instead of under a minute.
    #[arg(long)]
    pub quick: bool,
    /// Longest wait for any one read, write or connect (default 2s with --quick, else 5s).
    #[arg(long, value_parser = super::duration)]
    pub timeout: Option<Duration>,
    /// Run only these checks, comma-separated (e.g. crosstalk,half-close).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub only: Vec<String>,
}

/// Runs the battery against `target`; prints the report on stdout.
pub fn run(args: &CheckArgs, target: SocketAddr, seed: u64, json: bool) -> ExitCode {
    let opts = CheckOptions {
        target,
        udp: args.udp,
        quick: args.quick,
        seed,
        timeout: args.timeout,
        only: args.only.clone(),
    };
    let report = match check::run(&opts) {
        Ok(r) => r,
        Err(msg) => {
            eprintln!("echoloop-bench: {msg}");
            return ExitCode::from(EXIT_USAGE as u8);
        }
    };
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.human());
    }
    ExitCode::from(report.exit_code() as u8)
}
