//! The server's per-connection buffer path, without sockets: `Connection::drive` against an
//! in-memory stream.
//!
//! - `fast_path`: the socket takes every write, so input goes from the shared scratch buffer
//!   straight back and nothing is copied into the connection's own buffer.
//! - `slow_path`: the socket takes only half of each write at first, so the rest is buffered
//!   and flushed on the next writable event: the copy-and-flush cost that backpressure pays.
//!
//! Run: `cargo bench --bench connection_path`.

use std::io::{self, Read, Write};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use echoloop::connection::{Connection, Limits, NoPipe, Readiness, Stream};

/// A stream that has `message` ready to read once per `arm`, and whose writes take at most
/// `accept` bytes before saying `WouldBlock`.
struct MemoryStream {
    message: Vec<u8>,
    readable: bool,
    accept: usize,
    taken: usize,
}

impl MemoryStream {
    fn arm(&mut self, accept: usize) {
        self.readable = true;
        self.accept = accept;
        self.taken = 0;
    }
}

impl Read for MemoryStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.readable {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.readable = false;
        let n = self.message.len().min(buf.len());
        buf[..n].copy_from_slice(&self.message[..n]);
        Ok(n)
    }
}

impl Write for MemoryStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.accept - self.taken;
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = data.len().min(room);
        self.taken += n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream for MemoryStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn limits() -> Limits {
    Limits {
        high_water: 32 << 20,
        low_water: 8 << 20,
        read_budget: 256 << 10,
        write_budget: 256 << 10,
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("connection_drive");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    let limits = limits();
    let mut scratch = vec![0u8; 256 << 10];
    for size in [64usize, 65_536] {
        group.throughput(Throughput::Bytes(size as u64));
        let mut io = MemoryStream {
            message: vec![0x42; size],
            readable: false,
            accept: 0,
            taken: 0,
        };

        let mut conn = Connection::<NoPipe>::new();
        group.bench_function(BenchmarkId::new("fast_path", size), |b| {
            b.iter(|| {
                io.arm(usize::MAX);
                conn.on_readiness(Readiness::READABLE | Readiness::WRITABLE);
                conn.drive(&mut io, &mut scratch, &limits)
            });
        });

        let mut conn = Connection::<NoPipe>::new();
        group.bench_function(BenchmarkId::new("slow_path", size), |b| {
            b.iter(|| {
                // Half goes out, half is buffered; then a writable event flushes the rest.
                io.arm(size / 2);
                conn.on_readiness(Readiness::READABLE | Readiness::WRITABLE);
                conn.drive(&mut io, &mut scratch, &limits);
                io.accept = usize::MAX;
                conn.on_readiness(Readiness::WRITABLE);
                let outcome = conn.drive(&mut io, &mut scratch, &limits);
                assert_eq!(conn.pending(), 0);
                outcome
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
