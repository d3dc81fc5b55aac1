//! `stall-hunt`: a long-running client that hunts for a connection that stops being served
//! (a lost wake-up) on an echo server, run by `scripts/stress.sh --stall-hunt`.
//!
//! ```text
//! stall-hunt --addr 127.0.0.1:7007 --seconds 1800 [--bulk 6] [--pingers 16] [--seed N]
//!            [--report-gap-ms 2000] [--give-up-ms 120000]
//! ```
//!
//! Two kinds of clients run side by side until `--seconds` pass:
//! - **bulk**: a writer thread sends bursts of 64 KiB to 32 MiB (log-uniform) in chunks of
//!   4-256 KiB, with random pauses (0-1.5 s, so the server's zero-copy pipe is taken back and
//!   given again) between bursts; a reader thread reads the echo, checks every byte against a
//!   position-keyed pattern, and now and then stops reading for up to half a second (so the
//!   server's backpressure pauses and resumes). A connection lives 10-90 s, then half-closes,
//!   reads to EOF and checks the totals; then a new one starts.
//! - **pingers**: 64-byte ping-pong with a 0-20 ms think time.
//!
//! Every client records its longest *gap*: time during which it was owed bytes and got none
//! (a bulk reader's own deliberate pauses do not count; a pinger's gap is its round trip).
//! A gap over `--report-gap-ms` prints the kernel's view of both ends (`ss -tmni`), which
//! tells a server that lost its wake-up (its receive queue full) from TCP backing off (data
//! still in the client's send queue). A gap over `--give-up-ms` abandons that connection
//! (counted as stuck) so the run goes on. The last line is a JSON summary; the exit status
//! is 1 if any connection was stuck or a byte came back wrong, else 0.
//!
//! Traffic goes only to `--addr`, which must be a loopback address.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use echoloop_testkit::Rng;

/// How often a blocked read or write looks at the clock.
const TICK: Duration = Duration::from_millis(100);

#[derive(Clone)]
struct Options {
    addr: SocketAddr,
    seconds: u64,
    bulk: usize,
    pingers: usize,
    seed: u64,
    report_gap: Duration,
    give_up: Duration,
}

/// What all clients found, merged.
#[derive(Default)]
struct Findings {
    bulk_conns: u64,
    bulk_bytes: u64,
    pings: u64,
    /// Longest gap of a bulk reader, and when (seconds into the run) and on which port.
    bulk_gap: Duration,
    bulk_gap_at: f64,
    bulk_gap_port: u16,
    pinger_gap: Duration,
    gaps_over_1s: u64,
    gaps_over_5s: u64,
    stuck: u64,
    corrupt: u64,
    errors: u64,
}

fn usage(why: &str) -> ! {
    eprintln!("stall-hunt: {why}");
    eprintln!(
        "usage: stall-hunt --addr ADDR --seconds N [--bulk N] [--pingers N] [--seed N] \
         [--report-gap-ms N] [--give-up-ms N]"
    );
    std::process::exit(2)
}

fn parse_options() -> Options {
    let mut args = std::env::args().skip(1);
    let mut addr = None;
    let mut options = Options {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        seconds: 60,
        bulk: 6,
        pingers: 16,
        seed: 1,
        report_gap: Duration::from_secs(2),
        give_up: Duration::from_secs(120),
    };
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        let number = |text: String| -> u64 {
            text.parse()
                .unwrap_or_else(|_| usage(&format!("'{text}' is not a number")))
        };
        match flag.as_str() {
            "--addr" => {
                let text = value();
                addr = Some(
                    text.parse::<SocketAddr>()
                        .unwrap_or_else(|_| usage(&format!("'{text}' is not an address"))),
                );
            }
            "--seconds" => options.seconds = number(value()),
            "--bulk" => options.bulk = number(value()) as usize,
            "--pingers" => options.pingers = number(value()) as usize,
            "--seed" => options.seed = number(value()),
            "--report-gap-ms" => options.report_gap = Duration::from_millis(number(value())),
            "--give-up-ms" => options.give_up = Duration::from_millis(number(value())),
            other => usage(&format!("unknown argument '{other}'")),
        }
    }
    options.addr = addr.unwrap_or_else(|| usage("--addr is required"));
    if !options.addr.ip().is_loopback() {
        usage("--addr must be a loopback address");
    }
    options
}

