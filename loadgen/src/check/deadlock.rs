//! The deadlock client: the tutorial client that writes everything before reading anything,
//! then half-closes and reads the echo back.
//!
//! Loopback's kernel buffers absorb roughly 9 MiB per connection, so a server that stops
//! reading whenever its own writes are pending survives small cases and hangs at 10 MiB: the
//! client blocks in `write`, the server in its own write, forever. At 10 MiB the server must
//! take everything, and read it: where the buffers happen to hold all 10 MiB, the server's
//! receive queue still shows the bytes it left unread (see [`super::queues`]). At 64 MiB a server with bounded memory is entitled to stop reading
//! (backpressure); the client then reads, and every byte must still come back, in order,
//! followed by the server's FIN.

use super::transfer::{self, Plan, ReadStart};
use super::verdict::{bytes, total, CheckResult};
use super::{judge, Ctx};

fn plan(ctx: &Ctx, len: u64, strict: bool) -> Plan {
    Plan {
        max_chunk: 256 << 10,
        pause_per_mille: 0,
        read_start: ReadStart::AfterWriting {
            stall: ctx.profile.stall,
            strict,
        },
        half_close: true,
        ..Plan::new(ctx.key(0), len, ctx.key(1))
    }
}

/// `deadlock-10m`: all 10 MiB are taken, and read by the server, before the client reads a
/// byte. Loopback's buffers hold about 10 MiB between a client and a server that has stopped
/// reading, so "the client finished writing" alone would pass such a server on some runs and
/// fail it on others; the server's receive queue (visible for a target on this host) tells
/// whether it read the bytes, the same way on every run.
pub(crate) fn ten_mib(ctx: &Ctx) -> CheckResult {
    let len = 10 << 20;
    let outcome = transfer::run(ctx.target, &plan(ctx, len, true), &ctx.limits);
    let read = match outcome.server_read_all {
        Some(true) => {
            "; the server read every byte before the client read (its receive queue emptied)"
        }
        Some(false) => {
            "; the server's socket is not visible from this host, so a pass shows only that \
             the socket buffers on the path held the data, not that the server read it"
        }
        None => "",
    };
    let figure = format!(
        "{} written before reading, then half-close, {} back in {:.2} s{read}",
        bytes(len),
        bytes(outcome.received),
        outcome.elapsed.as_secs_f64()
    );
    judge(
        "deadlock-10m",
        figure,
        vec![(String::new(), ctx.key(0), outcome)],
    )
}

/// `deadlock-64m`: 64 MiB written before reading; the server may pause reading, then all
/// of it comes back.
pub(crate) fn sixty_four_mib(ctx: &Ctx) -> CheckResult {
    let len = 64 << 20;
    let outcome = transfer::run(ctx.target, &plan(ctx, len, false), &ctx.limits);
    let taken = match outcome.taken_before_reading {
        Some(t) if t == len => format!("all {} taken before reading", bytes(len)),
        Some(t) => format!("{} taken before reading, then backpressure", bytes(t)),
        None => "nothing taken".into(),
    };
    let figure = format!(
        "{taken}; {} back after half-close in {:.2} s",
        total(outcome.received),
        outcome.elapsed.as_secs_f64()
    );
    judge(
        "deadlock-64m",
        figure,
        vec![(String::new(), ctx.key(0), outcome)],
    )
}
