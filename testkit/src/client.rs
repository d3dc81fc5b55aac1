//! Blocking test clients and the checks they make. Every socket gets read and write timeouts
//! ([`IO_TIMEOUT`] unless a test narrows them), so a broken server fails a test instead of
//! hanging the suite.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Every blocking client call gives up after this long instead of hanging the suite.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A blocking client with read and write timeouts.
#[track_caller]
pub fn connect(addr: SocketAddr) -> TcpStream {
    with_timeouts(connect_retrying(addr).expect("connect to test server"))
}

/// `TcpStream::connect`, tried again (up to 20 times, 50 ms apart and growing) while the
/// kernel has no local port to give it (`AddrNotAvailable`, `AddrInUse`: ephemeral ports run
/// short on a loaded machine); any other error is returned at once.
pub fn connect_retrying(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut attempt = 1;
    loop {
        match TcpStream::connect(addr) {
            Err(e) if attempt < 20 && crate::server::is_port_shortage(&e) => {
                std::thread::sleep(std::time::Duration::from_millis(50) * attempt);
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Gives `stream` read and write timeouts of [`IO_TIMEOUT`].
#[track_caller]
fn with_timeouts(stream: TcpStream) -> TcpStream {
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("SO_RCVTIMEO");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("SO_SNDTIMEO");
    stream
}

/// [`connect`] with `TCP_NODELAY`, for clients that measure small round trips (Nagle would
/// hold back a 64-byte write waiting for an ACK).
#[track_caller]
pub fn connect_nodelay(addr: SocketAddr) -> TcpStream {
    let stream = connect(addr);
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
}

/// A blocking client like [`connect`], built with socket2 so it can be shaped before it
/// connects: bound to `local` (port 0) to connect from that source address (Linux routes all
/// of 127.0.0.0/8 over loopback), and with a fixed receive buffer, which also turns off the
/// kernel's receive-buffer autotuning (a small one makes a non-reading client fill up fast).
#[track_caller]
pub fn connect_with(
    addr: SocketAddr,
    local: Option<IpAddr>,
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
    with_timeouts(TcpStream::from(socket))
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
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
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

/// One message there and back on `stream`, checked byte for byte.
#[track_caller]
pub fn ping(stream: &mut TcpStream, data: &[u8]) {
    stream.write_all(data).expect("write");
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back).expect("read echo");
    assert_same(&back, data);
}

/// One 64-byte round trip of `tag` bytes: a [`ping`] small enough to measure latency with.
#[track_caller]
pub fn round_trip(stream: &mut TcpStream, tag: u8) {
    ping(stream, &[tag; 64]);
}

/// Half-closes and expects EOF with nothing more: the server closes in order.
#[track_caller]
pub fn close_cleanly(mut stream: TcpStream) {
    stream.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
    assert!(
        read_to_eof(&mut stream, 0).is_empty(),
        "bytes after the echo"
    );
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

/// Closes with RST instead of FIN: `SO_LINGER` 0, then close, whatever is in flight.
#[track_caller]
pub fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(stream);
}

/// Writes `chunk` over and over until a write does not complete within `patience` (the
/// connection is full all the way to the server's limit), an error, or `max_bytes`. Returns
/// the bytes written and the error that ended it, if any other than a timeout.
#[track_caller]
pub fn write_until_blocked(
    stream: &mut TcpStream,
    chunk: &[u8],
    patience: Duration,
    max_bytes: usize,
) -> (usize, Option<std::io::Error>) {
    stream
        .set_write_timeout(Some(patience))
        .expect("SO_SNDTIMEO");
    let mut written = 0;
    while written < max_bytes {
        match stream.write(chunk) {
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return (written, None),
            Err(e) => return (written, Some(e)),
        }
    }
    panic!("writes never blocked within {max_bytes} bytes");
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
        stream.set_read_timeout(Some(left)).expect("SO_RCVTIMEO");
        match stream.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => panic!("waiting for the server to close: {e}"),
        }
    }
}

/// What a socket timeout looks like on Unix (`EAGAIN`, reported as `WouldBlock`) or elsewhere.
pub fn is_timeout(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Sends `request` from an unprivileged loopback port of `addr`'s family and returns the
/// reply; tries three times (2 s each) before failing the test.
#[track_caller]
pub fn udp_ask(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let local = if addr.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = std::net::UdpSocket::bind(local).expect("bind a UDP client");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("UDP timeout");
    let mut buffer = vec![0u8; 65_536];
    for _ in 0..3 {
        socket.send_to(request, addr).expect("send a datagram");
        if let Ok((n, _)) = socket.recv_from(&mut buffer) {
            return buffer[..n].to_vec();
        }
    }
    panic!("no UDP reply from {addr}");
}
