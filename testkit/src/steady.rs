//! The bystander: a client that keeps echoing, byte-exact, while other clients misbehave, so
//! a test can show that one client's trouble stays that client's.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::client::{assert_same, connect, read_to_eof};
use crate::rng::Rng;

/// A steady client runs at most this long, whatever the test does.
const LIFETIME: Duration = Duration::from_secs(20);

/// A client on its own thread that pings (writes a random message, reads it back, compares)
/// every `interval` until told to stop, then half-closes and expects a clean EOF.
pub struct Steady {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Steady {
    /// Connects to `addr` and starts pinging with messages drawn from `seed`.
    #[track_caller]
    pub fn start(addr: SocketAddr, seed: u64, interval: Duration) -> Steady {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let mut stream = connect(addr);
        let thread = thread::spawn(move || {
            let mut rng = Rng::new(seed);
            let deadline = Instant::now() + LIFETIME;
            let mut rounds = 0;
            let mut last = Instant::now();
            while !stop_flag.load(Ordering::SeqCst) && Instant::now() < deadline {
                let len = rng.range(1, 32 << 10);
                let data = rng.bytes(len);
                let failed = |e: std::io::Error| -> ! {
                    panic!(
                        "steady client: {e} after {rounds} round trips, the last {:?} ago",
                        last.elapsed()
                    )
                };
                stream.write_all(&data).unwrap_or_else(|e| failed(e));
                let mut back = vec![0u8; data.len()];
                stream.read_exact(&mut back).unwrap_or_else(|e| failed(e));
                assert_same(&back, &data);
                rounds += 1;
                last = Instant::now();
                thread::sleep(interval);
            }
            stream.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
            assert!(read_to_eof(&mut stream, 0).is_empty());
            rounds
        });
        Steady {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the client and returns how many round trips it completed (all of them exact).
    #[track_caller]
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.take().expect("running");
        let rounds = thread.join().expect("steady client failed");
        assert!(rounds > 0, "the steady client never completed a round trip");
        rounds
    }
}

impl Drop for Steady {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
