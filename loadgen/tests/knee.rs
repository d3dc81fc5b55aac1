//! `knee` against servers made slow on purpose: each echoes one message at a time and
//! sleeps ~1 ms per message, so they keep up to somewhat under 1,000 messages/s and fall
//! behind above. The search must find a knee in that neighbourhood, with passing steps
//! below it and a failing one above.

use echoloop_bench::knee::{self, KneeConfig};
use echoloop_bench::{Mode, Options};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PER_MESSAGE: Duration = Duration::from_millis(1);
const LIFETIME: Duration = Duration::from_secs(60);

/// Stops the server thread when dropped.
struct Slow(
    Arc<AtomicBool>,
    Option<std::thread::JoinHandle<()>>,
    SocketAddr,
);

impl Drop for Slow {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}

fn slow_udp() -> Slow {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let t = std::thread::spawn(move || {
        let born = Instant::now();
        let mut buf = [0u8; 2048];
        while !s.load(Relaxed) && born.elapsed() < LIFETIME {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                std::thread::sleep(PER_MESSAGE);
                let _ = sock.send_to(&buf[..n], from);
            }
        }
    });
    Slow(stop, Some(t), addr)
}

/// One connection at a time, one 64-byte message at a time.
fn slow_tcp() -> Slow {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let t = std::thread::spawn(move || {
        let born = Instant::now();
        while !s.load(Relaxed) && born.elapsed() < LIFETIME {
            let Ok((mut c, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            let _ = c.set_nonblocking(false);
            let _ = c.set_read_timeout(Some(Duration::from_millis(20)));
            let _ = c.set_nodelay(true);
            let mut msg = [0u8; 64];
            while !s.load(Relaxed) && born.elapsed() < LIFETIME {
                match c.read_exact(&mut msg) {
                    Ok(()) => {
                        std::thread::sleep(PER_MESSAGE);
                        if c.write_all(&msg).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(_) => {
                        if let Ok(0) = c.peek(&mut msg) {
                            break;
                        }
                    }
                }
            }
        }
    });
    Slow(stop, Some(t), addr)
}

fn search(addr: SocketAddr, udp: bool) -> knee::Knee {
    let mut o = Options::new(Mode::Rate { rate: 1.0 }, addr);
    o.connections = 1;
    o.duration = Duration::from_millis(600);
    // Sends due while the connection comes up would go out late: not the server's knee.
    o.warmup = Duration::from_millis(200);
    o.drain_timeout = Duration::from_millis(300);
    o.loss_timeout = Duration::from_millis(200);
    // A generous target: on a shared machine a sleeping thread may wake tens of ms late.
    let mut cfg = KneeConfig::new(Duration::from_millis(50));
    cfg.start_rate = 25.0;
    cfg.max_rate = 6400.0;
    cfg.precision = 0.25;
    cfg.settle = Duration::from_millis(300);
    knee::find(&o, udp, &cfg, &AtomicBool::new(false), &mut |_| {}).expect("search runs")
}

#[track_caller]
fn check(k: &knee::Knee) {
    let rate = k.rate.expect("some rate met the target");
    // 1 ms per message caps the server below 1,000/s; timer slack makes it less.
    assert!(
        (100.0..=1000.0).contains(&rate),
        "knee at {rate}: {:?}",
        k.steps
    );
    assert!(
        k.steps.iter().any(|s| !s.passed && s.rate > rate),
        "a failing step above"
    );
    assert!(k.steps.iter().filter(|s| s.passed).all(|s| s.rate <= rate));
    assert!(!k.interrupted && !k.corrupt);
}

#[test]
fn knee_of_a_slow_udp_server() {
    let server = slow_udp();
    check(&search(server.2, true));
}

#[test]
fn knee_of_a_slow_tcp_server() {
    let server = slow_tcp();
    check(&search(server.2, false));
}
