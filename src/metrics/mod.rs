//! The `/metrics` endpoint, served by the reactor itself: one more listener on the same
//! `mio::Poll`, and a handful of short scrape connections beside the echo connections.
//!
//! - [`exposition`]: the counters as a Prometheus text page (`prometheus-client`).
//! - `http`: the bounded HTTP/1.1 request/response logic, without sockets.
//! - `MetricsEndpoint` (here, crate-private: the loop's business): the sockets. Non-blocking like everything on the loop: a slow
//!   or silent scraper costs one slot and is closed at [`SCRAPE_TIMEOUT`]; each reads at most
//!   `http::MAX_REQUEST_HEAD` bytes of request. The page is rendered only once a request is
//!   complete, so a scrape costs the loop one render (tens of microseconds).
//!
//! # Nobody can lock the endpoint out
//! At most [`MAX_SCRAPES`] connections are held (64 descriptors and at most 8 KiB of request
//! each, 512 KiB in all). When all are taken, a new connection takes the slot of the one
//! accepted longest ago, which is closed: a real scraper sends its request as it connects and
//! is answered within a turn of the loop (a new connection is served at once if its request
//! is already there), so only connections that sit idle, trickle or stall grow old enough to
//! be evicted. Hundreds of silent, byte-at-a-time or oversized connections therefore cost
//! their own slots and nobody else's: a valid scrape is still answered at once.
//!
//! Two other policies were weighed and not used. A deadline for the request head alone frees
//! a slot only after the deadline (16 silent connections renewed each second lock the
//! endpoint out just as well), so it bounds how long a slot is held, not who gets one. A cap
//! per source address does nothing when the scraper and the hostile client share an address,
//! as on loopback or behind one NAT. The 5 s lifetime stays, for when no one needs the slot.
//!
//! After the response the server half-closes and reads until the scraper's FIN (or the
//! timeout) before closing: closing a socket with unread input makes the kernel send RST, and
//! an RST can destroy the response still in flight to the client.
//!
//! Compiled with the `metrics` feature (on by default, and needed by the binary); an
//! embedder who builds without it pays for neither the endpoint nor `prometheus-client`.

pub mod exposition;
mod http;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::stats::Stats;
use exposition::ScrapeCounts;
use http::Request;

/// Scrape connections held at once; when all are taken, a new one evicts the oldest.
pub const MAX_SCRAPES: usize = 64;
/// A scrape connection is closed this long after it was accepted, finished or not.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// The listener and its scrape connections. Tokens: the listener's, then a block of
/// [`MAX_SCRAPES`] tokens from `first_scrape` for the connections (token = first + slab key).
#[derive(Debug)]
pub(crate) struct MetricsEndpoint {
    listener: TcpListener,
    addr: SocketAddr,
    listener_token: Token,
    first_scrape: usize,
    scrapes: Slab<Scrape>,
    /// Responses sent and connections evicted, shown on the page itself.
    counts: ScrapeCounts,
    /// When evictions were last logged (at most one warning per [`EVICTION_LOG_PERIOD`]).
    eviction_logged: Option<Instant>,
}

/// Evictions are logged at most once per this period.
const EVICTION_LOG_PERIOD: Duration = Duration::from_secs(60);

/// One scraper's connection, from request to close.
#[derive(Debug)]
struct Scrape {
    socket: TcpStream,
    phase: Phase,
    deadline: Instant,
}

#[derive(Debug)]
enum Phase {
    /// Reading the request head.
    Reading(Vec<u8>),
    /// Writing the response; `usize` bytes of it are sent.
    Writing(Vec<u8>, usize),
    /// Response sent and write side shut: discard input until the peer's FIN.
    Lingering,
}

/// What one turn of I/O left a scrape connection as.
enum Next {
    Keep,
    Close,
}

impl MetricsEndpoint {
    /// Binds `addr` (port 0 works) and registers the listener with `listener_token`; scrape
    /// connections use the [`MAX_SCRAPES`] tokens from `first_scrape` on.
    pub(crate) fn bind(
        addr: SocketAddr,
        registry: &Registry,
        listener_token: Token,
        first_scrape: Token,
    ) -> io::Result<MetricsEndpoint> {
        let mut listener = TcpListener::bind(addr)?;
        registry.register(&mut listener, listener_token, Interest::READABLE)?;
        Ok(MetricsEndpoint {
            addr: listener.local_addr()?,
            listener,
            listener_token,
            first_scrape: first_scrape.0,
            scrapes: Slab::with_capacity(MAX_SCRAPES),
            counts: ScrapeCounts::default(),
            eviction_logged: None,
        })
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether `token` is the listener's or one of the scrape connections'.
    pub(crate) fn owns(&self, token: Token) -> bool {
        token == self.listener_token
            || (self.first_scrape..self.first_scrape + MAX_SCRAPES).contains(&token.0)
    }

    /// Handles readiness for one of this endpoint's tokens. `snapshot` is asked for the
    /// counters (one `Stats` per reactor) only when a complete request wants the page.
    pub(crate) fn on_ready(
        &mut self,
        registry: &Registry,
        token: Token,
        now: Instant,
        snapshot: &dyn Fn() -> Vec<Stats>,
    ) {
        if token == self.listener_token {
            self.accept_all(registry, now, snapshot);
            return;
        }
        let key = token.0.wrapping_sub(self.first_scrape);
        let Some(scrape) = self.scrapes.get_mut(key) else {
            return; // closed earlier in this batch
        };
        if let Next::Close = scrape.drive(snapshot, &mut self.counts) {
            self.scrapes.remove(key);
        }
    }

    /// When the next scrape connection times out, if any is open.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.scrapes.iter().map(|(_, s)| s.deadline).min()
    }

