//! The one child-process harness: a binary under test (`echoloop`, the generator, the tokio
//! peer) started as a child, with its stdout as a stream of lines, its stderr kept as its log
//! (drained by a thread, so a full pipe never blocks it), signals, and a bounded wait for its
//! exit. Killed and reaped on drop, so a test that fails midway leaves no process behind.
//!
//! Also the two stdout lines every echoloop-shaped server prints: `listening tcp=... udp=...`
//! ([`Listening`]) and `summary key=value ...` ([`Summary`]). A server on port 0 is started
//! with [`ChildProcess::spawn_server`], which starts it again if a port was taken (see there).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustix::process::Pid;

use crate::procfs::{self, Task};
/// Signals for [`ChildProcess::signal`] (`Signal::TERM`, `Signal::INT`, ...).
pub use rustix::process::Signal;

/// The longest any single wait on a child may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// How often [`ChildProcess::spawn_server`] starts a server that exits because a port was
/// taken, as [`crate::server::with_port_retries`] binds an in-process one.
const PORT_ATTEMPTS: u32 = 20;

/// A running child process: stdout by lines, stderr kept (and streamed, for tests that wait
/// for a log line while the child runs).
pub struct ChildProcess {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    log: Option<JoinHandle<String>>,
    log_lines: mpsc::Receiver<String>,
    /// The `listening` line, once [`ChildProcess::spawn_server`] has read it.
    listening: Option<Listening>,
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `echoloop` build to measure: `default_bin` (the test's own) unless the environment
/// variable `env` names another, so a test can compare before and after.
pub fn bin_from_env(default_bin: &str, env: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default_bin.to_string())
}

impl ChildProcess {
    /// Starts `command` with stdin closed and stdout and stderr captured.
    #[track_caller]
    pub fn spawn(command: &mut Command) -> ChildProcess {
        ChildProcess::start(command, usize::MAX)
    }

    /// Starts a server that binds port 0 (every port it binds) and prints a `listening`
    /// line first, and reads that line ([`ChildProcess::listening`] returns it).
    ///
    /// A server that exits before that line saying "address already in use" is started
    /// again, up to 20 times, 50 ms apart and growing (about 10 s in all): with port 0 the
    /// kernel picks the port, and it fails only when it has none free for the moment (a
    /// loaded machine with thousands of connections in `TIME_WAIT` from other tests:
    /// `echoloop --port 0` then exits 2, "cannot bind TCP 127.0.0.1:0: address already in
    /// use"), the machine's state and not the server's behaviour. (A UDP port taken beside a
    /// free TCP one is retried by `echoloop` itself, with a fresh pair, 16 times.) Any other
    /// early exit fails the test, showing the child's log.
    #[track_caller]
    pub fn spawn_server(command: &mut Command) -> ChildProcess {
        ChildProcess::start_server(command, usize::MAX)
    }

    /// [`ChildProcess::spawn_server`], with stdout closed after the `listening` line, as a
    /// script does with `| head -1`: later writes by the child fail with EPIPE.
    #[track_caller]
    pub fn spawn_server_reading_one_line(command: &mut Command) -> ChildProcess {
        ChildProcess::start_server(command, 1)
    }

    /// A TCP-only `echoloop` (the build at `bin`) on port 0 with warnings only, for
    /// measuring the server from outside.
    #[track_caller]
    pub fn spawn_tcp_echo(bin: &str) -> ChildProcess {
        ChildProcess::spawn_server(Command::new(bin).args([
            "--port",
            "0",
            "--no-udp",
            "--log-level",
            "warn",
        ]))
    }

    /// Like [`ChildProcess::spawn`], but stdout is closed after its first line, as a script
    /// does with `| head -1`: later writes by the child fail with EPIPE.
    #[track_caller]
    pub fn spawn_reading_one_line(command: &mut Command) -> ChildProcess {
        ChildProcess::start(command, 1)
    }

