//! TCP echo end to end: byte-exact under concurrency, the tutorials' deadlock client, half-close,
//! and clients that reset. Loopback, port 0, every loop bounded.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

use echoloop_testkit::{
    assert_same, connect, echo_with_half_close, pattern, read_to_eof, Rng, TestServer,
};

/// 200 clients at once, each sending a random amount in random chunks and reading each chunk
/// back before the next: every byte comes back, in order, to the client that sent it.
#[test]
fn concurrent_clients_random_sizes_and_chunking_are_echoed_exactly() {
    let server = TestServer::start();
    let addr = server.tcp();
    let mut rng = Rng::from_env("concurrent_clients");
    let clients: Vec<_> = (0..200)
        .map(|_| {
            let seed = rng.next_u64();
            thread::spawn(move || {
                let mut rng = Rng::new(seed);
                let mut stream = connect(addr);
                let total = rng.range(1, 256 * 1024);
                let data = rng.bytes(total);
                let mut offset = 0;
                let mut echoed = vec![0u8; 0];
                while offset < total {
                    let chunk = rng.range(1, 16 * 1024).min(total - offset);
                    stream.write_all(&data[offset..offset + chunk]).unwrap();
                    let mut back = vec![0u8; chunk];
                    stream.read_exact(&mut back).unwrap();
                    echoed.extend_from_slice(&back);
                    offset += chunk;
                }
                assert_same(&echoed, &data);
                total as u64
            })
        })
        .collect();
    let sent: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    let stats = server.stop();
    assert_eq!(stats.conn_accepted, 200);
    assert_eq!(stats.tcp_bytes_in, sent);
    assert_eq!(stats.tcp_bytes_out, sent);
}

/// The tutorials' deadlock client, with default settings: blocking sends of 10 MB in 1 KiB
/// chunks without reading, then `shutdown(SHUT_WR)`, then read. All 10 MB come back.
#[test]
fn seed_deadlock_client_gets_all_ten_megabytes_back() {
    let server = TestServer::start();
    let data = pattern(10 * 1000 * 1000);
    let mut stream = connect(server.tcp());
    for chunk in data.chunks(1024) {
        stream.write_all(chunk).unwrap();
    }
    stream.shutdown(Shutdown::Write).unwrap();
    let echoed = read_to_eof(&mut stream, data.len());
    assert_same(&echoed, &data);
    let stats = server.stop();
    assert_eq!(stats.closed_peer, 1);
}

/// 64 MiB, well beyond what loopback's kernel buffers hold (about 9 MiB), from a correct
/// client that writes and reads at the same time.
#[test]
fn sixty_four_mib_with_concurrent_reader_is_echoed_exactly() {
    let server = TestServer::start();
    let data = pattern(64 << 20);
    let mut writer = connect(server.tcp());
    let mut reader = writer.try_clone().unwrap();
    let expected = data.len();
    let reading = thread::spawn(move || read_to_eof(&mut reader, expected));
    for chunk in data.chunks(256 * 1024) {
        writer.write_all(chunk).unwrap();
    }
    writer.shutdown(Shutdown::Write).unwrap();
    let echoed = reading.join().unwrap();
    assert_same(&echoed, &data);
}

/// A writer that never reads pushes past the high-water mark: the server stops reading it
/// (backpressure) and its memory stays bounded, yet once the client reads, everything comes
/// back, byte-exact.
#[test]
fn backpressure_pauses_a_client_that_does_not_read_and_loses_nothing() {
    let config = echoloop::Config {
        max_pending: 1 << 20,
        low_water: 256 << 10,
        ..Default::default()
    };
    let server = TestServer::with_config(config);
    let data = pattern(24 << 20);
    let mut writer = connect(server.tcp());
    let mut reader = writer.try_clone().unwrap();
    let to_write = data.clone();
    let writing = thread::spawn(move || {
        for chunk in to_write.chunks(64 * 1024) {
            writer.write_all(chunk).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    // Let the writer run into the limit before anybody reads.
    thread::sleep(Duration::from_millis(300));
    let echoed = read_to_eof(&mut reader, data.len());
    writing.join().unwrap();
    assert_same(&echoed, &data);
    let stats = server.stop();
    assert!(stats.backpressure_pauses >= 1, "{stats}");
}

/// Half-close around the 64 KiB boundary of a pending-output block, the 256 KiB boundary of
/// the shared scratch buffer (one read's worth), and beyond: every byte, then EOF, never a
/// reset.
#[test]
fn half_close_returns_every_byte_then_eof() {
    let server = TestServer::start();
    let lengths = [
        0,
        1,
        65_535,
        65_536,
        65_537,
        262_143,
        262_144,
        262_145,
        3 << 20,
    ];
    for len in lengths {
        echo_with_half_close(server.tcp(), &pattern(len));
    }
    let stats = server.stop();
    assert_eq!(stats.closed_peer, lengths.len() as u64, "{stats}");
    assert_eq!(stats.closed_reset, 0, "{stats}");
}

/// Clients that reset mid-stream (SO_LINGER 0, close with data in flight) are dropped alone:
/// clients running at the same time still get every byte.
#[test]
fn resetting_clients_do_not_disturb_the_others() {
    let server = TestServer::start();
    let addr = server.tcp();
    let steady: Vec<_> = (0..8)
        .map(|i| {
            thread::spawn(move || {
                let mut stream = connect(addr);
                let data = pattern(64 * 1024 + i);
                for _ in 0..50 {
                    stream.write_all(&data).unwrap();
                    let mut back = vec![0u8; data.len()];
                    stream.read_exact(&mut back).unwrap();
                    assert_same(&back, &data);
                }
            })
        })
        .collect();
    for _ in 0..20 {
        let mut rude = connect(addr);
        rude.write_all(&pattern(512 * 1024)).unwrap();
        socket2::SockRef::from(&rude)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(rude); // RST, with echoed bytes unread and more in flight
    }
    for client in steady {
        client.join().unwrap();
    }
    // Shutdown stops accepting at once: the last rude client may still be in the listen
    // backlog (a loaded machine need not have run the server since it connected), and would
    // then never be counted. So let the server see every connection and reset first.
    server.wait_for("28 accepted and 20 resets", |s| {
        s.conn_accepted >= 28 && s.closed_reset >= 20
    });
    let stats = server.stop();
    assert_eq!(stats.conn_accepted, 28, "{stats}");
    assert_eq!(stats.closed_reset, 20, "{stats}");
    assert_eq!(stats.closed_io_error, 0, "{stats}");
}
