//! Services: what bytes go out for the bytes that came in, with no socket in sight.
//!
//! A listener carries a [`ServiceKind`]; each TCP connection gets its own [`Service`] value,
//! and so does each UDP datagram (so one peer's bytes can never leak into another's reply).
//! The reactor does all socket work, limits,
//! fairness and shutdown; a service is called at five points, each with a default except
//! `on_input`:
//!
//! | the reactor says | the service does |
//! |---|---|
//! | the connection opened ([`Service::on_open`]) | may speak first (daytime, time) |
//! | these bytes arrived ([`Service::on_input`]) | writes its answer, or nothing |
//! | everything written has left, `room` more fit ([`Service::on_writable`]) | a streaming service (chargen) writes its next piece |
//! | the peer sent its FIN ([`Service::on_peer_closed`]) | answers a last request that had no terminator |
//! | one datagram arrived ([`Service::on_datagram`]) | writes one reply, or none |
//!
//! It answers through an [`Output`]: [`Output::write`] to send, [`Output::close`] to have the
//! connection closed once the output has left, [`Output::room`] for how much the reactor
//! will hold now, [`Output::now`] for the wall clock (passed in, so tests choose the time).
//!
//! The built-in services are the inetd family: [`echo`] (RFC 862, the default; the reactor
//! echoes on its own fast paths, TCP and UDP, so [`echo::Echo`] is only the value
//! [`ServiceKind::new_session`] hands out for echo, e.g. to a [`Transcript`]), [`discard`]
//! (RFC 863), [`chargen`] (RFC 864), [`daytime`] (RFC 867), and [`time`] (RFC 868, and the
//! tutorials' Unix-epoch variant). An embedder adds its own with [`ServiceKind::custom`];
//! [`Transcript`] drives any service without sockets, for tests:
//!
//! ```
//! use echoloop::service::{Output, Service, ServiceKind, Transcript};
//!
//! /// Sends each line back reversed.
//! #[derive(Default)]
//! struct Reverse { line: Vec<u8> }
//!
//! impl Service for Reverse {
//!     fn on_input(&mut self, input: &[u8], out: &mut Output<'_>) {
//!         for &byte in input {
//!             if byte == b'\n' {
//!                 self.line.reverse();
//!                 out.write(&self.line);
//!                 out.write(b"\n");
//!                 self.line.clear();
//!             } else {
//!                 self.line.push(byte);
//!             }
//!         }
//!     }
//!
//!     /// The peer closed: a last line without a newline is answered too.
//!     fn on_peer_closed(&mut self, out: &mut Output<'_>) {
//!         if !self.line.is_empty() {
//!             self.on_input(b"\n", out);
//!         }
//!     }
//! }
//!
//! let kind = ServiceKind::custom("reverse", || Box::new(Reverse::default()));
//! let mut chat = Transcript::open(kind.new_session());
//! assert_eq!(chat.input(b"hello\nwor"), b"olleh\n");
//! assert_eq!(chat.input(b"ld\nlast"), b"dlrow\n");
//! assert_eq!(chat.peer_closed(), b"tsal\n");
//! // A datagram gets a fresh value, answered as a whole connection: nothing carries over.
//! let now = std::time::SystemTime::now();
//! assert_eq!(Transcript::datagram(&kind, b"ab\ncd", now), Some(b"ba\ndc\n".to_vec()));
//! ```
//!
//! `examples/reverse.rs` serves that service next to echo, on one reactor.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

pub mod chargen;
pub mod clock;
pub mod daytime;
pub mod discard;
pub mod echo;
pub(crate) mod reply_limit;
pub mod time;

/// The largest reply a service may give to one datagram: what fits in one UDP datagram.
pub const MAX_REPLY: usize = 65_507;

