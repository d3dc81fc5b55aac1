//! An in-process echoloop server for tests: bound to 127.0.0.1 port 0, run on its own thread,
//! and always shut down and joined (on [`TestServer::stop`] or on drop), so the shutdown path
//! runs in every test that starts one. [`TestGroup`] is the same for several reactors.

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use echoloop::{Config, ServerError, ShutdownHandle, Stats};

/// A server on 127.0.0.1, port 0, running on its own thread. Dropping it shuts it down and
/// joins the thread.
pub struct TestServer {
    pub tcp: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
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
        let config = Config {
            bind: "127.0.0.1".parse().expect("a literal address"),
            port: 0,
            drain_timeout: Duration::from_secs(3),
            ..config
        };
        let server = echoloop::Server::bind(config).expect("bind test server");
        let (tcp, udp, handle) = (
            server.tcp_addr(),
            server.udp_addr(),
            server.shutdown_handle(),
        );
        let thread = std::thread::Builder::new()
            .name("echoloop-test-server".into())
            .spawn(move || server.run())
            .expect("spawn server thread");
        TestServer {
            tcp,
            udp,
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

/// Several reactors on one port (an echoloop `ServerGroup`) on 127.0.0.1 port 0, run on a
/// thread of their own. Dropping it shuts every reactor down and joins them.
pub struct TestGroup {
    pub tcp: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<Result<Vec<Stats>, ServerError>>>,
}

impl TestGroup {
    /// Starts `reactors` reactors with `config`, forced onto loopback and port 0.
    #[track_caller]
    pub fn with_config(config: Config, reactors: usize) -> TestGroup {
        let config = Config {
            bind: "127.0.0.1".parse().expect("a literal address"),
            port: 0,
            ..config
        };
        let group = echoloop::ServerGroup::bind(config, reactors).expect("bind test group");
        let (tcp, udp, handle) = (group.tcp_addr(), group.udp_addr(), group.shutdown_handle());
        let thread = std::thread::Builder::new()
            .name("echoloop-test-group".into())
            .spawn(move || group.run_each())
            .expect("spawn group thread");
        TestGroup {
            tcp,
            udp,
            handle,
            thread: Some(thread),
        }
    }

    /// The TCP address; fails the test if TCP is off.
    #[track_caller]
    pub fn tcp(&self) -> SocketAddr {
        self.tcp.expect("TCP is on")
    }

    /// A handle that stops every reactor.
    pub fn handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// Shuts every reactor down gracefully and returns each one's final counters.
    #[track_caller]
    pub fn stop(self) -> Vec<Stats> {
        self.handle.shutdown();
        self.join()
    }

    /// Waits for every reactor to stop (after a shutdown asked for elsewhere).
    #[track_caller]
    pub fn join(mut self) -> Vec<Stats> {
        let thread = self.thread.take().expect("group running");
        thread
            .join()
            .expect("group thread panicked")
            .expect("group failed")
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.handle.shutdown();
            let _ = thread.join();
        }
    }
}
