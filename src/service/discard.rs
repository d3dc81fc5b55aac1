//! Discard (RFC 863): every byte is read and dropped; nothing is ever sent.
//!
//! It costs no memory however long a client sends: input lands in the reactor's shared
//! scratch buffer and is forgotten, and a discard connection never holds pending output.
//! Reading still obeys the per-turn read budget, so a firehose cannot starve others.

use super::{Output, Service};

/// RFC 863 discard.
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl Service for Discard {
    fn on_input(&mut self, _input: &[u8], _out: &mut Output<'_>) {}
}

#[cfg(test)]
mod tests {
    use crate::service::{ServiceKind, Transcript};

    #[test]
    fn nothing_ever_comes_back() {
        let mut chat = Transcript::open(ServiceKind::Discard.new_session());
        assert!(chat.greeting().is_empty());
        assert!(chat.input(&[7u8; 100_000]).is_empty());
        assert!(chat.peer_closed().is_empty());
        // RFC 863: "Any received datagram is thrown away": never a reply.
        let now = std::time::SystemTime::now();
        assert_eq!(
            Transcript::datagram(&ServiceKind::Discard, b"anything", now),
            None
        );
        assert_eq!(Transcript::datagram(&ServiceKind::Discard, b"", now), None);
    }
}
