//! Shared harnesses for echoloop's tests, benches and examples: one of each kind, so a test
//! file holds its scenario and nothing else.
//!
//! Layout, in the order a test uses them:
//! - [`server`]: an in-process server on 127.0.0.1 port 0, shut down and joined on drop.
//! - [`client`]: blocking clients with timeouts, and the checks they make (byte-exact echo,
//!   clean close, a close within a window).
//! - [`steady`]: a bystander client that keeps pinging while others misbehave.
//! - [`flood`]: clients that write as fast as they can while reading their echo slower.
//! - [`child`]: a binary under test as a child process (stdout lines, log, signals, exit).
//! - [`procfs`]: CPU time and memory of a process or thread, read from `/proc`.
//! - [`pinning`]: pinning threads to cores and naming them for [`procfs`].
//! - [`measure`]: quantiles of latency samples, and taking turns between measuring tests.
//! - [`rng`]: the seeded random generator (replayable from the seed it prints) and patterns.
//! - [`tokio_echo`]: the tokio `current_thread` echo server that benches compare against.
//!
//! Everything here uses loopback and port 0 and bounds every wait; helpers that assert are
//! `#[track_caller]`, so a failure points at the test line.

pub mod child;
pub mod client;
pub mod flood;
pub mod measure;
pub mod pinning;
pub mod procfs;
pub mod rng;
pub mod server;
pub mod steady;
pub mod tokio_echo;

pub use client::{
    assert_same, close_cleanly, connect, connect_nodelay, connect_with, echo_with_half_close,
    expect_closed_within, is_timeout, ping, read_to_eof, reset, round_trip, write_until_blocked,
    IO_TIMEOUT,
};
pub use rng::{pattern, Rng};
pub use server::{TestGroup, TestServer};
pub use steady::Steady;
