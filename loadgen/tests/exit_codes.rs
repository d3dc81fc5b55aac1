//! Exit codes a script can trust, and the command-line conventions: corruption is 1, UDP
//! loss over `--max-loss` is 3, failed connects over `--max-connect-errors` are 4, a missing
//! argument is named, `--interval` prints lines when stdout is a pipe, `--histogram` writes
//! the percentile table.

mod support_loadgen;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use support_loadgen::{bench, Fault, TcpEcho, UdpEcho};

#[test]
fn corruption_exits_1() {
    let server = TcpEcho::start(Fault::FlipByte { at: 100 });
    let out = bench(&[
        "pingpong",
        "-d",
        "300ms",
        "-c",
        "2",
        "--target",
        &server.addr.to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("verification failed"));
}

/// One datagram in ten dropped: exit 3 on loopback by default, 0 with a tolerant limit.
///
/// The loss must not depend on how fast the machine is: 120 datagrams at a fixed rate (the
/// generator sends every one due even when it runs late), of which the server drops the first
/// 6 from each of the 2 sockets, early enough that their loss timeout ends within the run.
/// (Dropping every 10th datagram of a 300 ms ping-pong run made the figure depend on how many
/// round trips the run managed: under load a run sent 3 datagrams and lost none, and the
/// default limit then exited 0.) A late reply still counts as lost if it is not back within
/// the 250 ms loss timeout; it would take 12 of them to cross the 20% limit.
#[test]
fn udp_loss_exits_3_unless_allowed() {
    let common = [
        "udp",
        "-d",
        "300ms",
        "-c",
        "2",
        "--rate",
        "400",
        "--loss-timeout",
        "250ms",
        "--drain-timeout",
        "1s",
    ];
    let server = UdpEcho::dropping_first(6);
    let target = server.addr.to_string();
    let out = bench(&[&common[..], &["--target", &target]].concat());
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-loss"));
    let server = UdpEcho::dropping_first(6);
    let target = server.addr.to_string();
    let out = bench(
        &[
            &common[..],
            &["--target", &target, "--max-loss", "20", "--json"],
        ]
        .concat(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("loss {}% of {}", v["loss_percent"], v["udp"]);
    assert_eq!(v["udp"]["sent"], 120, "{}", v["udp"]);
    // Every datagram the server dropped is lost (some may have been dropped after the run's
    // end, as the server had not read them yet; those were lost all the same).
    let lost = v["udp"]["lost"].as_u64().unwrap();
    assert!(
        lost >= server.dropped.load(Ordering::Relaxed),
        "{}",
        v["udp"]
    );
    assert!(v["loss_percent"].as_f64().unwrap() >= 10.0, "{v}");
    assert_eq!(v["sockets"], 2);
    assert_eq!(v["size"], 64, "numbers as numbers");
    assert!(v["run"]["started_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn missing_argument_is_named() {
    let out = bench(&["rate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--rate"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn intervals_print_to_a_pipe_and_histogram_file_is_written() {
    let server = TcpEcho::start(Fault::None);
    let file = std::env::temp_dir().join(format!("echoloop-hgrm-{}.hgrm", std::process::id()));
    let out = bench(&[
        "pingpong",
        "-d",
        "1s",
        "-t",
        "2",
        "-c",
        "2",
        "--interval",
        "250ms",
        "--histogram",
        file.to_str().unwrap(),
        "--target",
        &server.addr.to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = stdout
        .lines()
        .filter(|l| l.contains("req/s") && l.contains("p99"))
        .count();
    assert!((4..=6).contains(&lines), "{stdout}");
    let table = std::fs::read_to_string(&file).unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        table.contains("Percentile") && table.contains("Total count"),
        "{table}"
    );
}

/// A server that serves its first two connections and then closes its listener: with
/// connects spread 250 ms apart, the last two of four are refused. Exit 4 by default, and 0
/// when `--max-connect-errors` tolerates them (the two served connections echo cleanly).
#[test]
fn failed_connects_exit_4_unless_tolerated() {
    for (tolerated, expected) in [("0", 4), ("2", 0)] {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let serving = thread::spawn(move || {
            let mut echoers = Vec::new();
            for _ in 0..2 {
                let (mut sock, _) = listener.accept().expect("accept");
                echoers.push(thread::spawn(move || {
                    sock.set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = sock.read(&mut buf) {
                        if sock.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }));
            }
            drop(listener); // every later connect is refused
            echoers
        });
        let out = bench(&[
            "pingpong",
            "-c",
            "4",
            "--connect-rate",
            "4",
            "-d",
            "1500ms",
            "--max-connect-errors",
            tolerated,
            "--json",
            "--target",
            &addr.to_string(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(expected),
            "tolerating {tolerated}: {err}"
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["errors"]["connect"], 2, "{v}");
        assert_eq!(v["errors"]["verify"], 0, "{v}");
        assert!(v["requests"].as_u64().unwrap() > 0, "{v}");
        if expected == 4 {
            assert!(err.contains("connects failed"), "{err}");
        }
        for echoer in serving.join().expect("server thread") {
            echoer.join().expect("echo thread");
        }
    }
}
