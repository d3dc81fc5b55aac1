//! Test support for the services tests: the `echoloop` binary as a child process, its
//! start-up line parsed into listeners, and clients with timeouts. Loopback and port 0 only;
//! every wait is bounded; the child is killed on drop if a test fails midway.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_echoloop");
pub const WAIT: Duration = Duration::from_secs(20);

/// A running `echoloop`, with its start-up line parsed.
pub struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// The start-up line as printed.
    pub listening: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `echoloop ARGS` and waits for its start-up line.
    #[track_caller]
    pub fn start(args: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start echoloop");
        let stdout = child.stdout.take().expect("stdout piped");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let listening = lines.recv_timeout(WAIT).expect("a start-up line in time");
        assert!(listening.starts_with("listening "), "{listening}");
        Server {
            child,
            lines,
            listening,
        }
    }

    /// The address of the socket listed as `SERVICE/PROTO`, the `n`th such (0 first).
    #[track_caller]
    pub fn addr(&self, service_proto: &str, n: usize) -> SocketAddr {
        self.listening
            .split(' ')
            .filter_map(|field| field.split_once('='))
            .filter(|(key, _)| *key == service_proto)
            .nth(n)
            .unwrap_or_else(|| panic!("no {service_proto} #{n} in {:?}", self.listening))
            .1
            .parse()
            .expect("an address")
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit code.
    #[track_caller]
    pub fn stop(&mut self) -> i32 {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code().expect("exited, not killed by a signal");
            }
            assert!(Instant::now() < deadline, "echoloop did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The next stdout line (the summary, after `stop`).
    #[track_caller]
    pub fn next_line(&self) -> String {
        self.lines.recv_timeout(WAIT).expect("a line in time")
    }
}

/// Connects, reads until the server closes (at most `limit` bytes), returns what came.
#[track_caller]
pub fn tcp_read_to_end(addr: SocketAddr, limit: u64) -> Vec<u8> {
    let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut reply = Vec::new();
    stream.take(limit).read_to_end(&mut reply).expect("read");
    reply
}

/// Sends one datagram from an unprivileged port and returns the reply.
#[track_caller]
pub fn udp_ask(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let local = if addr.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = UdpSocket::bind(local).expect("bind client");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut buffer = [0u8; 2048];
    // Loopback does not lose datagrams in practice, but a test must not hang if it does.
    for _ in 0..3 {
        socket.send_to(request, addr).expect("send");
        if let Ok((n, _)) = socket.recv_from(&mut buffer) {
            return buffer[..n].to_vec();
        }
    }
    panic!("no UDP reply from {addr}");
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}
