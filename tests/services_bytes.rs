//! Each inetd service's exact bytes, over TCP and UDP, on IPv4 and IPv6: chargen's first
//! lines and rotation, daytime's format, time and unixtime within ±2 s of the clock, discard
//! silent, echo unchanged beside them. One server serves them all on one reactor.
//!
//! The expected bytes are computed here from the RFCs, not taken from the library.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use echoloop::service::clock::Civil;
use echoloop_testkit::child::{ChildProcess, Listening};
use echoloop_testkit::client::{connect, read_to_eof, udp_ask};

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Connects and reads until the server closes.
fn read_all(addr: SocketAddr) -> Vec<u8> {
    read_to_eof(&mut connect(addr), 64)
}

/// Both families, one listener per service and address, each on its own free port.
fn start_all() -> (ChildProcess, Listening) {
    let mut args = vec!["--bind", "127.0.0.1", "--bind", "::1", "--port", "0"];
    for listen in [
        "discard=0",
        "chargen=0",
        "daytime=0",
        "time=0",
        "unixtime=0",
    ] {
        args.extend(["--listen", listen]);
    }
    let server =
        ChildProcess::spawn_server(Command::new(env!("CARGO_BIN_EXE_echoloop")).args(&args));
    let listening = server.listening();
    (server, listening)
}

/// RFC 864: line n is characters n..n+72 of the ring ' '..='~' (95 of them), then CRLF.
fn chargen_line(n: usize) -> Vec<u8> {
    let mut line: Vec<u8> = (0..72).map(|i| b' ' + ((n + i) % 95) as u8).collect();
    line.extend(b"\r\n");
    line
}

fn chargen_stream(from_line: usize, len: usize) -> Vec<u8> {
    (from_line..).flat_map(chargen_line).take(len).collect()
}

/// The daytime line for each second in `from..=to`.
fn daytime_lines(from: i64, to: i64) -> Vec<String> {
    (from..=to)
        .map(|secs| format!("{} UTC\r\n", Civil::from_unix(secs).ctime()))
        .collect()
}

#[track_caller]
fn assert_time(reply: &[u8], epoch_offset: i64, before: i64, after: i64) {
    let bytes: [u8; 4] = reply.try_into().expect("exactly 4 bytes");
    let secs = i64::from(u32::from_be_bytes(bytes)) - epoch_offset;
    assert!(
        (before - 2..=after + 2).contains(&secs),
        "{secs} is not within 2 s of [{before}, {after}]"
    );
}

#[test]
fn chargen_tcp_streams_the_rotating_lines() {
    let (_server, listening) = start_all();
    for family in 0..2 {
        let addr = listening.socket("chargen/tcp", family);
        let mut stream = connect(addr);
        // Two full rotations and a bit: 95 lines repeat.
        let mut got = vec![0u8; 74 * 200];
        stream.read_exact(&mut got).unwrap();
        assert!(got.starts_with(
            b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n"
        ));
        assert_eq!(got, chargen_stream(0, got.len()), "{addr}");
        assert_eq!(got[..74], got[95 * 74..96 * 74], "line 95 is line 0 again");
    }
}

#[test]
fn chargen_udp_replies_0_to_512_characters_of_the_stream() {
    let (_server, listening) = start_all();
    for family in 0..2 {
        let addr = listening.socket("chargen/udp", family);
        for _ in 0..20 {
            let reply = udp_ask(addr, b"");
            assert!(reply.len() <= 512, "{} bytes", reply.len());
            let start = reply.first().map_or(0, |&c| usize::from(c - b' '));
            assert_eq!(reply, chargen_stream(start, reply.len()), "{addr}");
        }
    }
}

#[test]
fn daytime_sends_one_line_then_closes_and_answers_each_datagram() {
    let (_server, listening) = start_all();
    for family in 0..2 {
        let before = unix_now();
        let tcp = read_all(listening.socket("daytime/tcp", family));
        let udp = udp_ask(listening.socket("daytime/udp", family), b"what time is it?");
        let expected = daytime_lines(before, unix_now());
        for reply in [tcp, udp] {
            let line = String::from_utf8(reply).expect("ASCII");
            assert!(expected.contains(&line), "{line:?} not in {expected:?}");
        }
    }
}

#[test]
fn time_and_unixtime_are_4_bytes_within_2_seconds_over_tcp_and_udp() {
    let (_server, listening) = start_all();
    for family in 0..2 {
        for (service, epoch_offset) in [("time", 2_208_988_800), ("unixtime", 0)] {
            let before = unix_now();
            let tcp = read_all(listening.socket(&format!("{service}/tcp"), family));
            let udp = udp_ask(listening.socket(&format!("{service}/udp"), family), b"");
            let after = unix_now();
            assert_time(&tcp, epoch_offset, before, after);
            assert_time(&udp, epoch_offset, before, after);
        }
    }
}

#[test]
fn discard_answers_nothing_and_echo_still_echoes() {
    let (_server, listening) = start_all();
    for family in 0..2 {
        let discard = listening.socket("discard/tcp", family);
        let mut stream = connect(discard);
        stream.write_all(&vec![b'x'; 1 << 20]).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let reply = read_to_eof(&mut stream, 0);
        assert!(reply.is_empty(), "discard sent {} bytes", reply.len());

        let local: SocketAddr = if family == 0 {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        }
        .parse()
        .unwrap();
        let socket = UdpSocket::bind(local).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        socket
            .send_to(b"drop me", listening.socket("discard/udp", family))
            .unwrap();
        assert!(socket.recv_from(&mut [0u8; 64]).is_err(), "discard replied");

        let echo = listening.socket("echo/udp", family);
        assert_eq!(udp_ask(echo, b"still here"), b"still here");
        let mut stream = connect(listening.socket("echo/tcp", family));
        stream.write_all(b"echo").unwrap();
        let mut back = [0u8; 4];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"echo");
    }
}
