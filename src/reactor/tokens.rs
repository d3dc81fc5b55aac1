//! Tokens: which source an event is for. A few fixed tokens (the waker, the metrics endpoint)
//! sit at the top of the range, then a block for TCP listeners and one for UDP sockets; a
//! connection's token is its slab key, far below. A stale token (an event for a connection
//! closed earlier in the batch) names a slab entry that is gone or reused only after the batch:
//! see the teardown in `reactor/mod.rs`.

use mio::Token;

/// The waker and the metrics endpoint's at the top; below them a block
/// for TCP listeners and one for UDP sockets, numbered down from the top of each block;
/// connection tokens are slab keys, far below. `usize::MAX` and the two tokens below it are
/// unused (they named the one listener and the one UDP socket before those had blocks of
/// their own); nothing depends on the exact values, only on the ranges not overlapping.
pub(super) const WAKER: Token = Token(usize::MAX - 3);
/// The metrics listener, below the other reserved tokens.
#[cfg(feature = "metrics")]
pub(super) const METRICS_LISTENER: Token = Token(usize::MAX - 4);
/// The scrape connections take the `MAX_SCRAPES` tokens below the listener's.
#[cfg(feature = "metrics")]
pub(super) const METRICS_FIRST_SCRAPE: Token =
    Token(METRICS_LISTENER.0 - crate::metrics::MAX_SCRAPES);
/// Most listeners (and, separately, UDP sockets) one server binds.
pub(super) const MAX_SOCKETS: usize = 1 << 16;
const _: () = assert!(crate::config::MAX_LISTENERS <= MAX_SOCKETS);
/// Tokens above this are reserved (waker, metrics).
const LISTENERS_TOP: usize = usize::MAX - 1024;
#[cfg(feature = "metrics")]
const _: () = assert!(METRICS_FIRST_SCRAPE.0 > LISTENERS_TOP);
const UDP_TOP: usize = LISTENERS_TOP - MAX_SOCKETS;
const CONNECTIONS_END: usize = UDP_TOP - MAX_SOCKETS;

/// What an event's token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Waker,
    /// Another reserved token: the metrics endpoint's.
    Reserved,
    /// `listeners[i]`.
    Listener(usize),
    /// `udp[i]`.
    Udp(usize),
    /// The slab key of a connection.
    Connection(usize),
}

impl Source {
    /// What `token` names.
    pub(super) fn of(token: Token) -> Source {
        match token.0 {
            t if t == WAKER.0 => Source::Waker,
            t if t > LISTENERS_TOP => Source::Reserved,
            t if t > UDP_TOP => Source::Listener(LISTENERS_TOP - t),
            t if t > CONNECTIONS_END => Source::Udp(UDP_TOP - t),
            key => Source::Connection(key),
        }
    }

    /// The token of `listeners[index]`.
    pub(super) fn listener_token(index: usize) -> Token {
        Token(LISTENERS_TOP - index)
    }

    /// The token of `udp[index]`.
    pub(super) fn udp_token(index: usize) -> Token {
        Token(UDP_TOP - index)
    }
}
