//! The tutorials' own UDP time client (`tests/fixtures/tutorial_clientudp.py`, from the
//! Python socket tutorials, adapted only for host, port and Python 3) against `echoloop --listen
//! unixtime=...`: it must print today's date, as `time.ctime` does. Skipped (with a note)
//! when `python3` is not installed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use echoloop::service::clock::Civil;
use echoloop_testkit::child::{ChildProcess, WAIT};

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

const CLIENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/tutorial_clientudp.py"
);

fn python3_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[test]
fn the_tutorials_udp_time_client_prints_the_date() {
    if !python3_available() {
        eprintln!("SKIP: python3 is not installed");
        return;
    }
    let args = ["--port", "off", "--listen", "unixtime=127.0.0.1:0/udp"];
    let _server =
        ChildProcess::spawn_server(Command::new(env!("CARGO_BIN_EXE_echoloop")).args(args));
    let addr = _server.listening().socket("unixtime/udp", 0);
    let before = unix_now();
    let mut client = Command::new("python3")
        .args([CLIENT, &addr.ip().to_string(), &addr.port().to_string()])
        .env("TZ", "UTC") // time.ctime prints local time; the expected date is in UTC
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    // The client has no timeout of its own (as in the tutorial): bound it here.
    let deadline = Instant::now() + WAIT;
    while client.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = client.kill();
            panic!("the tutorial client got no reply in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = client.wait_with_output().expect("output");
    let after = unix_now();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"waiting for a reply ......"));
    let printed = lines.get(1).expect("a date line");
    let expected: Vec<String> = (before - 1..=after + 1)
        .map(|secs| Civil::from_unix(secs).ctime())
        .collect();
    assert!(
        expected.iter().any(|date| date == printed),
        "printed {printed:?}, expected one of {expected:?}"
    );
}