/// Byte `i` of every bulk stream (as `echoloop_testkit::pattern`, keyed by stream offset).
fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8 ^ (i >> 16) as u8
}

fn main() {
    let options = parse_options();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.seconds);
    let findings = Arc::new(Mutex::new(Findings::default()));
    eprintln!(
        "stall-hunt: {} bulk clients, {} pingers against {} for {} s (seed {})",
        options.bulk, options.pingers, options.addr, options.seconds, options.seed
    );
    let mut threads = Vec::new();
    for i in 0..options.bulk {
        let (options, findings) = (options.clone(), Arc::clone(&findings));
        threads.push(thread::spawn(move || {
            let mut rng = Rng::new(options.seed.wrapping_mul(1000).wrapping_add(i as u64));
            while Instant::now() + Duration::from_secs(2) < deadline {
                bulk_connection(&options, &mut rng, started, deadline, &findings);
            }
        }));
    }
    for i in 0..options.pingers {
        let (options, findings) = (options.clone(), Arc::clone(&findings));
        threads.push(thread::spawn(move || {
            let mut rng = Rng::new(options.seed.wrapping_mul(1000).wrapping_add(500 + i as u64));
            pinger(&options, &mut rng, deadline, &findings);
        }));
    }
    // A progress line a minute, so a long run shows it is alive.
    while Instant::now() < deadline {
        thread::sleep(Duration::from_secs(60).min(deadline - Instant::now()));
        let f = lock(&findings);
        eprintln!(
            "stall-hunt: {:.0} s: {} bulk connections, {} MiB echoed, {} pings; longest gap \
             bulk {:.3} s, pinger {:.3} s; stuck {}",
            started.elapsed().as_secs_f64(),
            f.bulk_conns,
            f.bulk_bytes >> 20,
            f.pings,
            f.bulk_gap.as_secs_f64(),
            f.pinger_gap.as_secs_f64(),
            f.stuck
        );
    }
    for t in threads {
        if t.join().is_err() {
            lock(&findings).errors += 1;
        }
    }
    let f = lock(&findings);
    println!(
        "{{\"seconds\":{:.0},\"bulk_clients\":{},\"pingers\":{},\"bulk_connections\":{},\
         \"bulk_mib\":{},\"pings\":{},\"longest_gap_bulk_s\":{:.3},\"longest_gap_bulk_at_s\":{:.0},\
         \"longest_gap_bulk_port\":{},\"longest_gap_pinger_s\":{:.3},\"gaps_over_1s\":{},\
         \"gaps_over_5s\":{},\"stuck\":{},\"corrupt\":{},\"errors\":{}}}",
        started.elapsed().as_secs_f64(),
        options.bulk,
        options.pingers,
        f.bulk_conns,
        f.bulk_bytes >> 20,
        f.pings,
        f.bulk_gap.as_secs_f64(),
        f.bulk_gap_at,
        f.bulk_gap_port,
        f.pinger_gap.as_secs_f64(),
        f.gaps_over_1s,
        f.gaps_over_5s,
        f.stuck,
        f.corrupt,
        f.errors
    );
    if f.stuck > 0 || f.corrupt > 0 {
        std::process::exit(1);
    }
}

fn lock(findings: &Mutex<Findings>) -> std::sync::MutexGuard<'_, Findings> {
    findings.lock().unwrap_or_else(|e| e.into_inner())
}

fn connect(addr: SocketAddr) -> Option<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream.set_nodelay(true).ok()?;
    stream.set_read_timeout(Some(TICK)).ok()?;
    stream.set_write_timeout(Some(TICK)).ok()?;
    Some(stream)
}

