//! A custom service on echoloop's reactor: each line comes back reversed, over TCP and UDP,
//! served beside echo by the same single-threaded loop. The service is sans-IO: it is told
//! what arrived and writes its answer; the reactor does the sockets, limits and shutdown.
//! Over UDP nothing more is needed: each datagram is answered by a fresh value as a whole
//! connection (input, then the peer's close), so a datagram's last line needs no newline and
//! no line can carry over from one peer to another.
//!
//! ```sh
//! cargo run --example reverse          # then: nc 127.0.0.1 7070, type a line
//! ```
//! Ctrl-C (or stdin closing) stops it gracefully and prints the counters.

use echoloop::listen::{Listener, Protocol};
use echoloop::service::{Output, Service, ServiceKind};
use echoloop::{Config, Server};

/// Reverses each line; a line longer than 4 KiB is cut there (a bound on memory per client).
#[derive(Default)]
struct Reverse {
    line: Vec<u8>,
}

const MAX_LINE: usize = 4096;

impl Service for Reverse {
    fn on_input(&mut self, input: &[u8], out: &mut Output<'_>) {
        for &byte in input {
            if byte == b'\n' || self.line.len() == MAX_LINE {
                let text = String::from_utf8_lossy(&self.line);
                let reversed: String = text.trim_end_matches('\r').chars().rev().collect();
                out.write(reversed.as_bytes());
                out.write(b"\n");
                self.line.clear();
            }
            if byte != b'\n' {
                self.line.push(byte);
            }
        }
    }

    /// A last line without a newline is answered too.
    fn on_peer_closed(&mut self, out: &mut Output<'_>) {
        if !self.line.is_empty() {
            self.on_input(b"\n", out);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args().nth(1).map_or(Ok(7070), |p| p.parse())?;
    let mut config = Config {
        port: 0, // echo on a free port, beside the service
        ..Config::default()
    };
    config.listeners.push(Listener {
        service: ServiceKind::custom("reverse", || Box::new(Reverse::default())),
        protocol: Protocol::Both,
        addr: ([127, 0, 0, 1], port).into(),
    });
    let server = Server::bind(config)?;
    for endpoint in server.endpoints() {
        println!(
            "{} on {} {}",
            endpoint.service,
            endpoint.protocol.name(),
            endpoint.addr
        );
    }
    let stop = server.shutdown_handle();
    // Stop when stdin closes (Ctrl-D, or the end of a pipe); Ctrl-C ends the process anyway.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        stop.shutdown();
    });
    let stats = server.run()?;
    println!("summary {stats}");
    Ok(())
}
