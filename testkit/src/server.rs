//! An in-process echoloop server for tests: bound to 127.0.0.1 port 0, run on its own thread,
//! and always shut down and joined (on [`TestServer::stop`] or on drop), so the shutdown path
//! runs in every test that starts one. [`TestGroup`] is the same for several reactors.
//!
//! While it runs, a test can read its counters ([`TestServer::snapshot`]), wait until they
//! say something happened ([`TestServer::wait_for`]) instead of sleeping for a time that a
//! loaded machine may not honour, and read the CPU time of its thread
//! ([`TestServer::cpu_time`]).

use std::net::{IpAddr, SocketAddr};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use echoloop::{Config, ServerError, ShutdownHandle, Stats, StatsHandle};

/// A server on 127.0.0.1, port 0, running on its own thread. Dropping it shuts it down and
/// joins the thread.
pub struct TestServer {
    pub tcp: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
    /// The `/metrics` endpoint, when `Config::metrics` asked for one.
    pub metrics: Option<SocketAddr>,
    stats: StatsHandle,
    running: Running<Stats>,
}

/// How long [`TestServer::wait_for`] waits for the counters to say what it waits for: far
/// longer than anything a test waits for takes on an idle machine, so that only a server that
/// never gets there fails, not a loaded machine.
pub const WAIT_FOR: Duration = Duration::from_secs(30);

impl TestServer {
    /// Starts a server with default settings (short drain).
    #[track_caller]
    pub fn start() -> TestServer {
        TestServer::with_config(Config::default())
    }

    /// Starts a server with `config`, forced onto loopback and port 0, with a 3 s drain.
    #[track_caller]
    pub fn with_config(config: Config) -> TestServer {
        TestServer::bound_to(IpAddr::from([127, 0, 0, 1]), config)
    }

    /// Starts a server with `config` as given (its drain timeout included), forced onto
    /// loopback and port 0: for tests of what the drain deadline does.
    #[track_caller]
    pub fn with_drain(config: Config) -> TestServer {
        TestServer::start_on(IpAddr::from([127, 0, 0, 1]), config)
    }

    /// Starts a server with `config` bound to `bind` (a wildcard, or another loopback
    /// address), port 0, with a 3 s drain. The test must still send only loopback traffic;
    /// a wildcard bind lasts as long as the test.
    #[track_caller]
    pub fn bound_to(bind: IpAddr, config: Config) -> TestServer {
        TestServer::start_on(
            bind,
            Config {
                drain_timeout: Duration::from_secs(3),
                ..config
            },
        )
    }

    /// Binds `config` on `bind`, port 0, and runs it on its own thread.
    #[track_caller]
    fn start_on(bind: IpAddr, config: Config) -> TestServer {
        let config = Config {
            bind,
            port: 0,
            ..config
        };
        let server =
            with_port_retries(|| echoloop::Server::bind(config.clone())).expect("bind test server");
        TestServer {
            tcp: server.tcp_addr(),
            udp: server.udp_addr(),
            metrics: server.metrics_addr(),
            stats: server.stats_handle(),
            running: Running::spawn(
                "echoloop-test-server",
                server.shutdown_handle(),
                move || server.run(),
            ),
        }
    }

    /// The TCP address; fails the test if TCP is off.
    #[track_caller]
    pub fn tcp(&self) -> SocketAddr {
        self.tcp.expect("TCP is on")
    }

    /// The UDP address; fails the test if UDP is off.
    #[track_caller]
    pub fn udp(&self) -> SocketAddr {
        self.udp.expect("UDP is on")
    }

    /// The counters now (a live snapshot: the loop answers between two turns).
    #[track_caller]
    pub fn snapshot(&self) -> Stats {
        self.stats
            .snapshot()
            .expect("the server's loop answers for its counters")
    }