/// Prints the kernel's view of both ends of the connection from local port `port`.
fn dump_sockets(port: u16, gap: Duration) {
    let filter = format!("( sport = :{port} or dport = :{port} )");
    let out = Command::new("ss").args(["-tmni", &filter]).output();
    let text = out.map_or_else(
        |e| format!("(ss failed: {e})"),
        |o| String::from_utf8_lossy(&o.stdout).into_owned(),
    );
    eprintln!(
        "stall-hunt: port {port} owed bytes and got none for {:.1} s; sockets:\n{text}",
        gap.as_secs_f64()
    );
}

/// One bulk connection, from connect to the checked EOF (or to being abandoned as stuck).
fn bulk_connection(
    options: &Options,
    rng: &mut Rng,
    started: Instant,
    run_deadline: Instant,
    findings: &Mutex<Findings>,
) {
    let Some(stream) = connect(options.addr) else {
        lock(findings).errors += 1;
        thread::sleep(Duration::from_millis(200));
        return;
    };
    let port = stream.local_addr().map_or(0, |a| a.port());
    let Ok(mut reader) = stream.try_clone() else {
        lock(findings).errors += 1;
        return;
    };
    let mut writer = stream;
    lock(findings).bulk_conns += 1;
    let lifetime = Duration::from_secs(rng.range(10, 90) as u64);
    let deadline = (Instant::now() + lifetime).min(run_deadline);
    let sent = Arc::new(AtomicU64::new(0));
    let abandon = Arc::new(AtomicBool::new(false));
    let writer_seed = rng.next_u64();
    let writer_thread = {
        let (sent, abandon) = (Arc::clone(&sent), Arc::clone(&abandon));
        thread::spawn(move || {
            let mut rng = Rng::new(writer_seed);
            let mut chunk = vec![0u8; 256 * 1024];
            let mut offset = 0u64;
            'run: while Instant::now() < deadline && !abandon.load(Ordering::Relaxed) {
                // Log-uniform burst size: 64 KiB .. 32 MiB.
                let burst = 1u64 << rng.range(16, 25);
                let end = offset + burst;
                while offset < end {
                    let len = rng.range(4096, chunk.len()).min((end - offset) as usize);
                    for (k, byte) in chunk[..len].iter_mut().enumerate() {
                        *byte = pattern_byte(offset + k as u64);
                    }
                    let mut done = 0;
                    while done < len {
                        if abandon.load(Ordering::Relaxed) || Instant::now() > deadline {
                            break 'run;
                        }
                        match writer.write(&chunk[done..len]) {
                            Ok(n) => {
                                done += n;
                                offset += n as u64;
                                sent.store(offset, Ordering::Release);
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    ErrorKind::WouldBlock
                                        | ErrorKind::TimedOut
                                        | ErrorKind::Interrupted
                                ) => {}
                            Err(_) => return false,
                        }
                    }
                }
                // Pauses: often none, often past the server's 1 s pipe-idle sweep.
                let pause = match rng.range(0, 3) {
                    0 => 0,
                    1 => rng.range(1, 50),
                    _ => rng.range(200, 1500),
                };
                thread::sleep(Duration::from_millis(pause as u64));
            }
            writer.shutdown(Shutdown::Write).is_ok()
        })
    };
    let mut buf = vec![0u8; 256 * 1024];
    let mut received = 0u64;
    let mut last = Instant::now();
    let mut longest = Duration::ZERO;
    let mut reported = false;
    let mut over_1s = false;
    let mut over_5s = false;
    let mut stuck = false;
    let mut corrupt = false;
    let mut eof = false;
    while !eof {
        match reader.read(&mut buf) {
            Ok(0) => eof = true,
            Ok(n) => {
                if !corrupt
                    && buf[..n]
                        .iter()
                        .enumerate()
                        .any(|(k, &b)| b != pattern_byte(received + k as u64))
                {
                    eprintln!("stall-hunt: port {port}: wrong byte within {received}+{n}");
                    corrupt = true;
                }
                received += n as u64;
                last = Instant::now();
                reported = false;
                // Now and then a slow reader: the server's backpressure pauses it. Its own
                // pause is not the server's gap, so the clock restarts after it.
                if rng.range(0, 999) == 0 {
                    thread::sleep(Duration::from_millis(rng.range(50, 500) as u64));
                    last = Instant::now();
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                let now = Instant::now();
                if sent.load(Ordering::Acquire) <= received {
                    last = now; // nothing owed: no gap is running
                    if writer_thread.is_finished() && now > deadline + options.give_up {
                        // The writer is done but no EOF came: that is a stall too.
                        stuck = true;
                        break;
                    }
                    continue;
                }
                let gap = now - last;
                longest = longest.max(gap);
                over_1s |= gap > Duration::from_secs(1);
                over_5s |= gap > Duration::from_secs(5);
                if gap > options.report_gap && !reported {
                    reported = true;
                    dump_sockets(port, gap);
                }
                if gap > options.give_up {
                    stuck = true;
                    break;
                }
            }
            Err(e) => {
                eprintln!("stall-hunt: port {port}: read failed after {received} bytes: {e}");
                lock(findings).errors += 1;
                break;
            }
        }
    }
    abandon.store(true, Ordering::Relaxed);
    let wrote_cleanly = writer_thread.join().unwrap_or(false);
    let total = sent.load(Ordering::Acquire);
    if eof && received != total {
        eprintln!("stall-hunt: port {port}: EOF after {received} of {total} bytes");
        corrupt = true;
    }
    if stuck {
        eprintln!("stall-hunt: port {port}: abandoned as stuck after {received} of {total} bytes");
    }
    let mut f = lock(findings);
    f.bulk_bytes += received;
    if longest > f.bulk_gap {
        f.bulk_gap = longest;
        f.bulk_gap_at = started.elapsed().as_secs_f64();
        f.bulk_gap_port = port;
    }
    f.gaps_over_1s += u64::from(over_1s);
    f.gaps_over_5s += u64::from(over_5s);
    f.stuck += u64::from(stuck);
    f.corrupt += u64::from(corrupt);
    f.errors += u64::from(!wrote_cleanly && !stuck);
}

