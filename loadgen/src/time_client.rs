//! `echoloop-bench time`: the tutorials' UDP time client as a tool. Asks a `unixtime`
//! (seconds since 1970, the tutorials' server) or `time` (RFC 868, seconds since 1900)
//! server for the time and prints it as the tutorial's client does, `time.ctime(secs)`, in
//! UTC: `Mon Aug  6 17:09:17 2012`.
//!
//! Over UDP it sends one empty datagram and waits for the 4-byte answer (resending up to
//! twice, since datagrams get lost); over TCP it connects and reads to EOF. A reply that is
//! not 4 bytes is an error, as in the tutorial (`reply error N`). `--check` compares the
//! answer with the local clock and fails beyond a tolerance. RFC 868 values are read across
//! the 2036 wrap as `echoloop::service::time` documents.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, SystemTime};

use echoloop::service::clock::{unix_seconds, Civil};
use echoloop::service::time::{decode_rfc868, decode_unix, Epoch};

/// What to ask and how.
#[derive(Debug, Clone)]
pub struct TimeOptions {
    /// The time server.
    pub target: SocketAddr,
    /// TCP instead of UDP.
    pub tcp: bool,
    /// What the server counts from.
    pub epoch: Epoch,
    /// How long to wait for an answer (per datagram over UDP).
    pub timeout: Duration,
}

/// Why asking failed.
#[derive(Debug)]
pub enum TimeError {
    /// The socket failed, or nothing came back in time.
    Io(io::Error),
    /// The answer was not 4 bytes (the tutorial's `reply error`).
    BadReply(Vec<u8>),
}

impl std::fmt::Display for TimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimeError::Io(e) => write!(f, "no time from the server: {e}"),
            TimeError::BadReply(bytes) => write!(
                f,
                "reply error {}: {:?} (a time server sends 4 bytes)",
                bytes.len(),
                String::from_utf8_lossy(bytes)
            ),
        }
    }
}

impl From<io::Error> for TimeError {
    fn from(e: io::Error) -> Self {
        TimeError::Io(e)
    }
}

/// Unix seconds for the 4 bytes a server sent, or the tutorial's `reply error`.
pub fn decode(epoch: Epoch, reply: &[u8]) -> Result<i64, TimeError> {
    let bytes: [u8; 4] = reply
        .try_into()
        .map_err(|_| TimeError::BadReply(reply.to_vec()))?;
    let value = u32::from_be_bytes(bytes);
    Ok(match epoch {
        Epoch::Rfc868 => decode_rfc868(value),
        Epoch::Unix => decode_unix(value),
    })
}

/// The date as the tutorial prints it: `time.ctime(secs)`, here in UTC.
pub fn ctime(unix_seconds: i64) -> String {
    Civil::from_unix(unix_seconds).ctime()
}

/// Seconds the server is ahead of the local clock (negative: behind).
pub fn offset_from_local(server_unix_seconds: i64, local: SystemTime) -> i64 {
    server_unix_seconds - unix_seconds(local)
}

/// Asks the server once; returns its time in Unix seconds.
pub fn ask(options: &TimeOptions) -> Result<i64, TimeError> {
    let reply = if options.tcp {
        let stream = TcpStream::connect_timeout(&options.target, options.timeout)?;
        stream.set_read_timeout(Some(options.timeout))?;
        let mut reply = Vec::new();
        // A time server closes after 4 bytes; never read more than a little past that.
        stream.take(64).read_to_end(&mut reply)?;
        reply
    } else {
        let local: SocketAddr = match options.target {
            SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
            SocketAddr::V6(_) => "[::]:0".parse().expect("literal"),
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(options.target)?;
        socket.set_read_timeout(Some(options.timeout))?;
        let mut buffer = [0u8; 2048];
        let mut attempts = 0;
        loop {
            attempts += 1;
            socket.send(b"")?;
            match socket.recv(&mut buffer) {
                Ok(n) => break buffer[..n].to_vec(),
                Err(e) if attempts < 3 && is_retryable(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    };
    decode(options.epoch, &reply)
}

fn is_retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use echoloop::service::clock::from_unix_seconds;
    use echoloop::service::time::encode;

    #[test]
    fn four_bytes_decode_to_the_tutorials_date() {
        let secs = decode(Epoch::Unix, &1_344_272_957u32.to_be_bytes()).unwrap();
        assert_eq!(ctime(secs), "Mon Aug  6 17:09:17 2012");
        let after_wrap = from_unix_seconds(2_200_000_000);
        let secs = decode(Epoch::Rfc868, &encode(Epoch::Rfc868, after_wrap)).unwrap();
        assert_eq!(secs, 2_200_000_000, "read across the 2036 wrap");
    }

    #[test]
    fn a_reply_of_another_length_is_the_tutorials_reply_error() {
        let error = decode(Epoch::Unix, b"hello").unwrap_err().to_string();
        assert!(error.starts_with("reply error 5"), "{error}");
        assert!(decode(Epoch::Unix, b"").is_err());
    }

    #[test]
    fn offset_is_server_minus_local() {
        assert_eq!(offset_from_local(105, from_unix_seconds(100)), 5);
        assert_eq!(offset_from_local(95, from_unix_seconds(100)), -5);
    }
}