/// A sans-IO protocol: told what arrived and how much room there is, it says what to write
/// and when to close. One value per TCP connection and one per UDP datagram (from
/// [`ServiceKind::new_session`]).
pub trait Service: Send {
    /// The connection has just opened. A service that speaks first (daytime, time) writes
    /// here, and may close at once.
    fn on_open(&mut self, _out: &mut Output<'_>) {}

    /// `input` arrived from the peer. Echo writes it back; discard ignores it.
    fn on_input(&mut self, input: &[u8], out: &mut Output<'_>);

    /// True for a service that writes without being asked (chargen): the reactor then calls
    /// [`Service::on_writable`] whenever its pending output has left and the peer can take
    /// more. Read once, when the connection opens.
    fn streams(&self) -> bool {
        false
    }

    /// Only for a service that [`streams`](Service::streams): everything written so far has
    /// left, and [`Output::room`] more bytes fit in this turn. Writing less than the room
    /// (even nothing) is fine; the reactor asks again on the next turn the socket can take
    /// more. The room is the same per-turn budget echo gets, so streaming is fair.
    fn on_writable(&mut self, _out: &mut Output<'_>) {}

    /// The peer sent its FIN: no more input. What is written here still goes out before the
    /// server closes its side.
    fn on_peer_closed(&mut self, _out: &mut Output<'_>) {}

    /// UDP: `request` is one datagram, and this value was made for it alone: the reactor
    /// makes a fresh value for every datagram ([`ServiceKind::answer_datagram`]), so nothing
    /// one peer sends can reach another peer's reply by mistake. (State that must outlive a
    /// datagram is shared on purpose: an `Arc` that the `make` closure captures, say.)
    /// Returns true to send what was written as the reply (which may be empty), false for
    /// none. A reply longer than [`MAX_REPLY`] is not sent.
    ///
    /// The default answers the datagram as a whole connection: [`Service::on_open`], then,
    /// unless that closed, [`Service::on_input`] with the datagram and
    /// [`Service::on_peer_closed`]; it replies when that wrote something. So a line-based
    /// service answers a datagram without a trailing newline, and daytime's greeting is its
    /// reply.
    fn on_datagram(&mut self, request: &[u8], out: &mut Output<'_>) -> bool {
        self.on_open(out);
        if !out.is_closing() {
            self.on_input(request, out);
            self.on_peer_closed(out);
        }
        out.written() > 0
    }
}

/// What a service writes in one call, and what it is told: the room and the time.
#[derive(Debug)]
pub struct Output<'a> {
    buffer: &'a mut Vec<u8>,
    start: usize,
    room: usize,
    /// `None`: read the wall clock when asked (the reactor); `Some`: a fixed time (tests).
    now: Option<SystemTime>,
    close: bool,
}

impl<'a> Output<'a> {
    /// Output appended to `buffer`, with `room` bytes advised and the clock at `now`.
    pub fn new(buffer: &'a mut Vec<u8>, room: usize, now: SystemTime) -> Self {
        let start = buffer.len();
        Output {
            buffer,
            start,
            room,
            now: Some(now),
            close: false,
        }
    }

    /// As [`Output::new`], reading the wall clock only if the service asks for it.
    pub(crate) fn with_wall_clock(buffer: &'a mut Vec<u8>, room: usize) -> Self {
        let start = buffer.len();
        Output {
            buffer,
            start,
            room,
            now: None,
            close: false,
        }
    }

    /// Queues `bytes` for the peer, in order after everything written before.
    ///
    /// Writing more than [`Output::room`] is allowed (an answer is an answer), but the
    /// reactor then stops reading this connection until the peer has taken it: backpressure
    /// holds for services as it does for echo.
    pub fn write(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes written in this call so far.
    pub fn written(&self) -> usize {
        self.buffer.len() - self.start
    }

    /// How many more bytes the reactor would like at most in this call (the per-turn write
    /// budget and the pending-output limit, whichever is less; [`MAX_REPLY`] for a datagram).
    pub fn room(&self) -> usize {
        self.room.saturating_sub(self.written())
    }

    /// The wall clock: read when asked in the reactor, fixed by a [`Transcript`] in tests.
    pub fn now(&self) -> SystemTime {
        self.now.unwrap_or_else(SystemTime::now)
    }

    /// Closes the connection once everything written has left: the server sends its FIN,
    /// then reads and discards until the peer's (so closing never resets unread data). Has
    /// no effect on a datagram.
    pub fn close(&mut self) {
        self.close = true;
    }

    /// True once [`Output::close`] was called.
    pub fn is_closing(&self) -> bool {
        self.close
    }
}

/// Makes one [`Service`] value: per TCP connection, or per UDP datagram.
pub type MakeService = dyn Fn() -> Box<dyn Service> + Send + Sync;

/// Which service a listener serves: a built-in of the inetd family, or an embedder's own.
#[derive(Clone)]
#[non_exhaustive]
pub enum ServiceKind {
    /// RFC 862: every byte goes back. The default, and the reactor's fast path.
    Echo,
    /// RFC 863: every byte is read and dropped.
    Discard,
    /// RFC 864: rotating lines of printable characters, for as long as the peer reads.
    Chargen,
    /// RFC 867: the date and time as one human-readable line.
    Daytime,
    /// RFC 868: seconds since 1900 as a 32-bit big-endian number.
    Time,
    /// The tutorials' variant of `time`: Unix seconds (since 1970) as 32-bit big-endian.
    Unixtime,
    /// An embedder's service, by name.
    Custom {
        /// Shown in the start-up line, logs and counters.
        name: Arc<str>,
        /// Makes a fresh value per connection and per datagram.
        make: Arc<MakeService>,
    },
}

impl ServiceKind {
    /// Every built-in, in the order of their RFCs.
    pub const BUILTIN: [ServiceKind; 6] = [
        ServiceKind::Echo,
        ServiceKind::Discard,
        ServiceKind::Chargen,
        ServiceKind::Daytime,
        ServiceKind::Time,
        ServiceKind::Unixtime,
    ];

    /// An embedder's service: `make` is called once per TCP connection and once per UDP
    /// datagram, so keep it cheap (the built-ins allocate at most a few bytes). The name appears in `key=value` lines, so spaces and `=` in it become `_`.
    pub fn custom(
        name: &str,
        make: impl Fn() -> Box<dyn Service> + Send + Sync + 'static,
    ) -> ServiceKind {
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_whitespace() || c == '=' {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        ServiceKind::Custom {
            name: Arc::from(name.as_str()),
            make: Arc::new(make),
        }
    }

    /// The name used on the command line, in the start-up line and in counters.
    pub fn name(&self) -> &str {
        match self {
            ServiceKind::Echo => "echo",
            ServiceKind::Discard => "discard",
            ServiceKind::Chargen => "chargen",
            ServiceKind::Daytime => "daytime",
            ServiceKind::Time => "time",
            ServiceKind::Unixtime => "unixtime",
            ServiceKind::Custom { name, .. } => name,
        }
    }

    /// True for echo, which the reactor serves on its own fast path.
    pub fn is_echo(&self) -> bool {
        matches!(self, ServiceKind::Echo)
    }

    /// True when a UDP reply may be longer than its request, or come without one being
    /// needed: such a service can reflect and amplify, so its replies are rate-limited
    /// beyond loopback (see `reply_limit`). Echo's reply is exactly its request, and
    /// discard never replies.
    pub fn may_amplify(&self) -> bool {
        !matches!(self, ServiceKind::Echo | ServiceKind::Discard)
    }

    /// A fresh service value: one per TCP connection, one per UDP datagram.
    pub fn new_session(&self) -> Box<dyn Service> {
        match self {
            ServiceKind::Echo => Box::new(echo::Echo),
            ServiceKind::Discard => Box::new(discard::Discard),
            ServiceKind::Chargen => Box::new(chargen::Chargen::new(seed_from_clock())),
            ServiceKind::Daytime => Box::new(daytime::Daytime),
            ServiceKind::Time => Box::new(time::Time::rfc868()),
            ServiceKind::Unixtime => Box::new(time::Time::unix()),
            ServiceKind::Custom { make, .. } => make(),
        }
    }

    /// Answers one datagram: a fresh value ([`ServiceKind::new_session`]) writes its reply to
    /// `out` ([`Service::on_datagram`]). True when the reply is to be sent: the service asked
    /// for it and it fits in a datagram ([`MAX_REPLY`]). What a false leaves in `out` is the
    /// caller's to drop. The reactor answers every datagram of a service other than echo here
    /// (echo's replies leave from the receive buffers, uncopied).
    pub fn answer_datagram(&self, request: &[u8], out: &mut Output<'_>) -> bool {
        self.new_session().on_datagram(request, out) && out.written() <= MAX_REPLY
    }
}

/// A seed for chargen's datagram lengths; they need to vary, not to be unpredictable.
fn seed_from_clock() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0x5eed, |d| d.as_nanos() as u64)
}

impl fmt::Debug for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Built-ins compare by kind; custom services by identity (the same `make`).
impl PartialEq for ServiceKind {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ServiceKind::Custom { make: a, .. }, ServiceKind::Custom { make: b, .. }) => {
                Arc::ptr_eq(a, b)
            }
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

impl Eq for ServiceKind {}

/// A service name that is not a built-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownService(pub String);

impl fmt::Display for UnknownService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<&str> = ServiceKind::BUILTIN.iter().map(|k| k.name()).collect();
        write!(
            f,
            "unknown service '{}' (known: {})",
            self.0,
            known.join(", ")
        )
    }
}

impl std::error::Error for UnknownService {}

impl FromStr for ServiceKind {
    type Err = UnknownService;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ServiceKind::BUILTIN
            .into_iter()
            .find(|kind| kind.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| UnknownService(text.to_string()))
    }
}

