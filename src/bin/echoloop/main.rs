//! The `echoloop` binary: parse flags, bind, print the addresses, run until a signal, print
//! the summary. Everything else lives in the library.
//!
//! Exit codes: 0 after a graceful shutdown; 2 for bad flags or a failure to bind (port in use,
//! privileged port, unknown address); 1 for a failure while running; 130 when a second signal
//! cuts the drain short.

use std::io::Write;
use std::process::ExitCode;

mod cli;
mod listening;
mod logging;

use cli::Parsed;
use echoloop::{Server, ShutdownHandle};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args_os()) {
        Parsed::Run(cli) => cli,
        Parsed::Print(text) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Parsed::Invalid(message) => return fail(&message, 2),
    };
    let sink = cli.log_sink();
    if let Err(message) = logging::init(cli.log_level, &sink) {
        return fail(&message, 2);
    }
    let to_syslog = sink != logging::Sink::Stderr;
    let config = match cli.to_config() {
        Ok(config) => config,
        Err(message) => return fail_logged(&message, 2, to_syslog),
    };
    let server = match Server::bind(config) {
        Ok(server) => server,
        Err(e) => return fail_logged(&e.to_string(), 2, to_syslog),
    };
    // Handlers first: a script may signal us as soon as it has read the address line.
    if let Err(e) = forward_signals(server.shutdown_handle()) {
        return fail_logged(
            &format!("cannot install signal handlers: {e}"),
            1,
            to_syslog,
        );
    }
    // One line a script can read to learn the ports (use with --port 0).
    let listening = listening::line(&server.endpoints());
    println!("{listening}");
    let _ = std::io::stdout().flush();
    log::info!("started (pid {}): {listening}", std::process::id());
    match server.run() {
        Ok(stats) => {
            println!("summary {stats}");
            log::info!("stopped: summary {stats}");
            ExitCode::SUCCESS
        }
        Err(e) => fail_logged(&e.to_string(), 1, to_syslog),
    }
}

/// The one-line failure on stderr, and the exit code.
fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("echoloop: {message}");
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

/// The first SIGINT/SIGTERM starts a graceful shutdown; a second one exits at once.
fn forward_signals(handle: ShutdownHandle) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut received = 0;
            for signal in signals.forever() {
                received += 1;
                if received == 1 {
                    log::info!("signal {signal}: shutting down (send it again to exit at once)");
                    handle.shutdown();
                } else {
                    eprintln!("echoloop: second signal, exiting without draining");
                    std::process::exit(130);
                }
            }
        })?;
    Ok(())
}
