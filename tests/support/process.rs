//! The `echoloop` binary as a child process for operations tests: its stdout and stderr as
//! line streams with deadlines, signals, and a stdout a test can close as a script would.
//! Killed and reaped on drop. (`tests/binary.rs` has its own older harness; this one adds
//! stderr lines and a closable stdout.)

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// How long any one wait on the child may take before the test fails.
pub const CHILD_WAIT: Duration = Duration::from_secs(20);

/// A running `echoloop`.
pub struct Echoloop {
    child: Child,
    stdout: Option<ChildStdout>,
    stdout_lines: Option<Receiver<String>>,
    stderr_lines: Receiver<String>,
}

impl Echoloop {
    /// Starts the binary with `args` (add `--port 0` yourself), logs at info level.
    #[track_caller]
    pub fn start(args: &[&str]) -> Echoloop {
        let mut child = Command::new(env!("CARGO_BIN_EXE_echoloop"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start echoloop");
        let stderr = child.stderr.take().expect("piped stderr");
        Echoloop {
            stdout: child.stdout.take(),
            stdout_lines: None,
            stderr_lines: lines_of(stderr),
            child,
        }
    }

    /// The next stdout line, within [`CHILD_WAIT`].
    #[track_caller]
    pub fn stdout_line(&mut self) -> String {
        if self.stdout_lines.is_none() {
            let stdout = self.stdout.take().expect("stdout still open");
            self.stdout_lines = Some(lines_of(stdout));
        }
        let lines = self.stdout_lines.as_ref().expect("just set");
        lines
            .recv_timeout(CHILD_WAIT)
            .expect("a stdout line in time")
    }

    /// Reads the first stdout line, then closes our end of the pipe, as `| head -1` does.
    #[track_caller]
    pub fn first_line_then_close_stdout(&mut self) -> String {
        let stdout = self.stdout.take().expect("stdout still open");
        let (send, receive) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = send.send(line);
            // `reader` drops here: the pipe's read end is closed.
        });
        let line = receive
            .recv_timeout(CHILD_WAIT)
            .expect("first line in time");
        line.trim_end().to_string()
    }

    /// The next stderr line containing `needle`, within [`CHILD_WAIT`].
    #[track_caller]
    pub fn stderr_line_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + CHILD_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no stderr line with {needle:?} in time: {e}"),
            }
        }
    }

    /// Sends `signal` to the child.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet; it touches
        // no memory of ours.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({signal}) failed");
    }

    /// Waits for the exit and returns its code; fails if a signal killed the child.
    #[track_caller]
    pub fn exit_code(&mut self) -> i32 {
        let deadline = Instant::now() + CHILD_WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status
                    .code()
                    .unwrap_or_else(|| panic!("killed by a signal, not exited: {status}"));
            }
            assert!(Instant::now() < deadline, "echoloop did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Echoloop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines of `source` on a channel, read by a thread that ends at EOF.
fn lines_of(source: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(source).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

/// The `key=value` fields of a `summary` or `stats` line, in order.
pub fn fields(line: &str) -> Vec<(String, String)> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The integer value of `key` in a `key=value` line; fails the test when missing.
#[track_caller]
pub fn field(line: &str, key: &str) -> u64 {
    fields(line)
        .into_iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("{key} in {line}"))
        .1
        .parse()
        .unwrap_or_else(|e| panic!("{key} in {line}: {e}"))
}
