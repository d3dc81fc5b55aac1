//! Echo (RFC 862) behind the service seam: every byte goes back, every datagram is answered
//! with itself.
//!
//! The reactor does not use this for TCP echo: its fast path reads into the shared scratch
//! buffer and writes straight back, copying nothing when the socket keeps up (see
//! `connection`), and splices bulk streams without copying at all. This type is the same
//! protocol as a [`Service`], for UDP and for anyone reading the seam for the first time.

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
        assert_eq!(chat.datagram(b"x"), Some(b"x".to_vec()));
        assert_eq!(chat.datagram(b""), Some(Vec::new()));
    }
}
