//! Test support: an in-process server that is always shut down and joined, clients with
//! timeouts, and a seeded pattern generator. Loopback and port 0 only.
#![allow(dead_code)] // each test binary uses its own subset

pub mod child;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use echoloop::{Config, ServerError, ShutdownHandle, Stats};

/// Every blocking client call gives up after this long instead of hanging the suite.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A server on 127.0.0.1, port 0, running on its own thread. Dropping it shuts it down and
/// joins the thread, so the shutdown path runs in every test.
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

    /// Starts a server with `config`, forced onto loopback and port 0.
    #[track_caller]
    pub fn with_config(config: Config) -> TestServer {
        let config = Config {
            bind: "127.0.0.1".parse().unwrap(),
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

    pub fn tcp(&self) -> SocketAddr {
        self.tcp.expect("TCP is on")
    }

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

/// A blocking client with read and write timeouts.
#[track_caller]
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to test server");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Reads until EOF; fails the test on any error (a reset included) or after the deadline.
#[track_caller]
pub fn read_to_eof(stream: &mut TcpStream, expected_len: usize) -> Vec<u8> {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut received = Vec::with_capacity(expected_len);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        assert!(Instant::now() < deadline, "no EOF within {IO_TIMEOUT:?}");
        match stream.read(&mut buf) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read failed after {} bytes: {e}", received.len()),
        }
    }
}

/// Writes `data`, half-closes, reads everything back to EOF and checks it byte for byte.
#[track_caller]
pub fn echo_with_half_close(addr: SocketAddr, data: &[u8]) {
    let mut stream = connect(addr);
    stream.write_all(data).expect("write");
    stream.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
    let echoed = read_to_eof(&mut stream, data.len());
    assert_same(&echoed, data);
}

/// Byte-exact comparison with a short message instead of a megabyte dump.
#[track_caller]
pub fn assert_same(got: &[u8], want: &[u8]) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "echo differs: got {} bytes, want {}; first difference at {:?}",
            got.len(),
            want.len(),
            first
        );
    }
}

/// xorshift64*: a tiny seeded generator, so a failing test can be replayed from its seed.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `ECHOLOOP_TEST_SEED` if set, else from the clock; the seed is printed.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("ECHOLOOP_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("{test}: seed {seed} (rerun with ECHOLOOP_TEST_SEED={seed})");
        Rng::new(seed)
    }

    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: usize, high: usize) -> usize {
        low + (self.next_u64() % (high - low + 1) as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// A deterministic, position-dependent pattern: cheap to make, and a shifted or repeated
/// byte shows up as a mismatch.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect()
}

/// A blocking client like [`connect`], built with socket2 so it can be shaped before it
/// connects: bound to `local` (port 0) to connect from that source address (Linux routes all
/// of 127.0.0.0/8 over loopback), and with a fixed receive buffer, which also turns off the
/// kernel's receive-buffer autotuning (a small one makes a non-reading client fill up fast).
#[track_caller]
pub fn connect_with(
    addr: SocketAddr,
    local: Option<std::net::IpAddr>,
    recv_buffer: Option<usize>,
) -> TcpStream {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .expect("client socket");
    if let Some(ip) = local {
        socket
            .bind(&SocketAddr::new(ip, 0).into())
            .expect("bind client socket");
    }
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    socket
        .connect(&addr.into())
        .expect("connect to test server");
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Closes with RST instead of FIN: `SO_LINGER` 0, then close, whatever is in flight.
#[track_caller]
pub fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(stream);
}

/// Waits until the server closes `stream` (a read returns EOF or a reset) and returns how long
/// that took; fails the test if it takes longer than `within`. Bytes still arriving are
/// skipped.
#[track_caller]
pub fn expect_closed_within(stream: &mut TcpStream, within: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = within.saturating_sub(start.elapsed());
        assert!(
            !left.is_zero(),
            "the server did not close within {within:?}"
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => panic!("waiting for the server to close: {e}"),
        }
    }
}

/// What a socket timeout looks like on Unix (`EAGAIN`, reported as `WouldBlock`) or elsewhere.
pub fn is_timeout(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
