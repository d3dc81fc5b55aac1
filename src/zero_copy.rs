//! Zero-copy echo for bulk connections: a kernel pipe per connection, filled and drained with
//! `splice(2)`, so echoed bytes never enter user space.
//!
//! The default echo path reads into the shared scratch buffer and writes back from it: two
//! copies of every byte (kernel to user, user to kernel). For 64 KiB messages, dropping them
//! saves about a quarter of the server's CPU per message (12.4 µs to 9.0-9.8 µs in
//! `benches/echo_roundtrip.rs`). `splice` moves page references instead:
//!
//! ```text
//!   socket --splice--> pipe --splice--> socket      (no byte is copied by the server)
//! ```
//!
//! The pipe then also *is* the connection's pending output: what the socket would not take
//! yet waits in the pipe, bounded by its capacity ([`PIPE_SIZE`]); past that it waits in the
//! connection's buffer, as on the copying path. The cost is two descriptors per connection,
//! so the reactor gives pipes only to connections that move bulk data, and only up to
//! `Config::zero_copy_conns` of them.
//!
//! [`Spliced`] joins a socket and its pipe into one [`Stream`]; the connection's state machine
//! decides when to call `splice_in` and `splice_out`, exactly as it decides when to read and
//! write. Linux only (`splice` is a Linux call); elsewhere [`Pipe::new`] says `Unsupported` and
//! every connection keeps the copying path.

use std::io::{self, Read, Write};

use mio::net::TcpStream;

use crate::connection::Stream;

/// The pipe size asked for: 64 slots. A pipe holds at most one page fragment per slot, and the
/// default 16 slots (64 KiB) cannot take one 64 KiB message whole when it arrives in 17
/// fragments, which then costs two more splices and a second, tiny segment per echo. Measured
/// with `cargo bench --bench echo_roundtrip` (bulk, 64 KiB x 10): server CPU per message
/// 9.8-10.1 µs at 64 KiB, 9.6 at 128 KiB, 9.3-9.7 at 256 KiB, no better beyond.
pub const PIPE_SIZE: usize = 256 * 1024;

/// A non-blocking pipe: the kernel-side buffer of one zero-copy connection.
#[derive(Debug)]
pub struct Pipe {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    read: std::os::fd::OwnedFd,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    write: std::os::fd::OwnedFd,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod sys {
    use std::io;
    use std::os::fd::AsFd;

    use rustix::pipe::{fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags};

    use super::{Pipe, PIPE_SIZE};

    /// Never block: the socket is non-blocking already, and the pipe must not block either
    /// (a full pipe says `WouldBlock`). `MOVE` is a hint to move pages rather than copy.
    const FLAGS: SpliceFlags = SpliceFlags::NONBLOCK.union(SpliceFlags::MOVE);

    impl Pipe {
        /// A new pipe, non-blocking and close-on-exec. Fails with `EMFILE` when the process
        /// is out of descriptors; the caller then keeps copying.
        pub fn new() -> io::Result<Pipe> {
            let (read, write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
            // Best effort: past the per-user pipe quota (`fs.pipe-user-pages-soft`) the kernel
            // refuses, and the pipe keeps its default size, which only costs more splices.
            if let Err(e) = fcntl_setpipe_size(&write, PIPE_SIZE) {
                log::debug!("pipe stays at its default size: {e}");
            }
            Ok(Pipe { read, write })
        }

        /// Moves up to `max` bytes from `socket` into the pipe. `Ok(0)` is the peer's FIN.
        /// `WouldBlock` means the socket is empty *or* the pipe is full: the kernel does not
        /// say which.
        pub fn fill_from(&self, socket: impl AsFd, max: usize) -> io::Result<usize> {
            Ok(splice(socket, None, &self.write, None, max, FLAGS)?)
        }

        /// Moves up to `max` bytes from the pipe to `socket`.
        pub fn drain_to(&self, socket: impl AsFd, max: usize) -> io::Result<usize> {
            Ok(splice(&self.read, None, socket, None, max, FLAGS)?)
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl Pipe {
    /// Zero-copy echo needs `splice(2)`, which only Linux has.
    pub fn new() -> io::Result<Pipe> {
        Err(io::ErrorKind::Unsupported.into())
    }

    fn fill_from(&self, _socket: &TcpStream, _max: usize) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }

    fn drain_to(&self, _socket: &TcpStream, _max: usize) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// A connection's socket with its pipe attached: reads and writes go to the socket as usual
/// (the state machine still reads to discard input while lingering), and `splice_in` /
/// `splice_out` go through the pipe.
#[derive(Debug)]
pub struct Spliced<'a> {
    /// The connection's socket.
    pub socket: &'a mut TcpStream,
    /// Its pipe, holding the output still owed to the peer.
    pub pipe: &'a Pipe,
}

impl Read for Spliced<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.read(buf)
    }
}

impl Write for Spliced<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.socket.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.socket.flush()
    }
}

impl Stream for Spliced<'_> {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.socket.shutdown_write()
    }

    fn splice_in(&mut self, max: usize) -> io::Result<usize> {
        self.pipe.fill_from(&*self.socket, max)
    }

    fn splice_out(&mut self, max: usize) -> io::Result<usize> {
        self.pipe.drain_to(&*self.socket, max)
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;

    /// A connected loopback pair: (the server's side as a mio stream, the client's side).
    fn pair() -> (TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        (TcpStream::from_std(server), client)
    }

    #[test]
    fn splice_echoes_through_the_pipe_and_reports_eof_and_empty() {
        let (mut server, mut client) = pair();
        let pipe = Pipe::new().expect("pipe");
        let mut io = Spliced {
            socket: &mut server,
            pipe: &pipe,
        };
        let empty = io.splice_in(4096).expect_err("nothing sent yet");
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);

        let message: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&message).expect("send");
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        let mut moved = 0;
        for _ in 0..1000 {
            match io.splice_in(message.len() - moved) {
                Ok(n) => moved += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("splice in: {e}"),
            }
            if moved == message.len() {
                break;
            }
        }
        assert_eq!(moved, message.len());
        let mut out = 0;
        while out < moved {
            out += io.splice_out(moved - out).expect("splice out");
        }
        let mut echoed = vec![0u8; message.len()];
        client.read_exact(&mut echoed).expect("read echo");
        assert_eq!(echoed, message);

        client.shutdown(std::net::Shutdown::Write).expect("fin");
        let mut eof = None;
        for _ in 0..1000 {
            match io.splice_in(4096) {
                Ok(n) => {
                    eof = Some(n);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("splice at EOF: {e}"),
            }
        }
        assert_eq!(eof, Some(0), "the peer's FIN reads as 0");
    }
}
