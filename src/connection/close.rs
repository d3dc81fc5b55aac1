//! How a connection ended: the close reasons the state machine decides and the reactor counts.
//! They live with the connection, which is a leaf of the module graph: `stats` counts them,
//! the connection never looks at a counter.

/// How one connection ended. Counted in [`Stats`](crate::Stats); never an error that escapes
/// the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer half-closed; everything pending was echoed, then we closed our side.
    PeerClosed,
    /// The peer is gone: the connection was reset or aborted (`ECONNRESET`, `ECONNABORTED`),
    /// a write found it closed (`EPIPE`), or the socket is no longer connected (`ENOTCONN`).
    Reset,
    /// Any other I/O error, or a write that took none of the bytes offered.
    IoError,
    /// Server shutdown: the connection drained and closed in order.
    Shutdown,
    /// Server shutdown: the drain deadline passed with output still pending.
    DrainTimeout,
    /// No byte moved either way for the idle timeout.
    IdleTimeout,
    /// Output was pending with no write progress for the stall timeout (a client that
    /// writes but does not read).
    StallTimeout,
}
