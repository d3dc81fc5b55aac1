//! The limits that hold across the reactors of one process, and the only state they share.
//!
//! Each reactor owns its sockets, its slab and its counters; nothing here is touched on the
//! echo path. What is shared is touched once per connection (accept and close) or once per
//! pipe (rare, bulk connections only):
//! - `max_connections`: one atomic count of open connections, so the total holds exactly
//!   however unevenly the kernel spreads connections over the reactors (`SO_REUSEPORT`
//!   hashes them; nothing balances them).
//! - `max_per_source`: one count per source IP behind a mutex, kept only when the limit is
//!   set (a lock per accept and close, uncontended in practice).
//! - zero-copy pipes: one atomic count, checked against `zero_copy_conns` and against the
//!   descriptors that open connections leave spare (`descriptors`).
//!
//! The memory budget is not here: it is split evenly between reactors (see `ServerGroup`),
//! because it is checked on every drive, and a shared total would put an atomic on the hot
//! path.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::config::Config;
use crate::descriptors::DescriptorBudget;

/// Limits and counts shared by every reactor of a process (one reactor alone has its own).
#[derive(Debug)]
pub(crate) struct SharedLimits {
    max_connections: usize,
    /// Connections open across reactors.
    open: AtomicUsize,
    max_per_source: Option<usize>,
    /// Open connections per source IP, across reactors; used only with `max_per_source`.
    per_source: Mutex<HashMap<IpAddr, usize>>,
    max_pipes: usize,
    /// Zero-copy pipes open across reactors.
    pipes: AtomicUsize,
    descriptors: DescriptorBudget,
}

impl SharedLimits {
    /// The limits of `config` for `reactors` reactors under open-file limit `files`.
    pub(crate) fn new(config: &Config, files: u64, reactors: usize) -> SharedLimits {
        SharedLimits {
            max_connections: config.max_connections,
            open: AtomicUsize::new(0),
            max_per_source: config.max_per_source,
            per_source: Mutex::new(HashMap::new()),
            max_pipes: config.zero_copy_conns,
            pipes: AtomicUsize::new(0),
            descriptors: DescriptorBudget::new(files, reactors),
        }
    }

    /// Takes a connection slot; false (and nothing taken) at `max_connections`.
    pub(crate) fn try_open(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max_connections).then_some(open + 1)
            })
            .is_ok()
    }

    /// Gives back a slot taken with [`SharedLimits::try_open`].
    pub(crate) fn close(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    /// True when `max_per_source` is set (and the peer's address must be kept for it).
    pub(crate) fn limits_sources(&self) -> bool {
        self.max_per_source.is_some()
    }

    /// Counts a connection from `ip`; false (and nothing counted) when `ip` has
    /// `max_per_source` already. Always true without the limit.
    pub(crate) fn try_source(&self, ip: IpAddr) -> bool {
        let Some(max) = self.max_per_source else {
            return true;
        };
        let mut sources = self
            .per_source
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = sources.entry(ip).or_insert(0);
        if *count >= max {
            return false;
        }
        *count += 1;
        true
    }

    /// A connection counted with [`SharedLimits::try_source`] is gone.
    pub(crate) fn forget_source(&self, ip: IpAddr) {
        let mut sources = self
            .per_source
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = sources.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                sources.remove(&ip);
            }
        }
    }

    /// The most connections from one source, if limited.
    pub(crate) fn max_per_source(&self) -> Option<usize> {
        self.max_per_source
    }

    /// Takes a pipe if one is left to give and descriptors are spare for it.
    pub(crate) fn try_pipe(&self) -> bool {
        let open = self.open.load(Ordering::Acquire);
        self.pipes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |pipes| {
                (pipes < self.max_pipes && self.descriptors.pipe_fits(open, pipes))
                    .then_some(pipes + 1)
            })
            .is_ok()
    }

    /// Gives back a pipe taken with [`SharedLimits::try_pipe`].
    pub(crate) fn release_pipe(&self) {
        self.pipes.fetch_sub(1, Ordering::AcqRel);
    }

    /// True when open connections and pipes together hold more descriptors than the limit
    /// leaves them: pipes must be given back.
    pub(crate) fn descriptors_short(&self) -> bool {
        let open = self.open.load(Ordering::Acquire);
        let pipes = self.pipes.load(Ordering::Acquire);
        self.descriptors.is_short(open, pipes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize, zero_copy_conns: usize, files: u64) -> SharedLimits {
        let config = Config {
            max_connections,
            zero_copy_conns,
            max_per_source: Some(2),
            ..Config::default()
        };
        SharedLimits::new(&config, files, 1)
    }

    #[test]
    fn connections_are_counted_up_to_the_limit_and_given_back() {
        let shared = limits(3, 0, 1024);
        assert!((0..3).all(|_| shared.try_open()));
        assert!(!shared.try_open(), "the 4th is over the limit");
        shared.close();
        assert!(shared.try_open(), "a freed slot is taken again");
    }

    #[test]
    fn sources_are_counted_per_address() {
        let shared = limits(100, 0, 1024);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(shared.try_source(a) && shared.try_source(a));
        assert!(!shared.try_source(a));
        assert!(shared.try_source(b));
        shared.forget_source(a);
        assert!(shared.try_source(a));
    }

    /// At open-file limit 64 (32 usable): pipes come only from what connections leave, and
    /// connections taking the last descriptors make the pipes short.
    #[test]
    fn pipes_come_from_spare_descriptors_at_a_low_limit() {
        let shared = limits(32, 256, 64);
        assert!((0..28).all(|_| shared.try_open()));
        assert!(
            shared.try_pipe(),
            "28 connections leave 4 spare: room for 2 pipes"
        );
        assert!(shared.try_pipe());
        assert!(!shared.try_pipe(), "no descriptor left for a third");
        assert!(!shared.descriptors_short());
        assert!(shared.try_open(), "the 29th connection is still admitted");
        assert!(
            shared.descriptors_short(),
            "and the pipes must give way to it"
        );
        shared.release_pipe();
        assert!(!shared.descriptors_short());
    }

    #[test]
    fn pipes_stop_at_zero_copy_conns() {
        let shared = limits(100, 2, 20_000);
        assert!(shared.try_pipe() && shared.try_pipe());
        assert!(!shared.try_pipe());
        shared.release_pipe();
        assert!(shared.try_pipe());
    }
}
