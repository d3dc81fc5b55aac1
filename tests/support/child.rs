//! The `echoloop` binary as a child process: its TCP address from the `listening` line, its
//! stdout by lines, SIGTERM, a bounded wait for its exit, and its CPU and memory from
//! `/proc`. Killed and reaped on drop, so a test that fails midway leaves nothing running.
//! Its log (stderr) goes to the test's own stderr, shown when a test fails.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The debug or release binary, whichever profile the tests are built with.
pub const BIN: &str = env!("CARGO_BIN_EXE_echoloop");
/// The longest any single wait on the child may take.
pub const WAIT: Duration = Duration::from_secs(30);

/// A running `echoloop --port 0 --no-udp ...`.
pub struct Echoloop {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    /// The TCP address it serves.
    pub tcp: SocketAddr,
}

impl Drop for Echoloop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Echoloop {
    /// Starts `echoloop --port 0 --no-udp --log-level warn ARGS` and reads its address.
    #[track_caller]
    pub fn start(args: &[&str]) -> Echoloop {
        let mut child = Command::new(BIN)
            .args(["--port", "0", "--no-udp", "--log-level", "warn"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start echoloop");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let first = lines.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!("{args:?}: no `listening` line (did it exit?)");
        });
        let tcp = first
            .strip_prefix("listening tcp=")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("{args:?}: not a listening line: {first:?}"));
        Echoloop { child, lines, tcp }
    }

    /// The next line on stdout; fails the test if none comes within [`WAIT`].
    #[track_caller]
    pub fn next_line(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("a line on stdout in time (did it exit?)")
    }

    /// Sends SIGTERM: stop accepting, drain, print the summary, exit.
    pub fn sigterm(&self) {
        // SAFETY: kill(2) on a child we spawned and have not reaped; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM)");
    }

    /// Waits (at most [`WAIT`]) for the exit; `None` if a signal killed it.
    #[track_caller]
    pub fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "echoloop did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the `summary` line; fails the test unless the exit status is 0.
    #[track_caller]
    pub fn stop(mut self) -> String {
        self.sigterm();
        let summary = self.next_line();
        assert_eq!(self.exit_code(), Some(0), "exit status after SIGTERM");
        assert!(summary.starts_with("summary "), "{summary}");
        summary
    }

    /// CPU time (user + system) the server has used so far, from `/proc/PID/stat`.
    #[track_caller]
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("read /proc/PID/stat");
        // utime and stime are the 12th and 13th fields after the command name, which is in
        // parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')').expect("comm field") + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf only reads a configuration value; no memory of ours is involved.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        ticks as f64 / per_second as f64
    }

    /// A `kB` figure from `/proc/PID/status`, e.g. `VmRSS` or `VmHWM` (the peak RSS).
    #[track_caller]
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().strip_suffix(" kB")?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
    }
}
