//! Descriptors: the process's open-file limit (`RLIMIT_NOFILE`), raising it at start, and the
//! arithmetic that divides it between connections, a small fixed reserve and zero-copy pipes.
//!
//! The rule, as Redis sizes `maxclients`: connections get the open-file limit minus a fixed
//! reserve ([`reserve`]), whatever the zero-copy setting. Zero-copy pipes (two descriptors
//! each) come out of what connections leave spare, never out of their capacity: a pipe is
//! made only while `DescriptorBudget::spare` says so, and taken back when its connection
//! goes idle or when descriptors run short (`reactor/pipes.rs`).
//!
//! The soft limit is usually far below the hard one (1024 against 500,000 or more on stock
//! desktops), so a server that never raises it turns clients away for nothing. Go's runtime,
//! nginx (`worker_rlimit_nofile`) and HAProxy raise it at start; the `echoloop` binary does
//! too, with [`raise_open_file_limit`], unless `--no-raise-nofile` says not to.

use std::io;

/// Descriptors kept back from connections for the process itself and its first reactor: the
/// poller, the waker, the listener, the UDP socket, logging, and accepting a connection only to
/// close it when the limit is reached.
pub const RESERVED_FDS: usize = 32;

/// Descriptors each further reactor of a [`ServerGroup`](crate::ServerGroup) holds: its
/// poller, its waker, its listener and its UDP socket (counted in `/proc/PID/fd` at 1, 2
/// and 4 reactors: 11, 15 and 23 descriptors).
pub const FDS_PER_REACTOR: usize = 4;

/// The soft and hard open-file limits; `u64::MAX` stands for "unlimited".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// What the process may open now (`rlim_cur`).
    pub soft: u64,
    /// What the soft limit may be raised to without privileges (`rlim_max`).
    pub hard: u64,
}

/// The open-file limits of this process, if they can be read (Linux only).
pub fn open_file_limit() -> Option<OpenFileLimit> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::process::{getrlimit, Resource};
        // `None` is RLIM_INFINITY.
        let limit = getrlimit(Resource::Nofile);
        Some(OpenFileLimit {
            soft: limit.current.unwrap_or(u64::MAX),
            hard: limit.maximum.unwrap_or(u64::MAX),
        })
    }
    // rustix is a Linux-only dependency here; elsewhere the defaults assume 1024.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        None
    }
}

/// The soft limit, or 1024 plus the reserve where it cannot be read.
pub(crate) fn soft_limit() -> u64 {
    open_file_limit().map_or(1024 + RESERVED_FDS as u64, |limit| limit.soft)
}

/// Raises the soft open-file limit to the hard one. Returns the limits before and after
/// (the same when the soft limit already was the hard one); the caller logs them, so that a
/// server that fails to start prints only why.
///
/// An unlimited hard limit is left alone: Linux caps `RLIMIT_NOFILE` at `fs.nr_open`, and a
/// process asking for "unlimited" gets `EPERM`.
pub fn raise_open_file_limit() -> io::Result<Raise> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::process::{setrlimit, Resource, Rlimit};
        let before = open_file_limit().ok_or(io::ErrorKind::Unsupported)?;
        if before.soft >= before.hard || before.hard == u64::MAX {
            return Ok(Raise {
                before,
                after: before,
            });
        }
        let wanted = Rlimit {
            current: Some(before.hard),
            maximum: Some(before.hard),
        };
        setrlimit(Resource::Nofile, wanted)?;
        let after = open_file_limit().ok_or(io::ErrorKind::Unsupported)?;
        Ok(Raise { before, after })
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// What [`raise_open_file_limit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raise {
    /// The limits before.
    pub before: OpenFileLimit,
    /// The limits after.
    pub after: OpenFileLimit,
}

/// One line for the log: "raised from 1024 to 20000", or why nothing changed.
impl std::fmt::Display for Raise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (before, after) = (self.before, self.after);
        if after.soft > before.soft {
            write!(
                f,
                "open-file limit raised from {} to {} (the hard limit)",
                before.soft,
                show(after.soft)
            )
        } else {
            write!(
                f,
                "open-file limit {} (hard limit {}: nothing to raise)",
                show(after.soft),
                show(after.hard)
            )
        }
    }
}

/// A limit as a user would write it.
fn show(limit: u64) -> String {
    match limit {
        u64::MAX => "unlimited".to_string(),
        n => n.to_string(),
    }
}

/// Descriptors kept back from connections by a process running `reactors` reactors.
pub fn reserve(reactors: usize) -> usize {
    RESERVED_FDS.saturating_add(FDS_PER_REACTOR.saturating_mul(reactors.saturating_sub(1)))
}

