//! Echo (RFC 862) behind the service seam: every byte goes back, every datagram is answered
//! with itself.
//!
//! The reactor serves echo on its own paths instead: over TCP it reads into the shared
//! scratch buffer and writes straight back, copying nothing when the socket keeps up (see
//! `connection`), and splices bulk streams without copying at all; over UDP each reply leaves
//! from the buffer its request arrived in (see `udp`). This type is the same protocol as a
//! [`Service`], for anyone reading the seam for the first time, and for a [`Transcript`](super::Transcript).

use super::{Output, Service};

/// RFC 862 echo.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Service for Echo {
    fn on_input(&mut self, input: &[u8], out: &mut Output<'_>) {
        out.write(input);
    }

    /// An empty datagram gets an empty reply: a reply is exactly its request.
    fn on_datagram(&mut self, request: &[u8], out: &mut Output<'_>) -> bool {
        out.write(request);
        true
    }
}

#[cfg(test)]
mod tests {
    use crate::service::{ServiceKind, Transcript};

    #[test]
    fn every_byte_and_every_datagram_comes_back() {
        let mut chat = Transcript::open(ServiceKind::Echo.new_session());
        assert!(chat.greeting().is_empty());
        assert_eq!(chat.input(b"hello"), b"hello");
        assert_eq!(chat.peer_closed(), b"");
        assert!(!chat.is_closed(), "echo leaves closing to the peer");
        let now = std::time::SystemTime::now();
        let reply = |request: &[u8]| Transcript::datagram(&ServiceKind::Echo, request, now);
        assert_eq!(reply(b"x"), Some(b"x".to_vec()));
        assert_eq!(reply(b""), Some(Vec::new()));
    }
}
