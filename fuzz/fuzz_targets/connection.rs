//! Fuzzes the TCP connection's state machine: the input bytes are decoded into limits and an
//! event script (bytes arrive, reads and writes block, FIN, reset, EPIPE, readiness events,
//! memory-budget squeezes, shutdown), which drives one `Connection` through a scripted
//! stream. Every invariant of `echoloop::connection::script::Script` is asserted after every
//! step (echo is a prefix of the input, no byte lost or invented, pending under the
//! high-water mark, legal phase changes, no busy loop), then the peer reads everything and
//! sends FIN, and every byte must come back followed by our FIN. A panic is a finding.
#![no_main]

use echoloop::connection::script::Script;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    Script::run_bytes(data);
});