/// A ping-pong client: 64 bytes out, 64 back, a short think time; reconnects on error.
fn pinger(options: &Options, rng: &mut Rng, deadline: Instant, findings: &Mutex<Findings>) {
    let mut longest = Duration::ZERO;
    let mut pings = 0u64;
    let mut stuck = 0u64;
    'connect: while Instant::now() < deadline {
        let Some(mut stream) = connect(options.addr) else {
            lock(findings).errors += 1;
            thread::sleep(Duration::from_millis(200));
            continue;
        };
        let port = stream.local_addr().map_or(0, |a| a.port());
        let mut round = 0u8;
        while Instant::now() < deadline {
            round = round.wrapping_add(1);
            let message = [round; 64];
            let at = Instant::now();
            if stream.write_all(&message).is_err() {
                lock(findings).errors += 1;
                continue 'connect;
            }
            let mut back = [0u8; 64];
            let mut got = 0;
            let mut reported = false;
            while got < back.len() {
                match stream.read(&mut back[got..]) {
                    Ok(0) => {
                        lock(findings).errors += 1;
                        continue 'connect;
                    }
                    Ok(n) => got += n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                        ) =>
                    {
                        let gap = at.elapsed();
                        if gap > options.report_gap && !reported {
                            reported = true;
                            dump_sockets(port, gap);
                        }
                        if gap > options.give_up {
                            stuck += 1;
                            continue 'connect;
                        }
                    }
                    Err(_) => {
                        lock(findings).errors += 1;
                        continue 'connect;
                    }
                }
            }
            longest = longest.max(at.elapsed());
            if back != message {
                lock(findings).corrupt += 1;
            }
            pings += 1;
            thread::sleep(Duration::from_millis(rng.range(0, 20) as u64));
        }
    }
    let mut f = lock(findings);
    f.pings += pings;
    f.pinger_gap = f.pinger_gap.max(longest);
    f.stuck += stuck;
}
