//! A guided tour of the code, in reading order: from the minimal example to [`Server::run`],
//! one turn, one connection's drive, teardown, then each policy. About fifteen minutes.
//!
//! Most stops are private items: read this page with `cargo doc --document-private-items
//! --open` (CI builds it that way with warnings as errors, so every link here resolves). Read
//! as source, each stop is also a plain path: `reactor::slot` is `src/reactor/slot.rs`.
//!
//! # 0. The minimal reactor
//!
//! `examples/minimal.rs` (under 200 lines; `cargo run --example minimal`) is the whole pattern
//! with nothing else: one `mio::Poll`, a TCP listener and a UDP socket at reserved tokens,
//! connections in a `Slab` (token = slab key), and for each event a handler that works until
//! the socket says `WouldBlock`, because mio is edge-triggered and reports readiness once.
//! A connection reads a chunk, writes what it can, keeps the rest in a pending buffer, asks
//! for `WRITABLE` only while output waits, and stops reading at 16 MiB pending. That is
//! already enough for the tutorials' 10 MB write-before-read client. echoloop is that loop plus
//! named policies; each piece of the example has one counterpart here:
//!
//! | `examples/minimal.rs` | echoloop |
//! |---|---|
//! | `main`'s `loop { poll; for event ... }` | [`Server::run`] |
//! | `match event.token()` | [`Server::dispatch`] (tokens: reserved values at the top, slab keys below) |
//! | `accept_all` | [`Server::accept_batch`] (limits, out-of-descriptor pauses) |
//! | `drive` | [`Server::drive_connection`] around [`Connection::drive`] |
//! | `conns.remove(key)` at once | [`Server::remove_finished`], after the batch |
//! | `echo_datagrams` | the [`udp`](crate::udp) module: batches, guards, a reply queue |
//! | `reregister` on pending output | none: each socket is registered once for both directions, and readiness is tracked in user space ([`Connection::on_readiness`]) |
//!
//! # 1. The loop: [`Server::run`]
//!
//! [`Server::bind`] opens the sockets and builds every policy from the [`Config`]; `run`
//! then loops until shutdown has begun and the last connection is gone. **One turn**
//! ([`Server::turn`]):
//!
//! 1. [`Server::poll_timeout`]: zero if work is queued (a budget cut something short),
//!    else until the next deadline, else forever; then `poll`.
//! 2. Read the clock: the deadlines and activity stamps of the turn use that `now` (the
//!    turn's own budget ([`reactor::turn`]) and the accept batch read it
//!    again, since they measure time spent inside the turn).
//! 3. [`Server::dispatch`] each event by its token. A listener or UDP socket is only marked
//!    ready; a connection gets its [`Readiness`](crate::connection::Readiness) recorded and is
//!    queued (once, in the `fresh` queue); the waker ([`Server::on_wake`]) answers report and
//!    stats requests and, if asked, begins shutdown (a quiet connection, open and idle with
//!    nothing owed and nothing unread, is closed at once with a plain FIN; the rest drain;
//!    removal still waits for step 5). A token whose slab entry is gone (closed
//!    earlier) is ignored: events can be stale or spurious.
//! 4. [`Server::run_ready_work`]: accept, then UDP, then the queued connections (new readiness
//!    first, then work carried over), each through [`Server::drive_connection`], until the
//!    turn's own budget is spent ([`reactor::turn`]: 1 MiB moved or 2 ms), though at least
//!    one carried-over connection is always driven. What is not reached stays queued for the
//!    next turn, which polls with a zero timeout.
//! 5. [`Server::remove_finished`]: teardown of the connections that finished in this batch.
//! 6. [`Server::check_timers`]: whatever the deadline registry says is due (idle and stall
//!    timeouts, the accept retry, the watchdog, the stats line, the drain deadline, whose
//!    handler `abort_remaining` closes what is left...), by kind; the connections its timers
//!    close are removed before each other timer and at its end.
//!
//! # 2. One connection's drive
//!
//! [`Server::drive_connection`] takes the connection's slot ([`reactor::slot`]: socket,
//! state machine, a few stamps), asks the memory budget for this connection's
//! [`Limits`](crate::connection::Limits), and calls [`Connection::drive`]. That function is
//! the state machine's one loop: a pure decision, [`Connection::next_step`] (phase,
//! readiness and remaining budget in; a step out), then the step, until no step is left.
//! Pending output always goes first, since it is older than anything still to be read:
//!
//! - [`Connection::flush`] writes pending output (a `writev` of up to 16 blocks).
//! - [`Connection::read_and_echo`] reads into the reactor's shared scratch buffer (256 KiB,
//!   one for all connections) and writes it straight back; only what the socket does not
//!   take is copied into the connection's own buffer, so an idle connection holds none.
//! - When the phase is not `Open` and nothing is pending, `FinishWriting` sends the FIN.
//!
//! **What happens on `WouldBlock`.** Only the step functions call the socket, through one
//! helper that interprets its errors (`nonblocking`, in `src/connection/mod.rs`):
//! `WouldBlock` clears the `readable` (or `writable`) flag the connection keeps, `EINTR`
//! retries, anything else becomes the [`CloseReason`]. With the flag cleared, `next_step`
//! has nothing to do in that direction, and the connection waits for the poller's next
//! edge. A short read (fewer bytes than asked) clears `readable` too, saving the read that
//! would only say `WouldBlock`: the socket is drained, and new data raises a new edge. The
//! exception is a peer that has half-closed (the poller's read-closed flag): then the FIN is
//! still to be read, and no new edge would announce it. The drive returns an
//! [`Outcome`](crate::connection::Outcome) (bytes moved, pauses, whether its per-drive
//! budget ran out), and `drive_connection` accounts for it and files the connection:
//! finished, back in the ready queue (budget spent with work left: no edge will come for
//! it), or waiting for an edge. Should that edge never come although the socket has work
//! (a lost wake-up), [`reactor::watchdog`](crate::reactor::watchdog) finds the connection
//! within two seconds, re-drives it and counts it.
//!
//! **How the 10 MB client is served.** It sends 10 MB and reads nothing until it has sent
//! everything. Each drive reads its input; the write straight back succeeds until the
//! client's receive buffer and our send buffer are full, then says `WouldBlock`, and from
//! then on input is appended to pending output. Reading pauses at the high-water mark
//! ([`Connection::update_backpressure`]), which the reactor sets per drive: 256 KiB while the
//! peer reads what it is sent (as a plain copy loop, so a client that reads while it writes
//! is held back instead of queued for), and, once output has made no progress for 200 ms,
//! the allowance for a peer that stopped reading (`--max-pending`, 32 MiB by default, lowered
//! by the global memory budget when memory is short), far above what this client needs. A
//! connection paused at the small bound is woken at that moment, since no event would come
//! for it: [`Slot::wake_if_peer_stops`] arms a [`PeerStopsReading`] deadline, and
//! [`Server::wake_stopped_reader`] queues it when that is due. When it half-closes, the read
//! of 0 moves the phase to `PeerClosed`; once it reads, `WRITABLE` edges drive `flush` until
//! nothing is pending, then the server sends its FIN. Every byte comes back, in order
//! (`tests/tcp_echo.rs`, and `tests/minimal_example.rs` for the example).
//!
//! The phases (`Open`, `PeerClosed`, `Draining`, `Finishing`, `Lingering`, `Closed`) are
//! [`Phase`](crate::connection::Phase); the state diagram is in the [`connection`] module.
//!
//! # 3. Teardown: where connections are removed
//!
//! A connection that closes (its phase becomes `Closed(reason)`: the peer finished, a reset,
//! an error, a timeout, the drain deadline) is pushed on the `finished` queue and stays in
//! the slab until [`Server::remove_finished`] runs: after the batch of events (step 5), and
//! inside [`Server::check_timers`] (before each non-connection timer, and at its end; the
//! drain deadline's handler, `abort_remaining`, is one of those timers). It takes the key
//! out of the run queues (`fresh`, `ready`) and out of the slab, which drops the socket
//! (closing a descriptor removes it from epoll, so there is no `deregister`), and gives back what it held: its share of the memory budget, its
//! zero-copy pipe, its per-source count, a slot for accepting, and it counts the close reason
//! and any output it still owed as discarded. Deferring it to the batch's end means no slab
//! key, and therefore no token, is reused while an event for its previous owner may still
//! be in hand: the timers run after the batch, and close connections the same way.
//!
//! # 4. The policies, one at a time
//!
//! Each is a small type in its own file, asked by the loop at one point:
//!
//! - **Fairness.** Per-drive budgets (read and write, 256 KiB each, in
//!   [`Limits`](crate::connection::Limits)) and the turn's budget ([`reactor::turn`]); a
//!   connection cut short goes to the ready queue (at least one of it is driven each turn).
//! - **Admission.** [`reactor::admission`]: accept batches, `max_connections` and
//!   `max_per_source` (accept, then close at once, so the client reads EOF), and a pause
//!   instead of a busy loop when out of descriptors; [`descriptors`](crate::descriptors)
//!   divides the open-file limit.
//! - **Memory.** [`reactor::memory`](crate::reactor::memory): the global budget on pending output;
//!   [`Server::drive_connection`] asks it for each connection's limits before the drive.
//! - **Timers.** [`reactor::deadlines`](crate::reactor::deadlines): one registry of everything
//!   timed (a timer per kind: accept retry, pipe sweep, watchdog, group post, stats line,
//!   scrape expiry, drain end; and the connections' idle and stall deadlines in a min-heap
//!   with lazy re-arming); [`Server::check_timers`] fires what is due.
//! - **Shutdown.** [`reactor::shutdown`](crate::reactor::shutdown): a [`ShutdownHandle`]
//!   wakes the loop (a `mio::Waker`); listeners close, a quiet connection closes at once,
//!   every other one drains (flush, FIN, read until the peer's FIN), and a deadline cuts off
//!   the rest.
//! - **Zero copy.** [`reactor::pipes`] decides which bulk connections get a kernel pipe from
//!   spare descriptors; [`zero_copy`](crate::zero_copy) is the pipe and `splice(2)`;
//!   [`Connection::read_into_pipe`] is the step that uses it.
//! - **Services.** [`service`](crate::service): a sans-IO seam; a connection with a service
//!   hands its input to it instead of echoing ([`Connection::read_into_service`]), and a
//!   datagram goes to a fresh value of it
//!   ([`ServiceKind::answer_datagram`](crate::service::ServiceKind::answer_datagram)).
//! - **UDP.** The [`udp`](crate::udp) module: `recvmmsg`/`sendmmsg` batches, replies from the
//!   address a datagram was sent to, the reflection and loop guards, the bounded reply
//!   queue.
//! - **Several reactors.** [`ServerGroup`](crate::ServerGroup): N copies of this loop, one per
//!   thread, on one port; [`reactor::shared`] keeps the limits that are totals.
//! - **Counters.** [`Stats`](crate::Stats), bumped at every decision and declared as one
//!   table ([`counters`](crate::counters)) that also gives each counter's `key=value` pair,
//!   summary line and metric; the books balance per service; `report` makes the stats
//!   line; the `metrics` module (feature `metrics`) serves them to Prometheus from the same
//!   loop.
//!
//! The crate documentation's Layout lists every file under `src/`, one line each.
//!
//! [`Server::run`]: crate::Server::run
//! [`Server::turn`]: crate::Server::turn
//! [`Server::bind`]: crate::Server::bind
//! [`Server::dispatch`]: crate::Server::dispatch
//! [`Server::poll_timeout`]: crate::Server::poll_timeout
//! [`Server::on_wake`]: crate::Server::on_wake
//! [`Server::run_ready_work`]: crate::Server::run_ready_work
//! [`Server::drive_connection`]: crate::Server::drive_connection
//! [`Server::remove_finished`]: crate::Server::remove_finished
//! [`Server::check_timers`]: crate::Server::check_timers
//! [`Server::accept_batch`]: crate::Server::accept_batch
//! [`Server::wake_stopped_reader`]: crate::Server::wake_stopped_reader
//! [`Slot::wake_if_peer_stops`]: crate::reactor::slot::Slot::wake_if_peer_stops
//! [`PeerStopsReading`]: crate::reactor::deadlines::ConnectionTimer::PeerStopsReading
//! [`Connection::drive`]: crate::connection::Connection::drive
//! [`Connection::on_readiness`]: crate::connection::Connection::on_readiness
//! [`Connection::next_step`]: crate::connection::Connection::next_step
//! [`Connection::flush`]: crate::connection::Connection::flush
//! [`Connection::read_and_echo`]: crate::connection::Connection::read_and_echo
//! [`Connection::read_into_pipe`]: crate::connection::Connection::read_into_pipe
//! [`Connection::read_into_service`]: crate::connection::Connection::read_into_service
//! [`Connection::update_backpressure`]: crate::connection::Connection::update_backpressure
//! [`Config`]: crate::Config
//! [`CloseReason`]: crate::CloseReason
//! [`ShutdownHandle`]: crate::ShutdownHandle
//! [`connection`]: crate::connection
//! [`reactor::turn`]: crate::reactor::turn
//! [`reactor::slot`]: crate::reactor::slot
//! [`reactor::admission`]: crate::reactor::admission
//! [`reactor::pipes`]: crate::reactor::pipes
//! [`reactor::shared`]: crate::reactor::shared