/// Drives a [`Service`] without sockets, as the reactor would: for tests and docs.
///
/// Every call returns what the service wrote in reply; [`Transcript::is_closed`] says
/// whether it asked to close.
pub struct Transcript {
    service: Box<dyn Service>,
    buffer: Vec<u8>,
    now: SystemTime,
    room: usize,
    closed: bool,
}

impl Transcript {
    /// Opens a connection at the current time, with 64 KiB of room per call.
    pub fn open(service: Box<dyn Service>) -> Transcript {
        Transcript::open_at(service, SystemTime::now(), 64 * 1024)
    }

    /// Opens a connection at `now`, with `room` bytes of room per call. What `on_open` wrote
    /// is in [`Transcript::greeting`].
    pub fn open_at(service: Box<dyn Service>, now: SystemTime, room: usize) -> Transcript {
        let mut transcript = Transcript {
            service,
            buffer: Vec::new(),
            now,
            room,
            closed: false,
        };
        transcript.call(|service, out| service.on_open(out));
        transcript
    }

    /// What the service wrote when the connection opened.
    pub fn greeting(&self) -> &[u8] {
        &self.buffer
    }

    /// Feeds `input`; returns what the service wrote in answer.
    pub fn input(&mut self, input: &[u8]) -> Vec<u8> {
        self.call(|service, out| service.on_input(input, out))
    }