    /// Starts a server and reads its `listening` line, again while it exits because a port
    /// was taken (see [`ChildProcess::spawn_server`]).
    #[track_caller]
    fn start_server(command: &mut Command, stdout_lines: usize) -> ChildProcess {
        let mut attempt = 1;
        loop {
            let mut child = ChildProcess::start(command, stdout_lines);
            let line = match child.lines.recv_timeout(WAIT) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{command:?}: no line on stdout within {WAIT:?}")
                }
                // Stdout closed before a line: the child is exiting.
                Err(RecvTimeoutError::Disconnected) => {
                    let code = child.wait_exit();
                    let log = child.stderr();
                    let port_taken = log.to_lowercase().contains("address already in use");
                    if port_taken && attempt < PORT_ATTEMPTS {
                        thread::sleep(Duration::from_millis(50) * attempt);
                        attempt += 1;
                        continue;
                    }
                    panic!("{command:?} exited {code} before its listening line; log:\n{log}");
                }
            };
            child.listening = Some(Listening::parse(&line));
            return child;
        }
    }

    /// Starts the child; stdout's read end is dropped after `stdout_lines` lines.
    #[track_caller]
    fn start(command: &mut Command, stdout_lines: usize) -> ChildProcess {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = mpsc::channel();
        thread::spawn(move || {
            let lines = BufReader::new(stdout).lines().map_while(Result::ok);
            for line in lines.take(stdout_lines) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = child.stderr.take().expect("piped stderr");
        let (send_log, log_lines) = mpsc::channel();
        let log = thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
                let _ = send_log.send(line); // nobody waiting on log lines: fine
            }
            text
        });
        ChildProcess {
            child,
            lines,
            log: Some(log),
            log_lines,
            listening: None,
        }
    }

    /// The next stderr line containing `needle` (earlier lines are skipped); fails the test if
    /// none comes within [`WAIT`].
    #[track_caller]
    pub fn log_line_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log_lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with {needle:?} in time: {e}"),
            }
        }
    }

    /// A command that runs `program ARGS` with the open-file limit lowered to `files` (soft
    /// and hard). The shell `exec`s the program, so the child's pid is the program's.
    pub fn with_file_limit(files: u32, program: &str, args: &[&str]) -> Command {
        let script = format!("ulimit -n {files} && exec \"$0\" \"$@\"");
        let mut command = Command::new("sh");
        command.arg("-c").arg(script).arg(program).args(args);
        command
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line on stdout; fails the test if none comes within [`WAIT`].
    #[track_caller]
    pub fn next_line(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("a line on stdout in time")
    }

    /// Sends `signal` (e.g. `Signal::TERM`) to the child.
    #[track_caller]
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.pid() as i32).expect("a child's pid is positive");
        rustix::process::kill_process(pid, signal).expect("kill(2) the child");
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait for the child").is_none()
    }

    /// Waits (at most [`WAIT`]) for the child to exit and returns its exit code; fails the
    /// test if it was killed by a signal or is still running.
    #[track_caller]
    pub fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                return status.code().expect("exited, not killed by a signal");
            }
            assert!(Instant::now() < deadline, "the child did not exit in time");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the child wrote to stderr. Call it after the child exited: it waits for
    /// the end of the stream.
    #[track_caller]
    pub fn stderr(&mut self) -> String {
        self.log
            .take()
            .map(|log| log.join().expect("stderr reader"))
            .unwrap_or_default()
    }

    /// CPU time (user + system) the child has used so far, from `/proc/PID/stat`.
    #[track_caller]
    pub fn cpu_time(&self) -> Duration {
        procfs::cpu_time(Task::Process(self.pid())).expect("read the child's /proc/PID/stat")
    }

    /// A `kB` figure of the child's from `/proc/PID/status`, e.g. `VmRSS` or `VmHWM` (the
    /// peak RSS).
    #[track_caller]
    pub fn memory_kib(&self, field: &str) -> u64 {
        procfs::memory_kib(self.pid(), field).expect("read the child's /proc/PID/status")
    }

    /// The addresses of the `listening` line: the one [`ChildProcess::spawn_server`] read,
    /// or else the next line on stdout (the first, for a child that just started).
    #[track_caller]
    pub fn listening(&self) -> Listening {
        match &self.listening {
            Some(listening) => listening.clone(),
            None => Listening::parse(&self.next_line()),
        }
    }

    /// SIGTERM, then the `summary` line and exit status 0 (the log is shown otherwise).
    #[track_caller]
    pub fn stop(mut self) -> Summary {
        self.signal(Signal::TERM);
        let line = self
            .lines
            .recv_timeout(WAIT)
            .expect("a `summary` line after SIGTERM");
        let code = self.wait_exit();
        assert_eq!(code, 0, "exit status; log:\n{}", self.stderr());
        Summary::parse(&line)
    }
}

