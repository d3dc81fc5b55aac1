//! `tokio_echo`: the tokio `current_thread` echo server that `scripts/loadtest.sh --compare`
//! measures echoloop against. The server itself lives in `echoloop_testkit::tokio_echo`, so
//! the bench (`benches/echo_roundtrip/`) runs the very same code on a thread.
//!
//! ```text
//! cargo build --release --example tokio_echo
//! target/release/examples/tokio_echo [--bind 127.0.0.1] [--port 0]
//! ```

fn main() -> std::process::ExitCode {
    echoloop_testkit::tokio_echo::main(std::env::args().skip(1))
}