    /// Reads the counters every 10 ms until `done` holds for them, and returns them; fails
    /// the test, naming `what` and showing the last counters, if that takes longer than
    /// [`WAIT_FOR`]. For a test that must let the server see something (a connection
    /// accepted, a reset read) before it stops the server: shutdown stops accepting at once,
    /// and a connection still in the listen backlog then is never counted.
    #[track_caller]
    pub fn wait_for(&self, what: &str, done: impl Fn(&Stats) -> bool) -> Stats {
        let deadline = Instant::now() + WAIT_FOR;
        loop {
            let stats = self.snapshot();
            if done(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "waited {WAIT_FOR:?} for {what}: {stats}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// CPU time (user + system) the server's thread has used so far, from `/proc`: the cost
    /// of what it served, whatever else the machine was running. Read it before
    /// [`stop`](Self::stop) (the thread's figures go with it).
    #[track_caller]
    pub fn cpu_time(&self) -> Duration {
        crate::procfs::cpu_time(crate::procfs::Task::Thread(self.running.tid))
            .expect("read the server thread's /proc/self/task/TID/stat")
    }

    /// Shuts down gracefully and returns the final counters.
    #[track_caller]
    pub fn stop(mut self) -> Stats {
        self.running.handle.shutdown();
        self.running.join()
    }
}

/// How often a bind on port 0 is tried while the kernel says the port is taken.
const PORT_ATTEMPTS: u32 = 20;

/// Calls `bind` (a bind on port 0) again while it fails with `AddrInUse` or
/// `AddrNotAvailable`: when a loaded machine's ephemeral ports run short (thousands of
/// connections in `TIME_WAIT` from other tests), the kernel can refuse a port for a moment,
/// which is the machine's state, not the server's behaviour. Up to `PORT_ATTEMPTS` (20) tries,
/// 50 ms apart and growing (about 10 s in all); any other error, or the last one, is returned.
pub fn with_port_retries<T>(
    mut bind: impl FnMut() -> Result<T, ServerError>,
) -> Result<T, ServerError> {
    let mut attempt = 1;
    loop {
        match bind() {
            Err(ServerError::Bind { source, .. })
                if attempt < PORT_ATTEMPTS && is_port_shortage(&source) =>
            {
                std::thread::sleep(Duration::from_millis(50) * attempt);
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// True for the errors a bind or connect gets when no local port is free right now.
pub fn is_port_shortage(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::AddrInUse | std::io::ErrorKind::AddrNotAvailable
    )
}

/// Several reactors on one port (an echoloop `ServerGroup`) on 127.0.0.1 port 0, run on a
/// thread of their own. Dropping it shuts every reactor down and joins them.
pub struct TestGroup {
    pub tcp: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
    /// Reads the reactors' counters, summed, while they run.
    pub stats: StatsHandle,
    running: Running<Vec<Stats>>,
}

impl TestGroup {
    /// Starts `reactors` reactors with `config`, forced onto loopback and port 0.
    #[track_caller]
    pub fn with_config(config: Config, reactors: usize) -> TestGroup {
        let config = on_loopback(config);
        let group = with_port_retries(|| echoloop::ServerGroup::bind(config.clone(), reactors))
            .expect("bind test group");
        TestGroup {
            tcp: group.tcp_addr(),
            udp: group.udp_addr(),
            stats: group.stats_handle(),
            running: Running::spawn("echoloop-test-group", group.shutdown_handle(), move || {
                group.run_each()
            }),
        }
    }

    /// The TCP address; fails the test if TCP is off.
    #[track_caller]
    pub fn tcp(&self) -> SocketAddr {
        self.tcp.expect("TCP is on")
    }

    /// A handle that stops every reactor.
    pub fn handle(&self) -> ShutdownHandle {
        self.running.handle.clone()
    }

    /// Shuts every reactor down gracefully and returns each one's final counters.
    #[track_caller]
    pub fn stop(mut self) -> Vec<Stats> {
        self.running.handle.shutdown();
        self.running.join()
    }

    /// Waits for every reactor to stop (after a shutdown asked for elsewhere).
    #[track_caller]
    pub fn join(mut self) -> Vec<Stats> {
        self.running.join()
    }
}

/// `config` on 127.0.0.1, port 0.
fn on_loopback(config: Config) -> Config {
    Config {
        bind: "127.0.0.1".parse().expect("a literal address"),
        port: 0,
        ..config
    }
}

/// A server's run on a thread of its own, with the handle that stops it; shut down and
/// joined on drop.
struct Running<T> {
    handle: ShutdownHandle,
    thread: Option<JoinHandle<Result<T, ServerError>>>,
    /// The kernel's id of the thread, for its CPU time in `/proc`.
    tid: i32,
}

impl<T: Send + 'static> Running<T> {
    #[track_caller]
    fn spawn(
        name: &str,
        handle: ShutdownHandle,
        run: impl FnOnce() -> Result<T, ServerError> + Send + 'static,
    ) -> Running<T> {
        let (send_tid, tid) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _ = send_tid.send(crate::pinning::current_tid());
                run()
            })
            .expect("spawn server thread");
        Running {
            handle,
            thread: Some(thread),
            tid: tid.recv().expect("the server thread starts"),
        }
    }

    /// Waits for the run to end and returns what it returned; fails the test if it failed.
    #[track_caller]
    fn join(&mut self) -> T {
        let thread = self.thread.take().expect("server running");
        thread
            .join()
            .expect("server thread panicked")
            .expect("server failed")
    }
}

impl<T> Drop for Running<T> {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.handle.shutdown();
            let _ = thread.join();
        }
    }
}
