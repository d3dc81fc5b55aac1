//! Connection lifecycle checks: the first echo, half-close, churn (many short connections,
//! some ending in a reset) and idle connections.

use super::compare::{Failure, StreamRef};
use super::transfer::{self, Plan, Session};
use super::verdict::{bytes, CheckResult};
use super::{judge, Ctx};
use crate::payload::Rng;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// `connect`: a connection opens and one byte comes back.
pub(crate) fn connect(ctx: &Ctx) -> CheckResult {
    let start = Instant::now();
    let result = Session::open(ctx.target, ctx.key(0), &ctx.limits).and_then(|mut s| s.echo(1));
    match result {
        Ok(()) => CheckResult::pass(
            "connect",
            format!(
                "1 byte echoed in {:.2} ms",
                start.elapsed().as_secs_f64() * 1e3
            ),
        ),
        Err(f) => CheckResult::fail("connect", "1 byte", f.to_string()),
    }
}

/// `half-close`: for each size, write it, send FIN, and require every byte, then FIN.
pub(crate) fn half_close(ctx: &Ctx) -> CheckResult {
    let sizes = ctx.profile.half_close_sizes;
    let mut outcomes = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        let key = ctx.key(i as u64);
        let plan = Plan {
            half_close: true,
            ..Plan::new(key, len, ctx.key(1000 + i as u64))
        };
        let outcome = transfer::run(ctx.target, &plan, &ctx.limits);
        let failed = outcome.result.is_err();
        outcomes.push((format!("size {}", bytes(len)), key, outcome));
        if failed {
            break;
        }
    }
    let list: Vec<String> = sizes.iter().map(|&s| bytes(s)).collect();
    let figure = format!("FIN after the last byte at {}", list.join(", "));
    judge("half-close", figure, outcomes)
}

/// Concurrent loops of the churn check.
const CHURN_LOOPS: usize = 4;
/// One churn cycle in this many ends in a reset with the echo still in flight.
const RESET_EVERY: usize = 8;

/// `churn`: connect, echo 1 B..1 KiB, close, over and over on a few loops at once; every
/// eighth connection is reset (SO_LINGER 0) with its echo unread. Then a fresh connection
/// must still echo.
pub(crate) fn churn(ctx: &Ctx) -> CheckResult {
    let cycles = ctx.profile.churn_cycles;
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_failure: Mutex<Option<String>> = Mutex::new(None);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..CHURN_LOOPS {
            scope.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= cycles {
                        return;
                    }
                    if start.elapsed() > ctx.limits.deadline {
                        if let Ok(mut slot) = first_failure.lock() {
                            slot.get_or_insert(format!(
                                "too slow: {i} of {cycles} connections within {:.0} s",
                                ctx.limits.deadline.as_secs_f64()
                            ));
                        }
                        stop.store(true, Ordering::SeqCst);
                        return;
                    }
                    if let Err(f) = churn_cycle(ctx, i) {
                        if let Ok(mut slot) = first_failure.lock() {
                            slot.get_or_insert(format!("connection {i}: {f}"));
                        }
                        stop.store(true, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let elapsed = start.elapsed();
    let figure = format!(
        "{cycles} connections ({} reset mid-echo), {:.0} connections/s",
        cycles / RESET_EVERY,
        cycles as f64 / elapsed.as_secs_f64()
    );
    if let Some(why) = first_failure.into_inner().ok().flatten() {
        return CheckResult::fail("churn", figure, why);
    }
    let after =
        Session::open(ctx.target, ctx.key(u64::MAX), &ctx.limits).and_then(|mut s| s.echo(64));
    match after {
        Ok(()) => CheckResult::pass("churn", figure),
        Err(f) => CheckResult::fail("churn", figure, format!("after the churn: {f}")),
    }
}

fn churn_cycle(ctx: &Ctx, i: usize) -> Result<(), Failure> {
    let mut rng = Rng::new(ctx.key(1 << 40 | i as u64));
    let len = 1 + (rng.next_u64() % 1024) as usize;
    let mut session = Session::open(ctx.target, ctx.key(i as u64), &ctx.limits)?;
    if i % RESET_EVERY == RESET_EVERY - 1 {
        // Closing with unread input (the echo on its way) makes our kernel send RST.
        session.send(len)?;
        let _ = socket2::SockRef::from(session.socket()).set_linger(Some(Default::default()));
        return Ok(());
    }
    session.echo(len)
}

/// `idle`: connections echo, stay silent for a while, and echo again.
pub(crate) fn idle(ctx: &Ctx) -> CheckResult {
    let p = ctx.profile;
    let figure = format!(
        "{} connections silent for {:.1} s, then echo",
        p.idle_connections,
        p.idle_for.as_secs_f64()
    );
    let fail = |c: usize, s: Option<&Session>, when: &str, mut f: Failure| {
        if let Some(s) = s {
            let own = StreamRef {
                label: String::new(),
                key: s.key(),
                sent: s.sent(),
            };
            f.explain(&own, &[]);
        }
        CheckResult::fail(
            "idle",
            figure.clone(),
            format!("connection {c} {when}: {f}"),
        )
    };
    let mut sessions = Vec::new();
    for c in 0..p.idle_connections {
        match Session::open(ctx.target, ctx.key(c as u64), &ctx.limits) {
            Ok(mut s) => match s.echo(100) {
                Ok(()) => sessions.push(s),
                Err(f) => return fail(c, Some(&s), "before the silence", f),
            },
            Err(f) => return fail(c, None, "before the silence", f),
        }
    }
    std::thread::sleep(p.idle_for);
    for (c, s) in sessions.iter_mut().enumerate() {
        if let Err(f) = s.echo(100) {
            return fail(c, Some(s), "after the silence", f);
        }
    }
    CheckResult::pass("idle", figure)
}
