//! The `ping` and `time` tools, run as a user runs them, against tiny in-test servers on
//! loopback: a clean echo gives ping lines, a summary and exit 0; a corrupted or missing
//! echo gives exit 1; `time` prints the date as the tutorial's client does, `--check`
//! accepts a right clock and refuses a wrong one, and a reply that is not 4 bytes is the
//! tutorial's "reply error".

mod support_loadgen;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support_loadgen::{closed_port, Fault, TcpEcho, UdpEcho};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_echoloop-bench"))
        .args(args)
        .output()
        .expect("run echoloop-bench")
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn ping_tcp_prints_a_line_per_echo_and_a_summary() {
    let server = TcpEcho::start(Fault::None);
    let target = server.addr.to_string();
    let output = bench(&["ping", "--target", &target, "-n", "3", "-i", "50ms"]);
    let stdout = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.starts_with(&format!("PING {target} (tcp): 64 bytes")),
        "{stdout}"
    );
    for seq in 0..3 {
        assert!(stdout.contains(&format!("64 bytes from {target}: seq={seq} time=")));
    }
    assert!(
        stdout.contains("3 sent, 3 echoed, 0 wrong, 0% loss"),
        "{stdout}"
    );
    assert!(stdout.contains("rtt min/avg/max/mdev = "), "{stdout}");
}

#[test]
fn ping_fails_on_a_corrupted_echo_and_on_lost_datagrams() {
    let corrupt = TcpEcho::start(Fault::FlipByte { at: 70 });
    let output = bench(&[
        "ping",
        "--target",
        &corrupt.addr.to_string(),
        "-n",
        "3",
        "-i",
        "10ms",
    ]);
    let stdout = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("seq=1: WRONG echo, 1 byte(s) differ"),
        "{stdout}"
    );

    let lossy = UdpEcho::start(2); // drops every second datagram
    let target = lossy.addr.to_string();
    let args = [
        "ping", "--udp", "--target", &target, "-n", "4", "-i", "10ms", "-W", "200ms",
    ];
    let output = bench(&args);
    let stdout = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("4 sent, 2 echoed, 0 wrong, 50% loss"),
        "{stdout}"
    );
    assert!(stdout.contains("no echo within 200 ms"), "{stdout}");

    let refused = bench(&["ping", "--target", &closed_port().to_string(), "-n", "1"]);
    assert_eq!(refused.status.code(), Some(1));
}

/// A UDP server that answers every datagram with `reply(now)`; stops on drop.
struct TimeServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl TimeServer {
    fn start(reply: fn(u64) -> Vec<u8>) -> TimeServer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let running = stop.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 64];
            for _ in 0..400 {
                if running.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok((_, from)) = socket.recv_from(&mut buffer) {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    let _ = socket.send_to(&reply(now), from);
                }
            }
        });
        TimeServer { addr, stop }
    }
}

impl Drop for TimeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn time_prints_the_date_and_check_compares_it_with_the_clock() {
    let unix = TimeServer::start(|now| (now as u32).to_be_bytes().to_vec());
    let output = bench(&["time", "--target", &unix.addr.to_string(), "--check"]);
    let stdout = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let date = stdout.lines().next().unwrap();
    // ctime's layout: "Thu Nov 26 02:12:21 2026"
    assert_eq!(date.len(), 24, "{date:?}");
    assert!(
        stdout.contains("offset +0 s")
            || stdout.contains("offset -1 s")
            || stdout.contains("offset +1 s"),
        "{stdout}"
    );

    let rfc868 = TimeServer::start(|now| ((now + 2_208_988_800) as u32).to_be_bytes().to_vec());
    let args = [
        "time",
        "--service",
        "time",
        "--target",
        &rfc868.addr.to_string(),
        "--check",
    ];
    assert_eq!(bench(&args).status.code(), Some(0));

    let slow = TimeServer::start(|now| ((now - 100) as u32).to_be_bytes().to_vec());
    let output = bench(&["time", "--target", &slow.addr.to_string(), "--check"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("offset -100 s"));
}

#[test]
fn a_reply_that_is_not_four_bytes_is_the_tutorials_reply_error() {
    let chatty = TimeServer::start(|_| b"hello".to_vec());
    let output = bench(&["time", "--target", &chatty.addr.to_string()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("reply error 5"), "{stderr}");
}
