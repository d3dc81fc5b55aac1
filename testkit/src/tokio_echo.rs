//! The comparison peer: a minimal tokio TCP and UDP echo server, the one that
//! `scripts/loadtest.sh --compare`, `scripts/udp-compare.sh` and `benches/echo_roundtrip/`
//! measure echoloop against.
//!
//! It is written the way most tokio echo servers are written, on purpose: one
//! `current_thread` runtime (single-threaded, like echoloop's reactor), an accept loop, one
//! task per connection, a 64 KiB read buffer per connection and `write_all` of whatever was
//! read. TCP_NODELAY is set as echoloop sets it, so small echoes are not held back by Nagle.
//! The command line also serves UDP on the TCP port the same way: one task, `recv_from` into a
//! 64 KiB buffer, `send_to` of what arrived (one syscall each per datagram, as tokio users
//! write it). There is no graceful shutdown: SIGTERM/SIGINT end the process by their default
//! action.
//!
//! Two ways in: [`serve_std`] on a listener the caller bound (the bench runs it on a thread
//! of its own), and [`main`], the command line of `examples/tokio_echo.rs`:
//!
//! ```text
//! cargo build --release --example tokio_echo
//! target/release/examples/tokio_echo [--bind 127.0.0.1] [--port 0]
//! ```
//!
//! The first stdout line has the same shape as echoloop's, so the script can read the port:
//! `listening tcp=127.0.0.1:PORT udp=127.0.0.1:PORT`.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Read buffer per connection; the same size as echoloop's scratch buffer.
const BUF_SIZE: usize = 64 * 1024;

fn usage() -> &'static str {
    "usage: tokio_echo [--bind ADDR] [--port PORT]\n\
     \n\
     A tokio current_thread TCP and UDP echo server (comparison peer for echoloop).\n\
     \n\
     options:\n  \
       --bind ADDR   address to listen on (default 127.0.0.1)\n  \
       --port PORT   TCP and UDP port, 0 picks a free one (default 0)\n  \
       -h, --help    print this help"
}

/// Parses `--bind` and `--port`; returns the address to bind or a message for stderr.
fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<SocketAddr>, String> {
    let mut ip: IpAddr = IpAddr::from([127, 0, 0, 1]);
    let mut port: u16 = 0;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--bind" => {
                let v = value("--bind")?;
                // Accept "::1" as well as "[::1]".
                let trimmed = v.trim_start_matches('[').trim_end_matches(']');
                ip = trimmed
                    .parse()
                    .map_err(|_| format!("invalid --bind address '{v}'"))?;
            }
            "--port" => {
                let v = value("--port")?;
                port = v.parse().map_err(|_| format!("invalid --port '{v}'"))?;
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Some(SocketAddr::new(ip, port)))
}

/// Echoes everything one client sends until it closes or an error ends the connection.
///
/// On EOF we return, which drops the stream: every byte read has already been written back
/// by `write_all`, so nothing is lost by closing.
async fn echo(mut stream: TcpStream) {
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The command line: parses `args` (without the program name), binds, prints the `listening`
/// line and serves until killed. Returns the exit code (2 for usage errors).
pub fn main(args: impl Iterator<Item = String>) -> ExitCode {
    let addr = match parse_args(args) {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            println!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("tokio_echo: {msg}\n\n{}", usage());
            return ExitCode::from(2);
        }
    };

    let listener = match std::net::TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("tokio_echo: cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = match listener.local_addr() {
        Ok(local) => local,
        Err(e) => {
            eprintln!("tokio_echo: local_addr: {e}");
            return ExitCode::FAILURE;
        }
    };
    // UDP on the TCP port, as echoloop does (a UDP clash on a kernel-picked port is rare
    // enough for a comparison peer to just report it).
    let udp = match std::net::UdpSocket::bind(local) {
        Ok(udp) => udp,
        Err(e) => {
            eprintln!("tokio_echo: cannot bind UDP {local}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // SocketAddr's Display already writes IPv6 as "[::1]:PORT".
    println!("listening tcp={local} udp={local}");
    let _ = std::io::stdout().flush();
    match serve_std_with_udp(listener, Some(udp)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokio_echo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Echoes each datagram to its sender, one `recv_from` and one `send_to` per datagram.
async fn echo_udp(socket: UdpSocket) {
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue; // e.g. an ICMP error queued on the socket
        };
        let _ = socket.send_to(&buf[..n], peer).await;
    }
}

/// Serves echo on an already bound listener, on a fresh `current_thread` runtime, forever.
pub fn serve_std(listener: std::net::TcpListener) -> std::io::Result<()> {
    serve_std_with_udp(listener, None)
}

/// [`serve_std`] plus UDP echo on `udp` when given, on the same runtime.
pub fn serve_std_with_udp(
    listener: std::net::TcpListener,
    udp: Option<std::net::UdpSocket>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    if let Some(udp) = &udp {
        udp.set_nonblocking(true)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        if let Some(udp) = udp {
            tokio::spawn(echo_udp(UdpSocket::from_std(udp)?));
        }
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(echo(stream));
                }
                // EMFILE and friends: do not end the server, and do not spin on the error
                // either; back off briefly so descriptors can be freed.
                Err(e) => {
                    eprintln!("tokio_echo: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    })
}
