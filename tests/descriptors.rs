//! Descriptors: the `echoloop` binary under open-file limits a user meets (64, 256, 1024 and
//! this machine's hard limit), raising the soft limit at start, zero-copy pipes that come out
//! of spare descriptors only and give way to connections, and what a turned-away client sees
//! (EOF, even if it had sent data). Loopback and port 0 only; every child is stopped.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use echoloop::descriptors::{max_connections_for, open_file_limit, reserve, RESERVED_FDS};
use echoloop::Config;
use echoloop_testkit::child::{ChildProcess, Signal};
use echoloop_testkit::{connect, connect_nodelay, pattern, ping, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_echoloop");

/// `echoloop ARGS` under soft limit `soft` and hard limit `hard`.
fn with_limits(soft: u64, hard: u64, args: &[&str]) -> Command {
    // Soft first: a hard limit below the current soft one is refused.
    let script = format!("ulimit -Sn {soft} && ulimit -Hn {hard} && exec \"$0\" \"$@\"");
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(script)
        .arg(BIN)
        .args(["--port", "0", "--log-level", "info"])
        .args(args);
    command
}

/// Starts the server, stops it with SIGTERM, and returns its log.
fn start_up_log(mut command: Command) -> String {
    let server = ChildProcess::spawn_server(&mut command);
    server.listening();
    let mut server = server;
    server.signal(Signal::TERM);
    assert_eq!(server.wait_exit(), 0);
    server.stderr()
}

/// The hard open-file limit of this test process (20,000 on the development machine).
fn hard_limit() -> u64 {
    open_file_limit().expect("getrlimit on Linux").hard
}

/// At every limit the start-up line gives connections the limit minus the reserve, whatever
/// the zero-copy setting, and never warns that the limit cannot back them.
#[test]
fn start_up_line_is_coherent_at_every_limit() {
    for files in [64, 256, 1024, hard_limit()] {
        let log = start_up_log(with_limits(files, files, &[]));
        let max = max_connections_for(files, 1);
        assert_eq!(max as u64, files - RESERVED_FDS as u64);
        let line = format!(
            "serving up to {max} connections (open-file limit {files}, {RESERVED_FDS} \
             reserved; up to 256 zero-copy pipes from spare descriptors)"
        );
        assert!(
            log.contains(&line),
            "limit {files}: want {line:?} in\n{log}"
        );
        assert!(!log.contains("exceeds"), "limit {files}:\n{log}");
        assert!(log.contains("nothing to raise"), "limit {files}:\n{log}");
        let off = start_up_log(with_limits(files, files, &["--zero-copy-conns", "0"]));
        assert!(
            off.contains(&format!("serving up to {max} connections")),
            "zero copy off changes nothing at {files}:\n{off}"
        );
    }
}

/// A soft limit below the hard one is raised at start (and the connection limit follows),
/// unless `--no-raise-nofile` says not to.
#[test]
fn soft_limit_is_raised_to_the_hard_limit_unless_told_not_to() {
    let log = start_up_log(with_limits(64, 1024, &[]));
    assert!(
        log.contains("open-file limit raised from 64 to 1024"),
        "{log}"
    );
    assert!(log.contains("serving up to 992 connections"), "{log}");
    let kept = start_up_log(with_limits(64, 1024, &["--no-raise-nofile"]));
    assert!(kept.contains("left as it is"), "{kept}");
    assert!(kept.contains("serving up to 32 connections"), "{kept}");
    // Two more reactors hold eight more descriptors.
    let three = start_up_log(with_limits(64, 1024, &["--threads", "3"]));
    assert!(three.contains("serving up to 984 connections"), "{three}");
}

/// Under limit 64 (32 connections): a bulk client gets a pipe while descriptors are spare;
/// when connections need them, the pipe is given back and all 32 are served; the 33rd to
/// 40th, which had sent data, read EOF (not a reset).
#[test]
fn pipes_give_way_to_connections_and_turned_away_clients_read_eof() {
    let mut command = with_limits(64, 64, &["--no-udp"]);
    let server = ChildProcess::spawn_server(&mut command);
    let addr = server.listening().tcp();
    let mut served: Vec<TcpStream> = Vec::new();
    let mut bulk = connect(addr);
    ping(&mut bulk, &pattern(1 << 20)); // bulk: offered a pipe
    served.push(bulk);
    for i in 1..32 {
        let mut client = connect_nodelay(addr);
        ping(&mut client, &pattern(100 + i));
        served.push(client);
    }
    // Stopped, the server accepts nothing: the kernel completes the handshakes and queues
    // the data, so the server meets each of these with input it will never read (closing
    // over it would send RST).
    server.signal(Signal::STOP);
    let mut turned_away: Vec<TcpStream> = (32..40)
        .map(|i| {
            let mut client = connect_nodelay(addr);
            client.write_all(&pattern(1000 + i)).expect("write");
            client
        })
        .collect();
    thread::sleep(Duration::from_millis(100));
    server.signal(Signal::CONT);
    turned_away.iter_mut().for_each(expect_eof);
    for (i, client) in served.iter_mut().enumerate() {
        ping(client, &pattern(200 + i));
    }
    drop(served);
    let summary = server.stop();
    assert_eq!(summary.get("conn_accepted"), 32);
    assert_eq!(summary.get("rejected_max_connections"), 8);
    assert_eq!(
        summary.get("zero_copy_conns"),
        1,
        "the bulk client had a pipe"
    );
    assert_eq!(summary.get("zero_copy_reclaimed"), 1, "and gave it back");
    assert_eq!(summary.get("accept_fd_exhausted"), 0);
}

/// Reads until EOF; a reset fails the test.
#[track_caller]
fn expect_eof(stream: &mut TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => panic!("a turned-away client got {n} bytes"),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("a turned-away client saw {e} instead of EOF"),
        }
    }
    panic!("no EOF within 5 s");
}

/// A bulk connection that goes idle gives its pipe back, and gets one again when bulk
/// traffic resumes.
#[test]
fn an_idle_connection_gives_its_pipe_back() {
    let server = TestServer::with_config(Config::default());
    let mut client = connect(server.tcp());
    ping(&mut client, &pattern(1 << 20));
    thread::sleep(Duration::from_millis(2500)); // idle for over a second, then a sweep
    ping(&mut client, &pattern(1 << 20));
    drop(client);
    let stats = server.stop();
    assert_eq!(stats.zero_copy_reclaimed, 1, "{stats}");
    assert_eq!(
        stats.zero_copy_conns, 2,
        "a pipe again after idling: {stats}"
    );
    assert_eq!(stats.tcp_bytes_out, 2 << 20, "{stats}");
}

/// More reactors than the limit can hold with a connection beside them: one line saying so
/// and a non-zero exit, before anything is bound (not a cascade of EMFILE from the binds).
#[test]
fn too_many_reactors_for_the_limit_is_one_clear_error() {
    let output = with_limits(256, 256, &["--threads", "100", "--no-raise-nofile"])
        .output()
        .expect("run echoloop");
    assert_ne!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "100 reactors keep {} descriptors for themselves, leaving none of the open-file \
             limit 256 for connections",
            reserve(100)
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("cannot bind"), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).is_empty());
    // The most that fit start, and serve.
    let most = (1..100)
        .take_while(|&n| (reserve(n) as u64) < 256)
        .last()
        .unwrap();
    let most = most.to_string();
    let log = start_up_log(with_limits(
        256,
        256,
        &["--threads", &most, "--no-raise-nofile"],
    ));
    assert!(log.contains("serving up to"), "{log}");
}
