//! The `echoloop` binary: parse flags, raise the open-file limit, bind `--threads` reactors,
//! print the addresses, run until a signal, print the summary. Everything else lives in the
//! library.
//!
//! Exit codes: 0 after a graceful shutdown; 2 for bad flags or a failure to bind (port in use,
//! privileged port, unknown address); 1 for a failure while running; 130 when a second signal
//! cuts the drain short.
//!
//! stdout may be a pipe that a script closes once it has read the `listening` line (`echoloop
//! --port 0 | head -1`). Rust's runtime sets SIGPIPE to "ignore" before `main`, so a write to
//! it fails with EPIPE instead of killing the process; every write here goes through [`emit`],
//! which reports that failure instead of panicking as `println!` would, and the exit code stays
//! the documented one.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

mod cli;
mod generate;
mod listen_flag;
mod listening;
mod logging;
mod summary;

use cli::{Parsed, SummaryFormat};
use echoloop::{ReportHandle, ServerGroup, ShutdownHandle, Stats};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args_os()) {
        Parsed::Run(cli) => cli,
        Parsed::Print(text) => {
            emit(text.trim_end());
            return ExitCode::SUCCESS;
        }
        Parsed::Invalid(message) => return fail(&message, 2),
    };
    if let Some(what) = cli.generate {
        return match generate::generate(what, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("cannot write {what:?}: {e}"), 1),
        };
    }
    let sink = cli.log_sink();
    if let Err(message) = logging::init(cli.log_level.map(cli::LogLevel::filter), &sink) {
        return fail(&message, 2);
    }
    let to_syslog = sink != logging::Sink::Stderr;
    // Before the config: the default connection limit follows the raised limit.
    let raised = match cli.no_raise_nofile {
        true => None,
        false => Some(echoloop::descriptors::raise_open_file_limit()),
    };
    let config = match cli.to_config() {
        Ok(config) => config,
        Err(message) => return fail_logged(&message, 2, to_syslog),
    };
    let server = match ServerGroup::bind(config, cli.threads.0) {
        Ok(server) => server.pin_to_cores(cli.pin),
        Err(e) => return fail_logged(&cli::explain(&e), 2, to_syslog),
    };
    // Logged once bound, so that a server that cannot start prints only why.
    match raised {
        None => log::info!("open-file limit left as it is (--no-raise-nofile)"),
        Some(Ok(raise)) => log::info!("{raise}"),
        Some(Err(e)) => log::warn!("cannot raise the open-file limit: {e}"),
    }
    // Handlers first: a script may signal us as soon as it has read the address line.
    if let Err(e) = forward_signals(server.shutdown_handle(), server.report_handle()) {
        return fail_logged(
            &format!("cannot install signal handlers: {e}"),
            1,
            to_syslog,
        );
    }
    // One line a script can read to learn the ports (use with --port 0).
    let listening = listening::line(&server.endpoints(), server.metrics_addr());
    emit(&listening);
    log::info!(
        "started on host {} (pid {}, reactors {}): {listening}",
        echoloop::metrics::exposition::host_name(),
        std::process::id(),
        server.reactors()
    );
    match server.run() {
        Ok(stats) => {
            emit(&render_summary(&stats, cli.summary));
            // The summary on a terminal is the one a person reads; the same counters again as
            // one log line of some sixty fields on that terminal would only bury it. Logs a
            // script or syslog keeps carry the key=value line.
            let on_one_terminal =
                !to_syslog && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
            match on_one_terminal {
                true => log::info!("stopped (summary above)"),
                false => log::info!("stopped: summary {stats}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail_logged(&e.to_string(), 1, to_syslog),
    }
}

/// The exit summary in the chosen format; `auto` means the block on a terminal only.
fn render_summary(stats: &Stats, format: SummaryFormat) -> String {
    let human = match format {
        SummaryFormat::Auto => std::io::stdout().is_terminal(),
        SummaryFormat::Human => true,
        SummaryFormat::Kv => false,
    };
    if human {
        summary::human(stats).trim_end().to_string()
    } else {
        format!("summary {stats}")
    }
}

/// Writes one line to stdout and flushes it. A closed stdout (EPIPE) is not an error of the
/// server: it is logged at debug level once per line and the server carries on.
fn emit(line: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        log::debug!("stdout: {e} (line not printed)");
    }
}

/// The one-line failure on stderr, and the exit code.
fn fail(message: &str, code: u8) -> ExitCode {
    // stderr closed too: nothing left to tell; the exit code still says it.
    let _ = writeln!(std::io::stderr(), "echoloop: {message}");
    ExitCode::from(code)
}

/// [`fail`], and the same as an error record when records go to syslog (on stderr the line
/// is said once).
fn fail_logged(message: &str, code: u8, to_syslog: bool) -> ExitCode {
    if to_syslog {
        log::error!("{message}");
    }
    fail(message, code)
}

/// SIGINT, SIGTERM and SIGHUP (the terminal went away) start a graceful shutdown; a second one
/// exits at once. SIGUSR1 asks for a report and changes nothing else.
///
/// A stop signal within [`SAME_REQUEST`] of the first counts as the same request: `timeout(1)`
/// signals both its child and the child's process group, so one timeout delivers SIGTERM
/// twice within microseconds, and that must not cut the drain short.
fn forward_signals(shutdown: ShutdownHandle, report: ReportHandle) -> std::io::Result<()> {
    const SAME_REQUEST: Duration = Duration::from_millis(100);
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut first_stop: Option<Instant> = None;
            for signal in signals.forever() {
                if signal == SIGUSR1 {
                    report.request();
                    continue;
                }
                match first_stop {
                    None => {
                        first_stop = Some(Instant::now());
                        log::info!(
                            "signal {signal}: shutting down (send it again to exit at once)"
                        );
                        shutdown.shutdown();
                    }
                    Some(at) if at.elapsed() < SAME_REQUEST => {
                        log::debug!("signal {signal} again at once: same shutdown request");
                    }
                    Some(_) => {
                        let _ = writeln!(
                            std::io::stderr(),
                            "echoloop: second signal, exiting without draining"
                        );
                        std::process::exit(130);
                    }
                }
            }
        })?;
    Ok(())
}