    /// Tells a streaming service the socket took everything; returns what it wrote next.
    pub fn writable(&mut self) -> Vec<u8> {
        self.call(|service, out| service.on_writable(out))
    }

    /// Sends the peer's FIN; returns what the service wrote last.
    pub fn peer_closed(&mut self) -> Vec<u8> {
        self.call(|service, out| service.on_peer_closed(out))
    }

    /// True once the service asked to close.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The reply to one datagram of `kind` at `now`, as the reactor gets it
    /// ([`ServiceKind::answer_datagram`]: a fresh value per datagram), or `None` for none.
    pub fn datagram(kind: &ServiceKind, request: &[u8], now: SystemTime) -> Option<Vec<u8>> {
        let mut reply = Vec::new();
        let mut out = Output::new(&mut reply, MAX_REPLY, now);
        kind.answer_datagram(request, &mut out).then_some(reply)
    }

    fn call(&mut self, f: impl FnOnce(&mut dyn Service, &mut Output<'_>)) -> Vec<u8> {
        self.buffer.clear();
        let mut out = Output::new(&mut self.buffer, self.room, self.now);
        f(self.service.as_mut(), &mut out);
        self.closed |= out.is_closing();
        self.buffer.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names_parse_back_to_their_kind() {
        for kind in ServiceKind::BUILTIN {
            assert_eq!(kind.name().parse::<ServiceKind>(), Ok(kind.clone()));
        }
        assert_eq!("DayTime".parse::<ServiceKind>(), Ok(ServiceKind::Daytime));
        let unknown = "qotd".parse::<ServiceKind>().unwrap_err().to_string();
        assert!(
            unknown.contains("'qotd'") && unknown.contains("chargen"),
            "{unknown}"
        );
    }

    #[test]
    fn custom_services_compare_by_identity() {
        let a = ServiceKind::custom("x", || Box::new(echo::Echo));
        let b = ServiceKind::custom("x", || Box::new(echo::Echo));
        assert_eq!(a, a.clone());
        assert_ne!(a, b);
        assert_ne!(a, ServiceKind::Echo);
        assert_eq!(a.name(), "x");
        assert!(a.may_amplify(), "an unknown service is assumed to amplify");
    }

    #[test]
    fn output_counts_room_and_written_from_its_own_start() {
        let mut buffer = b"old".to_vec();
        let mut out = Output::new(&mut buffer, 10, SystemTime::UNIX_EPOCH);
        out.write(b"abcd");
        assert_eq!(out.written(), 4);
        assert_eq!(out.room(), 6);
        out.write(b"0123456789");
        assert_eq!(out.room(), 0, "room saturates; writing past it is allowed");
        assert!(!out.is_closing());
        out.close();
        assert!(out.is_closing());
        assert_eq!(&buffer[..], b"oldabcd0123456789");
    }

    /// A line service written for TCP alone (no `on_datagram`), as a newcomer writes one:
    /// each datagram is answered on its own, a last line without a newline included, and
    /// nothing one peer sent reaches the next reply.
    #[test]
    fn a_datagram_is_answered_as_a_whole_connection_by_a_fresh_value() {
        #[derive(Default)]
        struct Lines {
            line: Vec<u8>,
        }
        impl Service for Lines {
            fn on_input(&mut self, input: &[u8], out: &mut Output<'_>) {
                for &byte in input {
                    if byte == b'\n' {
                        out.write(&self.line.to_ascii_uppercase());
                        out.write(b"\n");
                        self.line.clear();
                    } else {
                        self.line.push(byte);
                    }
                }
            }
            fn on_peer_closed(&mut self, out: &mut Output<'_>) {
                if !self.line.is_empty() {
                    self.on_input(b"\n", out);
                }
            }
        }
        let kind = ServiceKind::custom("lines", || Box::new(Lines::default()));
        let now = SystemTime::UNIX_EPOCH;
        let reply = |request: &[u8]| Transcript::datagram(&kind, request, now);
        assert_eq!(reply(b"one\ntw"), Some(b"ONE\nTW\n".to_vec()));
        assert_eq!(reply(b"o"), Some(b"O\n".to_vec()), "no 'tw' left over");
        assert_eq!(reply(b""), None, "nothing written: no reply");
        let greeting = Transcript::datagram(&ServiceKind::Daytime, b"", now);
        assert_eq!(greeting, Some(b"Thu Jan  1 00:00:00 1970 UTC\r\n".to_vec()));
    }

    #[test]
    fn a_reply_too_long_for_a_datagram_is_not_sent() {
        struct Huge;
        impl Service for Huge {
            fn on_input(&mut self, input: &[u8], out: &mut Output<'_>) {
                out.write(&vec![b'x'; MAX_REPLY + 1 - input.len()]);
            }
        }
        let kind = ServiceKind::custom("huge", || Box::new(Huge));
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(
            Transcript::datagram(&kind, b"", now),
            None,
            "one byte too long"
        );
        let longest = Transcript::datagram(&kind, b"a", now).map(|reply| reply.len());
        assert_eq!(longest, Some(MAX_REPLY), "the longest that fits is sent");
    }
}
