//! Time (RFC 868) and the tutorials' `unixtime`: the clock as a 32-bit big-endian number of
//! seconds, then close.
//!
//! - `time` counts from 1900-01-01 00:00 UTC, as RFC 868 says. Thirty-two bits run out on
//!   2036-02-07 06:28:16 UTC; from then on the server sends the count modulo 2^32, as inetd
//!   does (so 2036-02-07 06:28:16 is sent as 0). RFC 868 says nothing of the wrap; the usual
//!   reading, and what [`decode_rfc868`] does, is NTP's (RFC 4330 §3): a value with the top
//!   bit clear (below 2^31, i.e. before 1968 in the first era) belongs to the era after 2036.
//!   That gives one unambiguous answer for every instant from 1968 to 2104.
//! - `unixtime` counts from 1970-01-01 UTC: the tutorials' server sends
//!   `struct.pack("!I", int(time.time()))` on port 12345, and their client unpacks it with
//!   `struct.unpack("!I")` and prints `time.ctime`. Unsigned 32 bits last until
//!   2106-02-07 06:28:15 UTC; past that it wraps too (modulo 2^32).
//!
//! Over TCP the four bytes are sent when the connection opens, and the server closes; over
//! UDP every datagram (the tutorial's is empty) gets the four bytes.

use super::clock::unix_seconds;
use super::{Output, Service};
use std::time::SystemTime;

/// Seconds from 1900-01-01 to 1970-01-01 (RFC 868's example: 2,208,988,800).
pub const SECONDS_1900_TO_1970: i64 = 2_208_988_800;

/// Which epoch a [`Time`] counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epoch {
    /// RFC 868: 1900-01-01 00:00 UTC.
    Rfc868,
    /// The Unix epoch, 1970-01-01 00:00 UTC (the tutorials' time server).
    Unix,
}

/// The four bytes a time server sends at `now`.
pub fn encode(epoch: Epoch, now: SystemTime) -> [u8; 4] {
    let since_epoch = match epoch {
        Epoch::Rfc868 => unix_seconds(now) + SECONDS_1900_TO_1970,
        Epoch::Unix => unix_seconds(now),
    };
    // Modulo 2^32, on purpose: this is the wrap the module doc describes.
    (since_epoch.rem_euclid(1 << 32) as u32).to_be_bytes()
}

/// Unix seconds for an RFC 868 value, reading values below 2^31 as the era after the
/// 2036 wrap (so the result lies between 1968-01-20 and 2104-02-26).
pub fn decode_rfc868(value: u32) -> i64 {
    let era = if value < 1 << 31 { 1i64 << 32 } else { 0 };
    i64::from(value) + era - SECONDS_1900_TO_1970
}

/// Unix seconds for a `unixtime` value (1970 to 2106).
pub fn decode_unix(value: u32) -> i64 {
    i64::from(value)
}

/// RFC 868 time, or its Unix-epoch variant.
#[derive(Debug, Clone, Copy)]
pub struct Time {
    epoch: Epoch,
}

impl Time {
    /// Seconds since 1900 (RFC 868).
    pub fn rfc868() -> Time {
        Time {
            epoch: Epoch::Rfc868,
        }
    }

    /// Seconds since 1970 (the tutorials' variant).
    pub fn unix() -> Time {
        Time { epoch: Epoch::Unix }
    }
}

impl Service for Time {
    fn on_open(&mut self, out: &mut Output<'_>) {
        out.write(&encode(self.epoch, out.now()));
        out.close();
    }

    fn on_input(&mut self, _input: &[u8], _out: &mut Output<'_>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::clock::from_unix_seconds;
    use crate::service::{ServiceKind, Transcript};

    #[test]
    fn rfc868_examples_and_the_unix_variant() {
        // RFC 868: "the time 1 Jan 1970 GMT is 2,208,988,800".
        assert_eq!(
            encode(Epoch::Rfc868, from_unix_seconds(0)),
            2_208_988_800u32.to_be_bytes()
        );
        let now = from_unix_seconds(1_344_272_957);
        assert_eq!(encode(Epoch::Unix, now), 1_344_272_957u32.to_be_bytes());
        assert_eq!(
            encode(Epoch::Rfc868, now),
            (1_344_272_957u32 + 2_208_988_800).to_be_bytes()
        );
    }

    #[test]
    fn rfc868_wraps_in_2036_and_decodes_across_the_wrap() {
        let wrap = (1i64 << 32) - SECONDS_1900_TO_1970; // 2036-02-07 06:28:16 UTC
        assert_eq!(
            encode(Epoch::Rfc868, from_unix_seconds(wrap - 1)),
            [0xff; 4]
        );
        assert_eq!(encode(Epoch::Rfc868, from_unix_seconds(wrap)), [0; 4]);
        assert_eq!(
            encode(Epoch::Rfc868, from_unix_seconds(wrap + 5)),
            [0, 0, 0, 5]
        );
        for unix in [0, 1_344_272_957, wrap - 1, wrap, wrap + 5, 4_000_000_000] {
            let value = u32::from_be_bytes(encode(Epoch::Rfc868, from_unix_seconds(unix)));
            assert_eq!(decode_rfc868(value), unix, "unix second {unix}");
        }
        let value = u32::from_be_bytes(encode(Epoch::Unix, from_unix_seconds(4_000_000_000)));
        assert_eq!(decode_unix(value), 4_000_000_000);
    }

    #[test]
    fn tcp_sends_four_bytes_then_closes_and_udp_answers_every_datagram() {
        let at = from_unix_seconds(1_000_000_000);
        for (kind, value) in [
            (ServiceKind::Time, 3_208_988_800u32),
            (ServiceKind::Unixtime, 1_000_000_000),
        ] {
            let chat = Transcript::open_at(kind.new_session(), at, 1024);
            assert_eq!(chat.greeting(), value.to_be_bytes(), "{kind}");
            assert!(chat.is_closed());
            let reply = Transcript::datagram(&kind, b"", at);
            assert_eq!(reply, Some(value.to_be_bytes().to_vec()), "{kind}");
        }
    }
}