/// The addresses in `listening tcp=IP:PORT udp=IP:PORT [metrics=IP:PORT]` (`off` for a side
/// turned off; `metrics=` only with `--metrics`), and, when a server has more than one echo
/// listener, one `SERVICE/PROTO=IP:PORT` field per bound socket (`time/udp=127.0.0.1:37`).
#[derive(Debug, Clone)]
pub struct Listening {
    pub tcp: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    /// `("time/udp", address)` for each listener field, in the order printed.
    pub sockets: Vec<(String, SocketAddr)>,
}

impl Listening {
    /// Parses the line; fails the test on any other shape.
    #[track_caller]
    pub fn parse(line: &str) -> Listening {
        let fields = line
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("not a listening line: {line:?}"));
        let address = |value: &str| match value {
            "off" => None,
            addr => Some(
                addr.parse()
                    .unwrap_or_else(|_| panic!("bad address {addr:?} in {line:?}")),
            ),
        };
        let (mut tcp, mut udp, mut metrics, mut sockets) = (None, None, None, Vec::new());
        for field in fields.split(' ') {
            match field.split_once('=') {
                Some(("tcp", value)) => tcp = address(value),
                Some(("udp", value)) => udp = address(value),
                Some(("metrics", value)) => metrics = address(value),
                Some((key, value)) if key.ends_with("/tcp") || key.ends_with("/udp") => {
                    let addr = address(value).unwrap_or_else(|| panic!("{field:?} is off"));
                    sockets.push((key.to_string(), addr));
                }
                _ => panic!("unexpected field {field:?} in {line:?}"),
            }
        }
        Listening {
            tcp,
            udp,
            metrics,
            sockets,
        }
    }

    /// The `n`th (from 0) socket listed as `service_proto`, e.g. `("time/udp", 0)`; fails
    /// the test if there is none.
    #[track_caller]
    pub fn socket(&self, service_proto: &str, n: usize) -> SocketAddr {
        self.sockets
            .iter()
            .filter(|(key, _)| key == service_proto)
            .nth(n)
            .unwrap_or_else(|| panic!("no {service_proto} #{n} in {self:?}"))
            .1
    }

    /// The TCP address; fails the test if TCP is off.
    #[track_caller]
    pub fn tcp(&self) -> SocketAddr {
        self.tcp.expect("TCP is on")
    }

    /// The UDP address; fails the test if UDP is off.
    #[track_caller]
    pub fn udp(&self) -> SocketAddr {
        self.udp.expect("UDP is on")
    }
}

/// The `summary key=value ...` line a server prints at exit (or the `key=value` part of a
/// `stats` log line, via [`Summary::from_pairs`]).
pub struct Summary(HashMap<String, String>);

impl Summary {
    /// Parses the line; fails the test on any other shape.
    #[track_caller]
    pub fn parse(line: &str) -> Summary {
        let rest = line
            .strip_prefix("summary ")
            .unwrap_or_else(|| panic!("not a summary line: {line:?}"));
        Summary::from_pairs(rest)
    }

    /// The `key=value` words of `text`; other words are ignored.
    pub fn from_pairs(text: &str) -> Summary {
        let pairs = text.split(' ').filter_map(|kv| kv.split_once('='));
        Summary(pairs.map(|(k, v)| (k.into(), v.into())).collect())
    }

