//! Zero-copy echo for bulk connections: a kernel pipe per connection, filled and drained with
//! `splice(2)`, so echoed bytes never enter user space.
//!
//! The default echo path reads into the shared scratch buffer and writes back from it: two
//! copies of every byte (kernel to user, user to kernel). For 64 KiB messages, dropping them
//! saves about a quarter of the server's CPU per message (12.4 µs to 9.0-9.8 µs in
//! `benches/echo_roundtrip/`). `splice` moves page references instead:
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
//! [`Pipe`] implements the connection's [`Splice`](crate::connection::Splice) trait for a TCP
//! socket; the connection's state machine holds the pipe and decides when to splice in and
//! out, exactly as it decides when to read and write. Linux only (`splice` is a Linux call);
//! elsewhere [`Pipe::new`] says `Unsupported`, no `Pipe` can exist, and every connection keeps
//! the copying path.

#[cfg(not(any(target_os = "linux", target_os = "android")))]
use {crate::connection::Splice, mio::net::TcpStream, std::io};

/// The pipe size asked for: 64 slots. A pipe holds at most one page fragment per slot, and the
/// default 16 slots (64 KiB) cannot take one 64 KiB message whole when it arrives in 17
/// fragments, which then costs two more splices and a second, tiny segment per echo. Measured
/// with `cargo bench --bench echo_roundtrip` (bulk, 64 KiB x 10): server CPU per message
/// 9.8-10.1 µs at 64 KiB, 9.6 at 128 KiB, 9.3-9.7 at 256 KiB, no better beyond.
pub(crate) const PIPE_SIZE: usize = 256 * 1024;

/// A non-blocking pipe: the kernel-side buffer of one zero-copy connection.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[derive(Debug)]
pub(crate) struct Pipe {
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
}

/// No `splice(2)` here, so no pipe can be made: the type has no values.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[derive(Debug)]
pub(crate) enum Pipe {}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod sys {
    use std::io;

    use mio::net::TcpStream;
    use rustix::pipe::{fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags};

    use super::{Pipe, PIPE_SIZE};
    use crate::connection::Splice;

    /// Never block: the socket is non-blocking already, and the pipe must not block either
    /// (a full pipe says `WouldBlock`). `MOVE` is a hint to move pages rather than copy.
    const FLAGS: SpliceFlags = SpliceFlags::NONBLOCK.union(SpliceFlags::MOVE);

    impl Pipe {
        /// A new pipe, non-blocking and close-on-exec. Fails with `EMFILE` when the process
        /// is out of descriptors; the caller then keeps copying.
        pub(crate) fn new() -> io::Result<Pipe> {
            let (read, write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
            // Best effort: past the per-user pipe quota (`fs.pipe-user-pages-soft`) the kernel
            // refuses, and the pipe keeps its default size, which only costs more splices.
            if let Err(e) = fcntl_setpipe_size(&write, PIPE_SIZE) {
                log::debug!("pipe stays at its default size: {e}");
            }
            Ok(Pipe { read, write })
        }
    }

    impl Splice<TcpStream> for Pipe {
        fn splice_in(&mut self, socket: &mut TcpStream, max: usize) -> io::Result<usize> {
            Ok(splice(&*socket, None, &self.write, None, max, FLAGS)?)
        }

        fn splice_out(&mut self, socket: &mut TcpStream, max: usize) -> io::Result<usize> {
            Ok(splice(&self.read, None, &*socket, None, max, FLAGS)?)
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl Pipe {
    /// Zero-copy echo needs `splice(2)`, which only Linux has.
    pub(crate) fn new() -> io::Result<Pipe> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl Splice<TcpStream> for Pipe {
    fn splice_in(&mut self, _: &mut TcpStream, _: usize) -> io::Result<usize> {
        match *self {}
    }

    fn splice_out(&mut self, _: &mut TcpStream, _: usize) -> io::Result<usize> {
        match *self {}
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use std::io::{self, Read, Write};

    use mio::net::TcpStream;

    use crate::connection::Splice;

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
        let mut pipe = Pipe::new().expect("pipe");
        let empty = pipe
            .splice_in(&mut server, 4096)
            .expect_err("nothing sent yet");
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);

        let message: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&message).expect("send");
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        let mut moved = 0;
        for _ in 0..1000 {
            match pipe.splice_in(&mut server, message.len() - moved) {
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
            out += pipe
                .splice_out(&mut server, moved - out)
                .expect("splice out");
        }
        let mut echoed = vec![0u8; message.len()];
        client.read_exact(&mut echoed).expect("read echo");
        assert_eq!(echoed, message);

        client.shutdown(std::net::Shutdown::Write).expect("fin");
        let mut eof = None;
        for _ in 0..1000 {
            match pipe.splice_in(&mut server, 4096) {
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
