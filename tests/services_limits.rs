//! The services' safety: a chargen client that never reads and a time client that never
//! closes are closed by the stall timeout; discard costs no memory however much is sent;
//! UDP services that can amplify are rate-limited per source beyond loopback (in a private
//! network namespace, as root; skipped otherwise) while echo is not; per-service counters
//! appear in the summary.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use echoloop_testkit::child::{ChildProcess, Listening, WAIT};
use echoloop_testkit::client::connect;

const BIN: &str = env!("CARGO_BIN_EXE_echoloop");

fn start(args: &[&str]) -> (ChildProcess, Listening) {
    let server = ChildProcess::spawn_server(Command::new(BIN).args(args));
    let listening = server.listening();
    (server, listening)
}

/// A `key=value` field of a line (the client's counts in the namespace test).
fn field(summary: &str, key: &str) -> u64 {
    summary
        .split(' ')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in {summary}"))
        .parse()
        .expect("a number")
}

/// Reads until EOF or reset, at most `WAIT`; returns bytes read.
fn read_until_closed(stream: &mut TcpStream) -> usize {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut total = 0;
    let mut buffer = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return total,
            Ok(n) => total += n,
        }
    }
}

#[test]
fn chargen_non_reader_and_time_non_closer_are_closed_by_the_stall_timeout() {
    let (server, listening) = start(&[
        "--port",
        "off",
        "--stall-timeout",
        "1s",
        "--listen",
        "chargen=127.0.0.1:0/tcp",
        "--listen",
        "time=127.0.0.1:0/tcp",
    ]);
    let started = Instant::now();
    // Connected and never reading: chargen fills the socket buffers, then stalls.
    let mut chargen = TcpStream::connect(listening.socket("chargen/tcp", 0)).unwrap();
    // Reads its 4 bytes and the server's FIN, but never closes its own side.
    let mut time = TcpStream::connect(listening.socket("time/tcp", 0)).unwrap();
    let mut four = Vec::new();
    time.set_read_timeout(Some(WAIT)).unwrap();
    time.read_to_end(&mut four).unwrap();
    assert_eq!(four.len(), 4);
    std::thread::sleep(Duration::from_millis(2500));
    // chargen's backlog is bounded by the kernel buffers and one write budget, then EOF.
    let read = read_until_closed(&mut chargen);
    assert!(read > 0 && read < 64 << 20, "{read} bytes before the close");
    assert!(started.elapsed() < WAIT);
    let summary = server.stop();
    assert_eq!(summary.get("closed_stalled"), 2);
    assert_eq!(summary.get("svc.time.conn_accepted"), 1);
    assert_eq!(summary.get("svc.time.tcp_bytes_out"), 4);
    assert_eq!(summary.get("svc.chargen.conn_accepted"), 1);
    assert!(summary.get("svc.chargen.tcp_bytes_out") > 0);
}

#[test]
fn discard_takes_256_mib_without_growing() {
    let (server, listening) = start(&["--port", "off", "--listen", "discard=127.0.0.1:0/tcp"]);
    let mut client = connect(listening.socket("discard/tcp", 0));
    let chunk = vec![b'd'; 1 << 20];
    client.write_all(&chunk).unwrap();
    let before = server.memory_kib("VmRSS");
    for _ in 1..256 {
        client.write_all(&chunk).unwrap();
    }
    let after = server.memory_kib("VmRSS");
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_until_closed(&mut client), 0, "discard sends nothing");
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    let summary = server.stop();
    assert_eq!(summary.get("svc.discard.tcp_bytes_in"), 256 << 20);
    assert_eq!(summary.get("pending_bytes"), 0);
    assert_eq!(summary.get("closed_peer"), 1);
}

/// Inside a private network namespace (only there can the server have a non-loopback
/// address without touching the machine's network), a burst of 100 datagrams from one
/// source gets 20 daytime replies (twice `--udp-reply-rate 10`) and 100 echoes.
const NAMESPACE_SCRIPT: &str = r#"
set -e
ip link set lo up
ip addr add 10.200.0.1/32 dev lo
"$BIN" --bind 10.200.0.1 --port 0 --listen daytime=0/udp --udp-reply-rate 10 >"$OUT" 2>/dev/null &
PID=$!
for i in $(seq 100); do [ -s "$OUT" ] && break; sleep 0.05; done
python3 - "$(head -n1 "$OUT")" <<'PY'
import socket, sys, time
fields = dict(f.split("=", 1) for f in sys.argv[1].split()[1:])
def burst(addr):
    host, port = addr.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.200.0.1", 0))
    s.settimeout(0.5)
    for i in range(100):
        s.sendto(b"%d" % i, (host, int(port)))
    got = 0
    try:
        while True:
            s.recvfrom(2048)
            got += 1
    except socket.timeout:
        return got
print("daytime=%d echo=%d" % (burst(fields["daytime/udp"]), burst(fields["echo/udp"])))
PY
kill -TERM $PID
wait $PID
tail -n1 "$OUT"
"#;

#[test]
fn amplifying_udp_services_are_rate_limited_beyond_loopback_and_echo_is_not() {
    let usable = Command::new("unshare")
        .args(["-n", "ip", "link", "set", "lo", "up"])
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("python3").arg("--version").output().is_ok();
    if !usable {
        eprintln!("SKIP: needs root, unshare -n, ip and python3");
        return;
    }
    let out = std::env::temp_dir().join(format!("echoloop-ns-{}.out", std::process::id()));
    let output = Command::new("timeout")
        .args(["60", "unshare", "-n", "sh", "-c", NAMESPACE_SCRIPT])
        .env("BIN", BIN)
        .env("OUT", &out)
        .output()
        .expect("run unshare");
    let _ = std::fs::remove_file(&out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines = stdout.lines();
    let counts = lines.next().expect("the client's counts");
    let summary = lines.next().expect("the summary");
    let daytime = field(counts, "daytime");
    assert!(
        (20..=22).contains(&daytime),
        "{counts}: burst of 2 x 10/s expected"
    );
    assert_eq!(
        field(counts, "echo"),
        100,
        "echo cannot amplify: not limited"
    );
    assert!(
        field(summary, "udp_dropped_rate_limited") >= 78,
        "{summary}"
    );
}
