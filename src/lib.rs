//! echoloop: a single-threaded event-loop (reactor) echo server on mio.
//!
//! One `mio::Poll` watches a TCP listener, a slab of connections and a UDP socket. Every
//! socket is non-blocking and each connection keeps its own pending output, so echoing never
//! blocks the loop: the tutorials' deadlock (a client writes 10 MB before reading anything) cannot
//! happen, and memory stays bounded by a per-connection high-water mark (backpressure).
//!
//! **Start here**: `examples/minimal.rs` (the pattern in under 200 lines), then the [`tour`],
//! which walks from it to [`Server::run`], one turn, one connection's drive, teardown and each
//! policy, with a link at every stop (`cargo doc --document-private-items --open` renders
//! them; each also names a file under `src/` that a reader of the source can open).
//!
//! ```text
//!           +------------------- one thread, one mio::Poll --------------------+
//! clients ->| TCP listener --accept--> Slab<Slot> --read/echo--> pending output |
//!           | UDP socket   --recvmmsg--> guards --> sendmmsg (or reply queue)  |
//!           | Waker (reports, stats, shutdown)  timers: one deadline registry  |
//!           +------------------------------------------------------------------+
//!
//! Server::run, one turn (Server::turn):
//!   poll(timeout: 0 if work is queued, else the next timer)
//!   now = Instant::now()                       the turn's one clock read
//!   for each event: dispatch by token          (no I/O here: note readiness, queue)
//!       listener / UDP -> mark ready
//!       waker          -> answer report/stats requests; begin shutdown if asked
//!                         (quiet connections go straight to `finished`)
//!       connection     -> record its readiness, queue it (fresh queue)
//!   run ready work: accept batch, UDP batch, then fresh connections, then carried-over
//!       ones (at least one): drive, account, file (finished | ready queue | wait for edge)
//!   remove finished connections                teardown at the batch boundary
//!   check timers: whatever the deadline registry says is due (idle/stall, peer stopped
//!                 reading, accept retry, pipe sweep, free-list decay, watchdog, group post,
//!                 stats line, scrape expiry, drain deadline); connections it closes are
//!                 removed before each non-connection timer runs and at its end
//! ```
//!
//! One connection's states (the state machine in `connection`):
//!
//! ```text
//!             read 0 (FIN)                    pending empty: shutdown(Write)
//!   Open ------------------> PeerClosed ----------------------------------> Closed
//!     |                                                                      ^
//!     | server shutdown                                                      |
//!     v        pending empty: shutdown(Write)          read 0 (peer's FIN)   |
//!   Draining --------------------------------> Lingering --------------------+
//!     ^                                             ^
//!   Finishing (a service said close) -- FIN --------+
//!   (any phase) -- reset / I/O error / timeout / drain deadline -------------^
//! ```
//! (Timeouts and the drain deadline are the reactor's: it closes the connection with
//! `Connection::abort`.)
//!
//! # Layout, in reading order
//! Every file under `src/`, one line each.
//! - `lib.rs`: this page; `tour.rs`: the [`tour`], the same files as a walk.
//! - `reactor/mod.rs`: [`Server::run`], the loop, first; then dispatch, the ready queues,
//!   `drive_connection` (drive, account, file) and teardown; then the glue that touches
//!   several policies: accepting, timers firing, shutdown, reports, the metrics hooks; last,
//!   creating the server ([`Server::bind`]) and its accessors.
//! - `reactor/tokens.rs`: what an event's token names (waker, listener, UDP socket,
//!   connection).
//! - `reactor/turn.rs`: the bound on one turn (bytes moved, time) and the order of the queues.
//! - `reactor/listeners.rs`: a TCP listener and a UDP socket as the reactor holds them.
//! - `reactor/slot.rs`: a connection as the reactor holds it: socket, state machine, id,
//!   coarse activity stamps (kept small: it is what an idle connection costs).
//! - `reactor/admission.rs`: whom to keep: connection limits, pausing when out of
//!   descriptors.
//! - `reactor/memory.rs`: the global memory budget: the room it leaves each connection.
//! - `reactor/pipes.rs`: which connections get a zero-copy pipe (from spare descriptors), and
//!   when it is given back.
//! - `reactor/shared.rs`: the limits that hold across the reactors of a process.
//! - `reactor/deadlines.rs`: the one deadline registry: a timer per kind (accept retry, pipe
//!   sweep, free-list decay, watchdog look, group post, stats line, scrape expiry, drain end)
//!   and a min-heap of connections' deadlines (idle and stall, peer stopped reading) with
//!   lazy re-arming.
//! - `reactor/watchdog.rs`: a connection with work and no wake-up for it (a lost edge) is
//!   found, re-driven and counted, so no stall is silent.
//! - `reactor/shutdown.rs`: [`ShutdownHandle`], the drain and its deadline.
//! - `reactor/report.rs`: [`ReportHandle`] and the stats line (totals and rates).
//! - `reactor/live.rs`: [`StatsHandle`], the mailbox through which another thread asks a
//!   running loop for its counters.
//! - `reactor/bind.rs`: the sockets registered with a new poller, the start-up lines.
//! - [`connection`] (`connection/mod.rs`): one TCP connection's state machine,
//!   [`Readiness`](connection::Readiness) in, an [`Outcome`](connection::Outcome) out.
//! - `connection/blocks.rs`: pending output as fixed-size blocks from a per-thread free list.
//! - `connection/pipe.rs`: the zero-copy steps (splice into the pipe and out).
//! - `connection/session.rs`: a service's session (when it speaks, how its output is queued).
//! - `connection/close.rs`: [`CloseReason`], how a connection ended.
//! - `connection/script.rs`: test scripts and invariants (tests and, with the `fuzzing`
//!   feature, the fuzz crate); `connection/tests.rs`: the unit tests that run them.
//! - `zero_copy.rs`: the kernel pipe and `splice(2)` behind zero-copy echo (Linux).
//! - `group.rs`: [`ServerGroup`], N reactors on one port (`SO_REUSEPORT`), one per thread.
//! - [`descriptors`]: the open-file limit, raising it, and dividing it.
//! - `udp/mod.rs`: a UDP endpoint: each datagram gets its service's answer, UDP never blocks
//!   TCP.
//! - `udp/batch_io.rs`: `recvmmsg`/`sendmmsg` batches, replies from each datagram's real
//!   destination.
//! - `udp/guard.rs`: the reflection and loop guards (which datagrams get no reply).
//! - `udp/reply_queue.rs`: the bounded queue of replies waiting for the socket.
//! - `udp/answers.rs`: the reply to a datagram of a service other than echo (a fresh
//!   [`Service`](service::Service) value per datagram), rationed per source.
//! - `net.rs`: binding sockets (`SO_REUSEADDR`, backlog, one port for both protocols).
//! - [`service`] (`service/mod.rs`): the sans-IO seam ([`Service`](service::Service)).
//! - `service/echo.rs`, `discard.rs`, `chargen.rs`, `daytime.rs`, `time.rs` (also
//!   unixtime): the inetd services; `service/clock.rs`: their calendar arithmetic.
//! - `service/reply_limit.rs`: token buckets for UDP replies that could amplify.
//! - [`listen`]: listeners (service, protocol, address) and the endpoints a bound server
//!   reports.
//! - [`config`]: [`Config`], plain data with defaults and validation; [`ConfigError`].
//! - `stats.rs`: [`Stats`] counters (whole and per service); the byte and datagram
//!   accounting, per service.
//! - [`counters`]: the table macro that declares them: one line per counter gives its field,
//!   merge, `key=value` pair, summary line and metric.
//! - `report.rs`: the periodic stats line: totals and per-second rates over the interval.
//! - `metrics` (feature `metrics`, `metrics/mod.rs`): the Prometheus `/metrics` endpoint on
//!   the same loop; `metrics/http.rs`: the little HTTP it needs, without sockets;
//!   `metrics/exposition.rs`: [`Stats`] in the exposition format.
//! - `error.rs`: [`ServerError`], for setup and fatal failures.
//! - [`units`]: sizes and durations as typed on a command line.
//! - `bin/echoloop/`: the binary (feature `cli`): `main.rs` (parse, bind, run, report),
//!   `cli.rs` (flags onto [`Config`]), `listen_flag.rs` (the `--listen` syntax),
//!   `listening.rs` and `summary.rs` (its start-up and exit lines), `logging.rs` (stderr or
//!   syslog), `generate.rs` (man page and completions).
//!
//! The public API is what an embedder needs: [`Server`], [`ServerGroup`], [`ShutdownHandle`],
//! [`ReportHandle`], [`StatsHandle`] (the counters of a running server), [`descriptors`],
//! [`Config`] (with [`config`]'s defaults), [`Stats`] (and the [`counters`] that describe
//! them), [`CloseReason`], the errors, and [`connection`], the reusable state machine (also
//! what the benches and the fuzz target drive); with the `metrics` feature, `metrics` (the
//! page renderer). Types that will grow (`Stats`, `CloseReason`, `ConfigError`,
//! `ServerError`, `ServiceKind`, ...) are `#[non_exhaustive]`: a new counter, reason or error
//! is not a breaking change. Errors speak of `Config` fields, not of the binary's flags.
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
//!
//! The library installs no signal handler, with or without default features: in an embedding
//! process Ctrl-C ends the process at once (no drain, no final counters) unless the embedder
//! wires it to [`Server::shutdown_handle`], as the binary does with `signal-hook`. The
//! README's Embedding section lists what else the binary adds (flags, logging, the open-file
//! limit, the `listening` and `summary` lines).
//!
//! # A service of your own
//! A listener carries the service it serves; several listeners share the one loop. A service
//! is told what arrived and writes its answer (see [`service`]); the reactor does the rest.
//! `examples/reverse.rs` is the whole program (`cargo run --example reverse`).
//!
//! ```
//! use echoloop::listen::{Listener, Protocol};
//! use echoloop::service::{Output, Service, ServiceKind};
//! use std::io::{Read, Write};
//!
//! /// Answers every chunk in upper case.
//! struct Shout;
//!
//! impl Service for Shout {
//!     fn on_input(&mut self, input: &[u8], out: &mut Output<'_>) {
//!         out.write(&input.to_ascii_uppercase());
//!     }
//! }
//!
//! let mut config = echoloop::Config { port: 0, ..Default::default() };
//! config.listeners.push(Listener {
//!     service: ServiceKind::custom("shout", || Box::new(Shout)),
//!     protocol: Protocol::Tcp,
//!     addr: "127.0.0.1:0".parse().unwrap(),
//! });
//! let server = echoloop::Server::bind(config)?;
//! let shout = server.endpoints().iter().find(|e| e.service.name() == "shout").unwrap().addr;
//! let stop = server.shutdown_handle();
//! let thread = std::thread::spawn(move || server.run());
//!
//! let mut client = std::net::TcpStream::connect(shout).unwrap();
//! client.write_all(b"hello").unwrap();
//! let mut reply = [0u8; 5];
//! client.read_exact(&mut reply).unwrap();
//! assert_eq!(&reply, b"HELLO");
//!
//! stop.shutdown();
//! drop(client);
//! let stats = thread.join().expect("server thread")?;
//! assert_eq!(stats.services[1].name, "shout");
//! assert_eq!(stats.services[1].tcp_bytes_out, 5);
//! # Ok::<(), echoloop::ServerError>(())
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]
#![warn(unreachable_pub)]

pub mod config;
pub mod connection;
pub mod counters;
pub mod descriptors;
mod error;
mod group;
pub mod listen;
#[cfg(feature = "metrics")]
pub mod metrics;
mod net;
mod reactor;
mod report;
pub mod service;
mod stats;
#[allow(rustdoc::private_intra_doc_links)] // the tour's stops are the loop's internals
pub mod tour;
mod udp;
pub mod units;
mod zero_copy;

pub use config::{Config, ConfigError, LoopGuard};

/// The README's and the documents' Rust examples, compiled and run as doc tests, so the
/// embedding path a newcomer copies from them always works.
#[cfg(doctest)]
mod documents {
    #[doc = include_str!("../README.md")]
    mod readme {}
    #[doc = include_str!("../docs/services.md")]
    mod services {}
}
pub use connection::CloseReason;
pub use error::ServerError;
pub use group::ServerGroup;
pub use reactor::{ReportHandle, Server, ShutdownHandle, StatsHandle};
pub use stats::{ServiceStats, Stats};
