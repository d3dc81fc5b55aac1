//! The `echoloop` binary: parse flags, raise the open-file limit, bind `--threads` reactors,
//! print the addresses, run until a signal, print the summary. Everything else lives in the
//! library.
//!
//! Exit codes: 0 after a graceful shutdown; 2 for bad flags or a failure to bind (port in use,
//! privileged port, unknown address); 1 for a failure while running; 130 when a second signal
//! cuts the drain short.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

mod cli;

use cli::Parsed;
use echoloop::{ServerGroup, ShutdownHandle};
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
    init_logging(cli.log_level);
    // Before the config: the default connection limit follows the raised limit.
    let raised = match cli.no_raise_nofile {
        true => None,
        false => Some(echoloop::descriptors::raise_open_file_limit()),
    };
    let server = match ServerGroup::bind(cli.to_config(), cli.threads.0) {
        Ok(server) => server.pin_to_cores(cli.pin),
        Err(e) => return fail(&e.to_string(), 2),
    };
    // Logged once bound, so that a server that cannot start prints only why.
    match raised {
        None => log::info!("open-file limit left as it is (--no-raise-nofile)"),
        Some(Ok(raise)) => log::info!("{raise}"),
        Some(Err(e)) => log::warn!("cannot raise the open-file limit: {e}"),
    }
    // Handlers first: a script may signal us as soon as it has read the address line.
    if let Err(e) = forward_signals(server.shutdown_handle()) {
        return fail(&format!("cannot install signal handlers: {e}"), 1);
    }
    // One line a script can read to learn the ports (use with --port 0).
    println!(
        "listening tcp={} udp={}",
        show(server.tcp_addr()),
        show(server.udp_addr())
    );
    let _ = std::io::stdout().flush();
    match server.run() {
        Ok(stats) => {
            println!("summary {stats}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string(), 1),
    }
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("echoloop: {message}");
    ExitCode::from(code)
}

fn show(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "off".to_string(), |addr| addr.to_string())
}

/// `--log-level` wins over `RUST_LOG`, which wins over the default, `info`.
fn init_logging(level: Option<log::LevelFilter>) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if let Some(level) = level {
        builder.filter_level(level);
    }
    builder.init();
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
