//! Integrity checks: the echo is exactly the bytes sent, at every size, on many connections
//! at once, and for pipelined requests.

use super::compare::{Failure, StreamRef};
use super::transfer::{self, Plan, Session};
use super::verdict::{bytes, total as amount, CheckResult};
use super::{judge, Ctx};
use crate::payload::Rng;

/// `integrity-sizes`: one connection per size, 1 B to 16 MiB, random chunks and pauses.
pub(crate) fn sizes(ctx: &Ctx) -> CheckResult {
    let sizes = ctx.profile.sizes;
    let mut outcomes = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        let key = ctx.key(i as u64);
        let plan = Plan::new(key, len, ctx.key(1000 + i as u64));
        let outcome = transfer::run(ctx.target, &plan, &ctx.limits);
        let failed = outcome.result.is_err();
        outcomes.push((format!("size {}", bytes(len)), key, outcome));
        if failed {
            break; // One broken size says it; the rest would only repeat the timeout.
        }
    }
    let total: u64 = sizes.iter().sum();
    let figure = format!(
        "{} sizes {}..{} ({} in all), random chunks and pauses",
        sizes.len(),
        bytes(sizes[0]),
        bytes(sizes[sizes.len() - 1]),
        amount(total)
    );
    judge("integrity-sizes", figure, outcomes)
}

/// `crosstalk`: waves of concurrent connections with distinct content; each wave opens
/// after the previous one closed, since buffers reused after a disconnect are where data
/// of one connection leaks into another.
pub(crate) fn crosstalk(ctx: &Ctx) -> CheckResult {
    let p = ctx.profile;
    let mut rng = Rng::new(ctx.seed);
    let mut all = Vec::new();
    let mut total = 0u64;
    for wave in 0..p.crosstalk_waves {
        let plans: Vec<(String, Plan)> = (0..p.crosstalk_connections)
            .map(|c| {
                let n = (wave * p.crosstalk_connections + c) as u64;
                let len = 1 + rng.next_u64() % p.crosstalk_max;
                let mut plan = Plan::new(ctx.key(n), len, ctx.key(1 << 32 | n));
                plan.max_chunk = 16 << 10;
                (format!("connection {n} (wave {wave})"), plan)
            })
            .collect();
        total += plans.iter().map(|(_, p)| p.len).sum::<u64>();
        let outcomes: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = plans
                .iter()
                .map(|(_, plan)| scope.spawn(|| transfer::run(ctx.target, plan, &ctx.limits)))
                .collect();
            handles.into_iter().map(|h| h.join()).collect()
        });
        for ((label, plan), outcome) in plans.into_iter().zip(outcomes) {
            let outcome = outcome.unwrap_or_else(|_| panicked(plan.len));
            all.push((label, plan.key, outcome));
        }
        if all.iter().any(|(_, _, o)| o.result.is_err()) {
            break;
        }
    }
    let figure = format!(
        "{} connections x {} waves, {} echoed, each its own content",
        p.crosstalk_connections,
        p.crosstalk_waves,
        amount(total)
    );
    judge("crosstalk", figure, all)
}

fn panicked(len: u64) -> transfer::Outcome {
    transfer::Outcome {
        result: Err(Failure::Io {
            step: "client",
            error: format!("the client thread for {len} bytes panicked"),
        }),
        sent: 0,
        received: 0,
        taken_before_reading: None,
        server_read_all: None,
        elapsed: Default::default(),
    }
}

/// `pipelined`: bursts of 1 to 64 requests of 1 to 1,500 bytes, each burst written in one
/// call before any reply is read, then read back whole.
pub(crate) fn pipelined(ctx: &Ctx) -> CheckResult {
    let p = ctx.profile;
    let mut rng = Rng::new(ctx.seed);
    let (mut requests, mut total) = (0u64, 0u64);
    for c in 0..p.pipelined_connections {
        let key = ctx.key(c as u64);
        let label = format!("connection {c}");
        let fail = |session: Option<&Session>, mut f: Failure, burst: usize, done: u64| {
            let sent = session.map_or(0, Session::sent);
            f.explain(
                &StreamRef {
                    label: label.clone(),
                    key,
                    sent,
                },
                &[],
            );
            CheckResult::fail(
                "pipelined",
                format!("{done} requests before the failure"),
                format!("{label}, burst {burst}: {f}"),
            )
        };
        let mut session = match Session::open(ctx.target, key, &ctx.limits) {
            Ok(s) => s,
            Err(f) => return fail(None, f, 0, requests),
        };
        for burst in 0..p.pipelined_bursts {
            let count = 1 + (rng.next_u64() % 64) as usize;
            let len: usize = (0..count)
                .map(|_| 1 + (rng.next_u64() % 1500) as usize)
                .sum();
            if let Err(f) = session.echo(len) {
                return fail(Some(&session), f, burst, requests);
            }
            requests += count as u64;
            total += len as u64;
        }
    }
    CheckResult::pass(
        "pipelined",
        format!(
            "{requests} requests in {} bursts on {} connections, {} echoed",
            p.pipelined_bursts * p.pipelined_connections,
            p.pipelined_connections,
            amount(total)
        ),
    )
}
