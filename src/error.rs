//! Errors that stop the server from starting or running: the setup-and-fatal vocabulary.
//!
//! How one connection ended is not an error here; that is a `CloseReason`, counted in the
//! stats. A `ServerError` displays as one lowercase line, with a hint where one helps, so the
//! binary can print `echoloop: <error>` and exit 2.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::config::ConfigError;

/// Why the server could not start, or stopped with a failure.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration was refused before anything was bound.
    Config(ConfigError),
    /// A socket could not be bound or set up.
    Bind {
        /// "TCP", "UDP", or "metrics" (the `/metrics` endpoint, over TCP).
        protocol: &'static str,
        /// The address we tried.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// The poller itself failed (creating it, registering with it, or waiting on it).
    Poll(io::Error),
    /// A reactor's thread could not be started (a [`ServerGroup`](crate::ServerGroup)).
    Spawn(io::Error),
    /// So many reactors that the descriptors they keep for themselves
    /// ([`reserve`](crate::descriptors::reserve)) leave none of the open-file limit for
    /// connections; refused before any is bound.
    TooManyReactors {
        /// The reactors asked for.
        reactors: usize,
        /// The soft open-file limit.
        open_file_limit: u64,
    },
}

/// The `protocol` of a [`ServerError::Bind`] for the metrics endpoint.
pub(crate) const METRICS: &str = "metrics";

impl ServerError {
    /// Advice for the user, for the errors whose cause is usually the same, in the library's
    /// words (a program with flags can say which of its own sets the value instead).
    pub fn hint(&self) -> Option<&'static str> {
        let ServerError::Bind {
            source,
            addr,
            protocol,
        } = self
        else {
            return None;
        };
        match source.kind() {
            io::ErrorKind::AddrInUse if *protocol == METRICS => Some(
                "another process holds this port; pick another address for the metrics endpoint",
            ),
            io::ErrorKind::AddrInUse => {
                Some("another process holds this port; pick another, or port 0 for any free one")
            }
            io::ErrorKind::PermissionDenied if addr.port() < 1024 => {
                Some("ports below 1024 need root or CAP_NET_BIND_SERVICE; try a port above 1023")
            }
            io::ErrorKind::AddrNotAvailable => {
                Some("that address is not on this machine; try 127.0.0.1, ::1 or 0.0.0.0")
            }
            _ => None,
        }
    }
}

/// What went wrong without the hint: [`ServerError::cause`].
struct Cause<'a>(&'a ServerError);

impl ServerError {
    /// What went wrong, one lowercase line without the hint (the `Display` adds
    /// ` (hint: …)` where [`ServerError::hint`] has one).
    pub fn cause(&self) -> impl fmt::Display + '_ {
        Cause(self)
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cause())?;
        if let Some(hint) = self.hint() {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl fmt::Display for Cause<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ServerError::Config(e) => write!(f, "invalid configuration: {e}"),
            ServerError::Bind {
                protocol,
                addr,
                source,
            } => write!(f, "cannot bind {protocol} {addr}: {}", describe(source)),
            ServerError::Poll(e) => write!(f, "poller failed: {}", describe(e)),
            ServerError::Spawn(e) => write!(f, "cannot start a reactor thread: {}", describe(e)),
            ServerError::TooManyReactors {
                reactors,
                open_file_limit,
            } => write!(
                f,
                "{reactors} reactors keep {} descriptors for themselves, leaving none of the \
                 open-file limit {open_file_limit} for connections (use fewer threads, or \
                 raise the limit)",
                crate::descriptors::reserve(*reactors)
            ),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Config(e) => Some(e),
            ServerError::Bind { source, .. } => Some(source),
            ServerError::Poll(e) | ServerError::Spawn(e) => Some(e),
            ServerError::TooManyReactors { .. } => None,
        }
    }
}

impl From<ConfigError> for ServerError {
    fn from(e: ConfigError) -> Self {
        ServerError::Config(e)
    }
}

/// The OS message without Rust's " (os error N)" suffix, lowercased like the rest of the line.
fn describe(error: &io::Error) -> String {
    let text = error.to_string();
    let text = match text.find(" (os error") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind_error(kind: io::ErrorKind, port: u16) -> ServerError {
        ServerError::Bind {
            protocol: "TCP",
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            source: io::Error::from(kind),
        }
    }

    #[test]
    fn port_in_use_is_one_line_with_a_hint() {
        let text = bind_error(io::ErrorKind::AddrInUse, 7007).to_string();
        assert!(text.starts_with("cannot bind TCP 127.0.0.1:7007: address in use"));
        assert!(text.contains("port 0 for any free one"), "{text}");
        assert!(!text.contains("--"), "library words, not flags: {text}");
        assert!(!text.contains('\n'));
    }

    #[test]
    fn privileged_port_hint_names_the_capability() {
        let text = bind_error(io::ErrorKind::PermissionDenied, 7).to_string();
        assert!(text.contains("CAP_NET_BIND_SERVICE"), "{text}");
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn os_error_suffix_is_dropped() {
        let error = io::Error::from(rustix::io::Errno::ADDRINUSE);
        assert_eq!(describe(&error), "address already in use");
    }
}