    /// Closes scrape connections past their deadline.
    pub(crate) fn expire(&mut self, now: Instant) {
        self.scrapes.retain(|_, scrape| scrape.deadline > now);
    }

    /// Accepts until `WouldBlock` (the backlog bounds it); with [`MAX_SCRAPES`] open, each
    /// new connection evicts the oldest. A new connection is driven at once: a scraper's
    /// request is usually there already, and is answered before anything can evict it.
    /// Errors (EMFILE included) end this round: the next connection attempt raises a new
    /// edge, and scrapers retry on their own.
    fn accept_all(&mut self, registry: &Registry, now: Instant, snapshot: &dyn Fn() -> Vec<Stats>) {
        loop {
            let (mut socket, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::debug!("metrics accept: {e}");
                    return;
                }
            };
            if self.scrapes.len() >= MAX_SCRAPES {
                self.evict_oldest(now);
            }
            let entry = self.scrapes.vacant_entry();
            let token = Token(self.first_scrape + entry.key());
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) = registry.register(&mut socket, token, interest) {
                log::debug!("metrics: cannot register {peer}: {e}");
                continue;
            }
            let key = entry.key();
            let scrape = entry.insert(Scrape {
                socket,
                phase: Phase::Reading(Vec::new()),
                deadline: now + SCRAPE_TIMEOUT,
            });
            if let Next::Close = scrape.drive(snapshot, &mut self.counts) {
                self.scrapes.remove(key);
            }
        }
    }

    /// Closes the connection accepted longest ago (the earliest deadline: all get the same
    /// lifetime), to make room. Its slab key, and so its token, may be reused at once by the
    /// new connection, and an event for the old one still in this batch would then drive the
    /// new one: harmless, as a drive only reads or writes until `WouldBlock`.
    fn evict_oldest(&mut self, now: Instant) {
        let Some(oldest) = self
            .scrapes
            .iter()
            .min_by_key(|(_, scrape)| scrape.deadline)
            .map(|(key, _)| key)
        else {
            return;
        };
        self.scrapes.remove(oldest);
        self.counts.evictions += 1;
        let log_now = self.eviction_logged.map_or(true, |at| {
            now.saturating_duration_since(at) >= EVICTION_LOG_PERIOD
        });
        if log_now {
            self.eviction_logged = Some(now);
            log::warn!(
                "metrics: all {MAX_SCRAPES} scrape slots were taken, so the connection \
                 waiting longest was closed to serve a new one ({} so far); silent or slow \
                 clients are holding the metrics port",
                self.counts.evictions
            );
        }
    }
}

impl Scrape {
    /// Does all the I/O the socket allows now, moving through the phases.
    fn drive(&mut self, snapshot: &dyn Fn() -> Vec<Stats>, counts: &mut ScrapeCounts) -> Next {
        loop {
            let step = match &mut self.phase {
                Phase::Reading(received) => {
                    read_request(&mut self.socket, received, snapshot, *counts)
                }
                Phase::Writing(response, sent) => write_response(&mut self.socket, response, sent),
                Phase::Lingering => return discard_until_eof(&mut self.socket),
            };
            match step {
                Step::Wait => return Next::Keep,
                Step::Close => return Next::Close,
                Step::Respond(response) => self.phase = Phase::Writing(response, 0),
                Step::Sent => {
                    counts.responses += 1;
                    if self.socket.shutdown(Shutdown::Write).is_err() {
                        return Next::Close;
                    }
                    self.phase = Phase::Lingering;
                }
            }
        }
    }
}

/// The outcome of one phase's I/O.
enum Step {
    /// `WouldBlock`: wait for the next event.
    Wait,
    Close,
    Respond(Vec<u8>),
    Sent,
}

fn read_request(
    socket: &mut TcpStream,
    received: &mut Vec<u8>,
    snapshot: &dyn Fn() -> Vec<Stats>,
    counts: ScrapeCounts,
) -> Step {
    let mut buf = [0u8; 1024];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return Step::Close, // gone before finishing its request
            Ok(n) => {
                let room = http::MAX_REQUEST_HEAD - received.len();
                received.extend_from_slice(&buf[..n.min(room)]);
                match http::parse(received) {
                    Request::Incomplete => {}
                    Request::Metrics { head_only } => {
                        let page = exposition::render_with(&snapshot(), Some(counts));
                        return Step::Respond(http::ok(exposition::CONTENT_TYPE, &page, head_only));
                    }
                    Request::Refused(status) => return Step::Respond(http::refused(status)),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Step::Close,
        }
    }
}

fn write_response(socket: &mut TcpStream, response: &[u8], sent: &mut usize) -> Step {
    while *sent < response.len() {
        match socket.write(&response[*sent..]) {
            Ok(0) => return Step::Close,
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Step::Close,
        }
    }
    Step::Sent
}

fn discard_until_eof(socket: &mut TcpStream) -> Next {
    let mut buf = [0u8; 1024];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return Next::Close,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Next::Close,
        }
    }
}
