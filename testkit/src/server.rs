//! An in-process echoloop server for tests: bound to 127.0.0.1 port 0, run on its own thread,
//! and always shut down and joined (on [`TestServer::stop`] or on drop), so the shutdown path
//! runs in every test that starts one.

use std::net::{IpAddr, SocketAddr};
use std::thread::JoinHandle;
use std::time::Duration;

use echoloop::{Config, ServerError, ShutdownHandle, Stats};

/// A server on 127.0.0.1, port 0, running on its own thread. Dropping it shuts it down and
/// joins the thread.
pub struct TestServer {
    pub tcp: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
    /// The `/metrics` endpoint, when `Config::metrics` asked for one.
    pub metrics: Option<SocketAddr>,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<Result<Stats, ServerError>>>,
}

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
        let server = echoloop::Server::bind(config).expect("bind test server");
        let (tcp, udp, metrics, handle) = (
            server.tcp_addr(),
            server.udp_addr(),
            server.metrics_addr(),
            server.shutdown_handle(),
        );
        let thread = std::thread::Builder::new()
            .name("echoloop-test-server".into())
            .spawn(move || server.run())
            .expect("spawn server thread");
        TestServer {
            tcp,
            udp,
            metrics,
            handle,
            thread: Some(thread),
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

    /// Shuts down gracefully and returns the final counters.
    #[track_caller]
    pub fn stop(mut self) -> Stats {
        self.handle.shutdown();
        let thread = self.thread.take().expect("server running");
        thread
            .join()
            .expect("server thread panicked")
            .expect("server failed")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.handle.shutdown();
            let _ = thread.join();
        }
    }
}
