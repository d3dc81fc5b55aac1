//! `--syslog`: the start, the stop and errors arrive as syslog records (facility daemon,
//! ident `echoloop[pid]`) on a unix datagram socket the test creates and names with
//! `--syslog-socket`, as a syslog daemon's `/dev/log` would receive them.

use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use echoloop_testkit::child::{ChildProcess, Signal, WAIT};

const BIN: &str = env!("CARGO_BIN_EXE_echoloop");

/// A syslog socket in a fresh temporary directory, removed on drop.
struct FakeSyslog {
    socket: UnixDatagram,
    dir: PathBuf,
}

impl FakeSyslog {
    fn new(name: &str) -> FakeSyslog {
        let dir = std::env::temp_dir().join(format!("echoloop-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let socket = UnixDatagram::bind(dir.join("log")).expect("bind syslog socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        FakeSyslog { socket, dir }
    }

    fn path(&self) -> String {
        self.dir.join("log").display().to_string()
    }

    /// Records until one contains `needle` (bounded by WAIT); returns them all.
    #[track_caller]
    fn until(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut records = Vec::new();
        let mut buffer = [0u8; 8192];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buffer) {
                let record = String::from_utf8_lossy(&buffer[..n]).into_owned();
                let found = record.contains(needle);
                records.push(record);
                if found {
                    return records;
                }
            }
        }
        panic!("no record with {needle:?} in time; got {records:#?}");
    }
}

impl Drop for FakeSyslog {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Records are RFC 3164: `<PRI>` (daemon = 3, so 3*8 + severity), then `echoloop[PID]:`.
#[track_caller]
fn assert_record(record: &str, severity: u8, pid: u32) {
    let pri = format!("<{}>", 3 * 8 + severity);
    assert!(
        record.starts_with(&pri),
        "priority {pri} expected: {record}"
    );
    assert!(record.contains(&format!("echoloop[{pid}]: ")), "{record}");
}

#[test]
fn start_and_stop_records_arrive_with_daemon_facility_and_pid() {
    let syslog = FakeSyslog::new("syslog-start-stop");
    let path = syslog.path();
    let mut server =
        ChildProcess::spawn(Command::new(BIN).args(["--port", "0", "--syslog-socket", &path]));
    let pid = server.pid();
    let listening = server.next_line();
    let started = syslog.until("started");
    let record = started.last().unwrap();
    assert_record(record, 6, pid);
    assert!(record.contains(&listening), "{record}");
    server.signal(Signal::TERM);
    assert_eq!(server.wait_exit(), 0);
    assert!(
        server.stderr().is_empty(),
        "records go to syslog, not stderr"
    );
    let stopped = syslog.until("stopped");
    assert_record(stopped.last().unwrap(), 6, pid);
    assert!(stopped.last().unwrap().contains("summary uptime_s="));
}

#[test]
fn a_failure_to_bind_is_an_error_record_and_still_one_line_on_stderr() {
    let syslog = FakeSyslog::new("syslog-error");
    let taken = TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let port = taken.local_addr().unwrap().port().to_string();
    let output = Command::new(BIN)
        .args(["--port", &port, "--syslog-socket", &syslog.path()])
        .output()
        .expect("run echoloop");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("echoloop: cannot bind"), "{stderr}");
    let records = syslog.until("cannot bind");
    assert_record(records.last().unwrap(), 3, output_pid(&records));
}

/// The pid inside the last record's `echoloop[PID]` (the child has exited; it is not
/// known otherwise).
fn output_pid(records: &[String]) -> u32 {
    let record = records.last().expect("a record");
    let start = record.find("echoloop[").expect("ident") + "echoloop[".len();
    let end = start + record[start..].find(']').expect("]");
    record[start..end].parse().expect("a pid")
}

#[test]
fn a_missing_syslog_socket_is_a_usage_error() {
    let output = Command::new(BIN)
        .args([
            "--port",
            "0",
            "--syslog-socket",
            "/nonexistent/echoloop-log",
        ])
        .output()
        .expect("run echoloop");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("echoloop: cannot reach syslog at"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
