//! Daytime (RFC 867): one human-readable line with the date and time, then close.
//!
//! RFC 867 leaves the format open ("the daytime is sent as a ASCII character string").
//! echoloop sends C's `ctime` layout, as BSD inetd does, followed by `UTC` so the line names
//! its zone (inetd prints local time without saying which): `Thu Nov 26 01:56:27 2026 UTC`
//! and CRLF. Over TCP the line is sent as soon as the connection opens, then the server
//! closes; over UDP every datagram gets the line as its reply (a datagram is answered as a
//! whole connection, so the opening line is the reply: no datagram code here).

use super::clock::{unix_seconds, Civil};
use super::{Output, Service};
use std::time::SystemTime;

/// RFC 867 daytime.
#[derive(Debug, Default, Clone, Copy)]
pub struct Daytime;

/// The daytime line for `now`, CRLF included.
pub fn daytime_line(now: SystemTime) -> String {
    format!("{} UTC\r\n", Civil::from_unix(unix_seconds(now)).ctime())
}

impl Service for Daytime {
    fn on_open(&mut self, out: &mut Output<'_>) {
        out.write(daytime_line(out.now()).as_bytes());
        out.close();
    }

    /// RFC 867: "the received data is thrown away".
    fn on_input(&mut self, _input: &[u8], _out: &mut Output<'_>) {}
}

#[cfg(test)]
mod tests {
    use crate::service::clock::from_unix_seconds;
    use crate::service::{ServiceKind, Transcript};

    #[test]
    fn tcp_sends_one_line_at_open_then_closes() {
        let at = from_unix_seconds(1_344_272_957);
        let mut chat = Transcript::open_at(ServiceKind::Daytime.new_session(), at, 1024);
        assert_eq!(chat.greeting(), b"Mon Aug  6 17:09:17 2012 UTC\r\n");
        assert!(chat.is_closed());
        assert!(chat.input(b"thrown away").is_empty());
    }

    #[test]
    fn every_datagram_gets_the_line() {
        let at = from_unix_seconds(0);
        for request in [&b""[..], b"what time is it?"] {
            let reply = Transcript::datagram(&ServiceKind::Daytime, request, at).expect("a reply");
            assert_eq!(reply, b"Thu Jan  1 00:00:00 1970 UTC\r\n");
        }
    }
}
