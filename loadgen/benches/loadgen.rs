//! Micro-benchmarks of the load generator's per-message hot path: generating a payload,
//! verifying its echo, and recording a latency sample. Each must stay far below the cost of
//! the two syscalls (write + read) that a round trip needs, or the generator becomes the
//! bottleneck it is supposed to measure.
//!
//! `cargo bench --bench loadgen`; short runs (small samples, 2 s measurement per case).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use echoloop_bench::payload::Pattern;
use echoloop_bench::stats::new_histogram;
use std::time::Duration;

fn payload(c: &mut Criterion) {
    let mut g = c.benchmark_group("payload");
    let pattern = Pattern::new(0x5eed);
    for size in [64usize, 64 * 1024] {
        let mut buf = vec![0u8; size];
        // An odd offset, as in the middle of a stream: exercises the unaligned head.
        let offset = 12_345u64;
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("fill", size), &size, |b, _| {
            b.iter(|| pattern.fill(black_box(offset), black_box(&mut buf)))
        });
        pattern.fill(offset, &mut buf);
        g.bench_with_input(BenchmarkId::new("verify", size), &size, |b, _| {
            b.iter(|| pattern.verify(black_box(offset), black_box(&buf)))
        });
        g.bench_with_input(BenchmarkId::new("fill+verify", size), &size, |b, _| {
            b.iter(|| {
                pattern.fill(black_box(offset), &mut buf);
                pattern.verify(black_box(offset), black_box(&buf))
            })
        });
    }
    g.finish();
}

fn histogram(c: &mut Criterion) {
    let mut h = new_histogram();
    let mut v = 1u64;
    c.bench_function("histogram/record", |b| {
        b.iter(|| {
            // Spread values over µs..s like real latencies.
            v = v
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            h.saturating_record(black_box((v >> 40) + 1));
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = payload, histogram
}
criterion_main!(benches);