/// The default `max_connections` for a process with open-file limit `files` running
/// `reactors` reactors: the limit minus the reserve (at least 1). Zero-copy pipes do not
/// count: they use only descriptors that connections leave spare.
pub fn max_connections_for(files: u64, reactors: usize) -> usize {
    usize::try_from(files)
        .unwrap_or(usize::MAX)
        .saturating_sub(reserve(reactors))
        .max(1)
}

/// The open-file limit as the reactors divide it: what connections and pipes may hold between
/// them. Plain data, so the arithmetic is testable without a process limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DescriptorBudget {
    /// Descriptors for connections and pipes: the soft limit minus the reserve.
    usable: usize,
}

impl DescriptorBudget {
    /// The budget of a process with open-file limit `files` running `reactors` reactors.
    pub(crate) fn new(files: u64, reactors: usize) -> DescriptorBudget {
        let files = usize::try_from(files).unwrap_or(usize::MAX);
        DescriptorBudget {
            usable: files.saturating_sub(reserve(reactors)),
        }
    }

    /// Descriptors left while `connections` are open and `pipes` pipes exist; 0 when short.
    pub(crate) fn spare(&self, connections: usize, pipes: usize) -> usize {
        self.usable
            .saturating_sub(connections)
            .saturating_sub(pipes.saturating_mul(2))
    }

    /// True when one more pipe fits while `connections` are open and `pipes` exist.
    pub(crate) fn pipe_fits(&self, connections: usize, pipes: usize) -> bool {
        self.spare(connections, pipes) >= 2
    }

    /// True when `connections` and `pipes` together hold more than the budget: pipes must be
    /// given back for connections to keep their descriptors.
    pub(crate) fn is_short(&self, connections: usize, pipes: usize) -> bool {
        connections.saturating_add(pipes.saturating_mul(2)) > self.usable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start-up arithmetic at the limits a user meets: 64 and 256 (small containers), 1024
    /// (the usual soft limit), 20,000 (this machine's hard limit), and unlimited.
    #[test]
    fn connections_get_the_limit_minus_the_reserve_at_every_limit() {
        assert_eq!(max_connections_for(64, 1), 32);
        assert_eq!(max_connections_for(256, 1), 224);
        assert_eq!(max_connections_for(1024, 1), 992);
        assert_eq!(max_connections_for(20_000, 1), 19_968);
        assert_eq!(max_connections_for(u64::MAX, 1), usize::MAX - RESERVED_FDS);
        // Each further reactor holds four more descriptors.
        assert_eq!(max_connections_for(1024, 4), 1024 - 32 - 12);
        // Never zero, even below the reserve.
        assert_eq!(max_connections_for(16, 1), 1);
        assert_eq!(max_connections_for(0, 8), 1);
    }

    /// Pipes come out of spare descriptors only: with the default `max_connections`, a pipe
    /// fits while connections leave two descriptors, and a full house makes pipes short.
    #[test]
    fn pipes_use_spare_descriptors_only() {
        let budget = DescriptorBudget::new(1024, 1);
        let max = max_connections_for(1024, 1);
        assert_eq!(budget.spare(0, 0), max);
        assert!(budget.pipe_fits(max - 2, 0));
        assert!(!budget.pipe_fits(max - 1, 0));
        assert!(budget.pipe_fits(0, max / 2 - 1));
        assert!(!budget.pipe_fits(0, max / 2));
        assert!(!budget.is_short(max, 0));
        assert!(
            budget.is_short(max, 1),
            "a pipe must give way to a connection"
        );
        assert!(budget.is_short(max - 1, 1));
        assert!(!budget.is_short(max - 2, 1));
        let tiny = DescriptorBudget::new(64, 1);
        assert_eq!(tiny.spare(32, 0), 0);
        assert!(!tiny.pipe_fits(31, 0));
        assert!(tiny.pipe_fits(30, 0));
    }

    #[test]
    fn a_raise_says_from_what_to_what() {
        let limit = |soft, hard| OpenFileLimit { soft, hard };
        let raised = Raise {
            before: limit(1024, 20_000),
            after: limit(20_000, 20_000),
        };
        assert_eq!(
            raised.to_string(),
            "open-file limit raised from 1024 to 20000 (the hard limit)"
        );
    }

    /// Raising is idempotent: once the soft limit is the hard one, a second call changes
    /// nothing and says so.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn raising_twice_changes_nothing_the_second_time() {
        let first = raise_open_file_limit().expect("raise to the hard limit");
        let second = raise_open_file_limit().expect("raise again");
        assert_eq!(first.after, second.before);
        assert_eq!(second.before, second.after);
        assert!(second.to_string().contains("nothing to raise"), "{second}");
        assert_eq!(open_file_limit(), Some(second.after));
    }
}
