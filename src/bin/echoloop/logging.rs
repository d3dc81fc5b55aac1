//! Where log records go: stderr (the default, through `env_logger`) or the local syslog
//! (`--syslog`), at the same levels either way.
//!
//! Syslog, as the tutorials do it (`openlog("name[pid]", 0, LOG_DAEMON)`): facility daemon,
//! ident `echoloop` with the pid, one RFC 3164 datagram per record to `/dev/log` (or the
//! socket `--syslog-socket` names, which is how the tests watch it). The `syslog` crate
//! formats and sends; `env_logger`'s filter still decides what is logged, so `--log-level`
//! and `RUST_LOG` mean the same for both sinks. A record the syslog socket refuses (daemon
//! gone, queue full) is dropped: logging must never stop the server.

use std::path::PathBuf;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};
use syslog::{Facility, Formatter3164, LoggerBackend};

/// The syslog socket when `--syslog-socket` names none.
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";

/// Where the records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// Standard error, with `env_logger`'s layout.
    Stderr,
    /// The syslog daemon listening on this unix socket.
    Syslog(PathBuf),
}

/// Installs the logger: `--log-level` wins over `RUST_LOG`, which wins over `info`.
pub fn init(level: Option<LevelFilter>, sink: &Sink) -> Result<(), String> {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if let Some(level) = level {
        builder.filter_level(level);
    }
    let Sink::Syslog(path) = sink else {
        builder.init();
        return Ok(());
    };
    let formatter = Formatter3164 {
        facility: Facility::LOG_DAEMON,
        hostname: None,
        process: "echoloop".into(),
        pid: std::process::id(),
    };
    let writer = syslog::unix_custom(formatter, path)
        .map_err(|e| format!("cannot reach syslog at {}: {e}", path.display()))?;
    let filter = builder.build();
    log::set_max_level(filter.filter());
    log::set_boxed_logger(Box::new(Syslog {
        filter,
        writer: Mutex::new(writer),
    }))
    .map_err(|e| format!("cannot install the syslog logger: {e}"))
}

/// A `log` sink that sends each record the filter lets through to syslog.
struct Syslog {
    filter: env_logger::Logger,
    writer: Mutex<syslog::Logger<LoggerBackend, Formatter3164>>,
}

impl Log for Syslog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.filter.matches(record) {
            return;
        }
        let message = record.args().to_string();
        // A poisoned lock only means another thread panicked mid-send; the writer is fine.
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let _ = match record.level() {
            Level::Error => writer.err(message),
            Level::Warn => writer.warning(message),
            Level::Info => writer.info(message),
            Level::Debug | Level::Trace => writer.debug(message),
        };
    }

    fn flush(&self) {}
}