    /// An integer counter; fails the test if it is missing.
    #[track_caller]
    pub fn get(&self, key: &str) -> u64 {
        let value = self
            .0
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in summary"));
        value.parse().expect("an integer counter")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines_name_both_sides() {
        let both = Listening::parse("listening tcp=127.0.0.1:7007 udp=[::1]:7008");
        assert_eq!(both.tcp().port(), 7007);
        assert_eq!(both.udp().to_string(), "[::1]:7008");
        let tcp_only = Listening::parse("listening tcp=127.0.0.1:1 udp=off");
        assert!(tcp_only.udp.is_none());
        assert!(tcp_only.sockets.is_empty());
    }

    #[test]
    fn listener_fields_name_each_socket() {
        let many = Listening::parse(
            "listening tcp=off udp=off time/udp=127.0.0.1:37 time/udp=[::1]:38 \
             chargen/tcp=127.0.0.1:19",
        );
        assert_eq!(many.socket("time/udp", 1).to_string(), "[::1]:38");
        assert_eq!(many.socket("chargen/tcp", 0).port(), 19);
        assert!(many.tcp.is_none());
    }

    #[test]
    fn summaries_read_counters() {
        let summary = Summary::parse("summary uptime_s=1.5 conn_accepted=3 closed_peer=2");
        assert_eq!(summary.get("conn_accepted"), 3);
        assert_eq!(summary.get("closed_peer"), 2);
    }

    /// A server that exits because its port was taken is started again, and its
    /// `listening` line read; one that exits for another reason fails the test with its log.
    #[test]
    fn a_server_whose_port_was_taken_is_started_again() {
        let marker =
            std::env::temp_dir().join(format!("echoloop-port-taken-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        // Fails twice as `echoloop --port 0` does when no port is free, then serves.
        let script = r#"n=$(cat "$0" 2>/dev/null || echo 0); echo $((n + 1)) > "$0"
            if [ "$n" -lt 2 ]; then
                echo "echoloop: cannot bind TCP 127.0.0.1:0: address already in use" >&2
                exit 2
            fi
            echo "listening tcp=127.0.0.1:7 udp=off"; exec sleep 30"#;
        let server =
            ChildProcess::spawn_server(Command::new("sh").arg("-c").arg(script).arg(&marker));
        assert_eq!(server.listening().tcp().port(), 7);
        assert_eq!(
            std::fs::read_to_string(&marker).unwrap().trim(),
            "3",
            "started three times"
        );
        let _ = std::fs::remove_file(&marker);
        drop(server);

        let other = std::panic::catch_unwind(|| {
            ChildProcess::spawn_server(
                Command::new("sh")
                    .arg("-c")
                    .arg("echo 'bad flag' >&2; exit 2"),
            )
        });
        let message = other
            .err()
            .and_then(|e| e.downcast::<String>().ok())
            .expect("a failure");
        assert!(
            message.contains("exited 2 before its listening line"),
            "{message}"
        );
        assert!(message.contains("bad flag"), "{message}");
    }

    /// A child's stdout lines, stderr and exit code all come through; a signal ends it.
    #[test]
    fn a_child_is_observed_and_stopped() {
        let mut child = ChildProcess::spawn(
            Command::new("sh")
                .arg("-c")
                .arg("echo one; echo two >&2; exit 3"),
        );
        assert_eq!(child.next_line(), "one");
        assert_eq!(child.wait_exit(), 3);
        assert_eq!(child.stderr(), "two\n");
        let mut sleeper = ChildProcess::spawn(Command::new("sleep").arg("30"));
        assert!(sleeper.is_running());
        sleeper.signal(Signal::TERM);
        let deadline = Instant::now() + WAIT;
        while sleeper.is_running() {
            assert!(Instant::now() < deadline, "sleep ignored SIGTERM");
            thread::sleep(Duration::from_millis(10));
        }
    }
}
