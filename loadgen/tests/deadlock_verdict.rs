//! `deadlock-10m` gives one server one verdict, run after run. The textbook asyncio echo
//! server (awaiting `drain()` after each write) stops reading while its echo is not read;
//! loopback's socket buffers hold about 10 MiB between it and the client, so whether the
//! client could finish writing 10 MiB varies from run to run. The check therefore also asks
//! whether the server *read* the bytes (its receive queue, visible for a loopback target):
//! a server that stopped reading fails every time, even where the buffers held everything,
//! and echoloop passes every time with the server's read seen.
//!
//! The asyncio server is a python3 child on 127.0.0.1, port 0, killed on drop; the tests
//! skip (and say so) where python3 is missing.

mod support_loadgen;

use echoloop_bench::check::compare::Failure;
use echoloop_bench::check::transfer::{self, Limits, Plan, ReadStart};
use echoloop_bench::check::{self, CheckOptions, Verdict};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support_loadgen::Echoloop;

/// The asyncio tutorial's echo server, as people write it.
const DRAIN_SERVER: &str = r#"
import asyncio
async def handle(reader, writer):
    while True:
        data = await reader.read(65536)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"#;

/// The python3 child, killed and reaped on drop.
struct DrainServer {
    addr: SocketAddr,
    child: Child,
}

impl DrainServer {
    /// None (with a note) where python3 cannot be run.
    fn start() -> Option<DrainServer> {
        let mut child = match Command::new("python3")
            .args(["-c", DRAIN_SERVER])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipped: cannot run python3: {e}");
                return None;
            }
        };
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let read = BufReader::new(stdout).read_line(&mut line);
        let port: u16 = match read.ok().and_then(|_| line.trim().parse().ok()) {
            Some(p) => p,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the asyncio server printed no port: {line:?}");
            }
        };
        Some(DrainServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
        })
    }
}

impl Drop for DrainServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `deadlock-10m` alone, quick profile.
fn deadlock_10m(target: SocketAddr) -> check::CheckResult {
    let mut opts = CheckOptions::new(target);
    opts.quick = true;
    opts.only = vec!["deadlock-10m".into()];
    let report = check::run(&opts).expect("valid options");
    eprintln!("{}", report.human());
    report.get("deadlock-10m").expect("it ran").clone()
}

/// Five runs against the asyncio server: five FAILs.
#[test]
fn the_drain_awaiting_server_fails_every_run() {
    let Some(server) = DrainServer::start() else {
        return;
    };
    for run in 1..=5 {
        let r = deadlock_10m(server.addr);
        assert_eq!(r.verdict, Verdict::Fail, "run {run}: {}", r.line());
        assert!(
            r.detail
                .as_deref()
                .is_some_and(|d| d.contains("stopped reading")),
            "run {run}: {}",
            r.line()
        );
    }
}

/// Where the buffers do hold everything the client writes (8 MiB here), the client finishes
/// writing, and the server is still caught: the bytes sit unread in its receive queue.
#[cfg(target_os = "linux")]
#[test]
fn bytes_the_buffers_held_but_the_server_never_read_fail() {
    let Some(server) = DrainServer::start() else {
        return;
    };
    let limits = Limits {
        connect: Duration::from_secs(2),
        io: Duration::from_secs(2),
        deadline: Duration::from_secs(15),
    };
    for run in 1..=3 {
        let plan = Plan {
            max_chunk: 256 << 10,
            pause_per_mille: 0,
            read_start: ReadStart::AfterWriting {
                stall: Duration::from_secs(1),
                strict: true,
            },
            half_close: true,
            ..Plan::new(7, 8 << 20, 8)
        };
        let outcome = transfer::run(server.addr, &plan, &limits);
        match &outcome.result {
            Err(Failure::HeldInBuffers { sent, held, .. }) => {
                assert_eq!(*sent, 8 << 20, "run {run}");
                assert!(*held > 0, "run {run}");
            }
            other => panic!("run {run}: expected the unread bytes to be caught, got {other:?}"),
        }
    }
}

/// echoloop reads everything it is sent: three passes, each saying the server's read was
/// seen.
#[cfg(target_os = "linux")]
#[test]
fn echoloop_passes_every_run_with_its_read_seen() {
    let server = Echoloop::start();
    for run in 1..=3 {
        let r = deadlock_10m(server.addr);
        assert_eq!(r.verdict, Verdict::Pass, "run {run}: {}", r.line());
        assert!(
            r.figure.contains("the server read every byte"),
            "run {run}: {}",
            r.line()
        );
    }
}
