//! Flow checks: a slow reader (backpressure), and how much a bulk stream delays a
//! ping-pong client on the same server (fairness, informational).

use super::compare::StreamRef;
use super::transfer::{self, Plan, ReadPace, Session};
use super::verdict::{bytes, CheckResult, Verdict};
use super::{judge, Ctx};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// `backpressure`: the client writes as fast as the server takes while reading 16 KiB at a
/// time with a 1 ms pause (and one 300 ms stop halfway), so the server's writes come up
/// short and it must keep or pause, never drop. Half-close at the end: then all, then FIN.
pub(crate) fn backpressure(ctx: &Ctx) -> CheckResult {
    let len = ctx.profile.backpressure_len;
    let plan = Plan {
        max_chunk: 256 << 10,
        pause_per_mille: 0,
        read_pace: ReadPace::Slow {
            chunk: 16 << 10,
            pause: Duration::from_millis(1),
            stop: Duration::from_millis(300),
        },
        half_close: true,
        ..Plan::new(ctx.key(0), len, ctx.key(1))
    };
    let outcome = transfer::run(ctx.target, &plan, &ctx.limits);
    let figure = format!(
        "{} to a reader of 16 KiB per ms with a 300 ms stop, in {:.2} s",
        bytes(len),
        outcome.elapsed.as_secs_f64()
    );
    judge(
        "backpressure",
        figure,
        vec![("the slow reader".into(), plan.key, outcome)],
    )
}

/// Round-trip times of 64-byte echoes on `session` for `period`.
fn round_trips(
    session: &mut Session,
    period: Duration,
) -> Result<Vec<Duration>, super::compare::Failure> {
    let mut times = Vec::new();
    let end = Instant::now() + period;
    while Instant::now() < end {
        let t = Instant::now();
        session.echo(64)?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(times)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn micros(d: Duration) -> u128 {
    d.as_micros()
}

/// `fairness` (informational): ping-pong round trips alone, then beside a client that
/// streams bulk data (256 KiB writes, reading at once). Fails only if a byte is wrong or a
/// client gets no answer within the timeout.
pub(crate) fn fairness(ctx: &Ctx) -> CheckResult {
    let period = ctx.profile.fairness_for;
    let mut session = match Session::open(ctx.target, ctx.key(0), &ctx.limits) {
        Ok(s) => s,
        Err(f) => return CheckResult::fail("fairness", "", format!("ping-pong client: {f}")),
    };
    let alone = match round_trips(&mut session, period) {
        Ok(t) => t,
        Err(f) => return CheckResult::fail("fairness", "", format!("ping-pong alone: {f}")),
    };
    let stop = AtomicBool::new(false);
    let stream_plan = Plan {
        max_chunk: 256 << 10,
        pause_per_mille: 0,
        half_close: true,
        ..Plan::new(ctx.key(1), 1 << 40, ctx.key(2))
    };
    let (beside, stream) = std::thread::scope(|scope| {
        let streamer =
            scope.spawn(|| transfer::run_until(ctx.target, &stream_plan, &ctx.limits, &stop));
        // Let the stream get going before measuring beside it.
        std::thread::sleep(Duration::from_millis(50));
        let beside = round_trips(&mut session, period);
        stop.store(true, Ordering::SeqCst);
        (beside, streamer.join())
    });
    let figure = |beside: &[Duration], rate: f64| {
        format!(
            "ping-pong p50/p99 {}/{} us alone, {}/{} us beside a {:.0} MiB/s stream",
            micros(percentile(&alone, 0.5)),
            micros(percentile(&alone, 0.99)),
            micros(percentile(beside, 0.5)),
            micros(percentile(beside, 0.99)),
            rate
        )
    };
    let stream = match stream {
        Ok(o) => o,
        Err(_) => return CheckResult::fail("fairness", "", "the streaming client panicked"),
    };
    let rate = stream.received as f64 / (1 << 20) as f64 / stream.elapsed.as_secs_f64();
    let beside = match beside {
        Ok(b) => b,
        Err(mut f) => {
            let own = StreamRef {
                label: String::new(),
                key: session.key(),
                sent: session.sent(),
            };
            f.explain(&own, &[]);
            return CheckResult::fail(
                "fairness",
                figure(&[], rate),
                format!("ping-pong beside the stream: {f}"),
            );
        }
    };
    let figure = figure(&beside, rate);
    if let Err(f) = &stream.result {
        return CheckResult::fail("fairness", figure, format!("streaming client: {f}"));
    }
    CheckResult {
        verdict: Verdict::Info,
        ..CheckResult::pass("fairness", figure)
    }
}
