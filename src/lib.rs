//! echoloop: a single-threaded event-loop (reactor) echo server on mio.
//!
//! One `mio::Poll` watches a TCP listener, a slab of connections and a UDP socket. Every
//! socket is non-blocking and each connection keeps its own pending output, so echoing never
//! blocks the loop: the seed's deadlock (a client writes 10 MB before reading anything) cannot
//! happen, and memory stays bounded by a per-connection high-water mark (backpressure).
//!
//! ```text
//!           +------------------- one thread, one mio::Poll --------------------+
//! clients ->| TCP listener --accept--> Slab<Conn> --read/echo--> pending output |
//!           | UDP socket   --recv_from--> send_to (or bounded reply queue)      |
//!           | Waker (shutdown)              timers: stats, accept retry, drain |
//!           +------------------------------------------------------------------+
//!
//! loop { poll -> dispatch by token -> run ready queue -> remove finished -> timers }
//! ```
//!
//! # Layout, in reading order
//! - [`reactor`]: [`Server`]: bind, the event loop, accept, teardown, shutdown.
//! - [`connection`]: one TCP connection's state machine and its I/O, without sockets.
//!   (Its test scripts and their invariants live in `connection_script`, compiled for tests
//!   and with the `fuzzing` feature.)
//! - [`deadlines`]: idle and stall timeouts in a min-heap with lazy re-arming.
//! - [`udp`]: UDP echo with a bounded reply queue and reflection hardening.
//! - [`net`]: binding sockets (`SO_REUSEADDR`, backlog, one port for both protocols).
//! - [`config`]: [`Config`], plain data with defaults and validation.
//! - [`stats`]: [`Stats`] counters and [`CloseReason`].
//! - [`error`]: [`ServerError`], for setup and fatal failures.
//! - [`units`]: sizes and durations as typed on a command line.
//!
//! The `echoloop` binary (`src/bin/echoloop/`, feature `cli`) maps its flags onto [`Config`].
//! The load generator, `echoloop-bench`, is a crate of its own in `loadgen/`: it shares no code
//! path with the server, only the size and duration syntax of [`units`].
//!
//! # Embedding
//! ```no_run
//! let server = echoloop::Server::bind(echoloop::Config { port: 0, ..Default::default() })?;
//! println!("echo on {:?}", server.tcp_addr());
//! let stop = server.shutdown_handle();
//! let thread = std::thread::spawn(move || server.run());
//! stop.shutdown();
//! let stats = thread.join().expect("server thread")?;
//! println!("{stats}");
//! # Ok::<(), echoloop::ServerError>(())
//! ```
#![deny(missing_docs)]

pub mod config;
pub mod connection;
#[cfg(any(test, feature = "fuzzing"))]
pub mod connection_script;
pub mod deadlines;
pub mod error;
pub mod listen;
pub mod net;
pub mod reactor;
pub mod service;
pub mod stats;
pub mod udp;
pub mod units;
pub mod zero_copy;

pub use config::Config;
pub use error::ServerError;
pub use reactor::{Server, ShutdownHandle};
pub use stats::{CloseReason, Stats};
