//! Zero-copy echo end to end: bulk connections switch to a pipe and `splice`, get every byte
//! back in order, keep the pending limit's guarantee when the pipe is full, and the number of
//! pipes stays within `zero_copy_conns`. Loopback, port 0, every loop bounded.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Barrier};
use std::thread;

use echoloop::Config;
use echoloop_testkit::{assert_same, connect, pattern, read_to_eof, Rng, TestServer};

/// Streams `data` in random chunks of up to 256 KiB while a second thread reads the echo,
/// half-closes, and returns what came back.
fn stream_and_read_back(addr: SocketAddr, data: Arc<Vec<u8>>, seed: u64) -> Vec<u8> {
    let mut writer = connect(addr);
    let mut reader = writer.try_clone().expect("clone stream");
    let expected = data.len();
    let reading = thread::spawn(move || read_to_eof(&mut reader, expected));
    let mut rng = Rng::new(seed);
    let mut offset = 0;
    while offset < data.len() {
        let chunk = rng.range(1, 256 * 1024).min(data.len() - offset);
        writer
            .write_all(&data[offset..offset + chunk])
            .expect("write");
        offset += chunk;
    }
    writer.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
    reading.join().expect("reader thread")
}

/// Eight clients stream 1-8 MiB each at once: each is switched to zero copy, and every byte
/// comes back, in order, to the client that sent it.
#[test]
fn bulk_clients_switch_to_zero_copy_and_get_every_byte_back() {
    let server = TestServer::start();
    let addr = server.tcp();
    let mut rng = Rng::from_env("zero_copy_bulk");
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let len = rng.range(1 << 20, 8 << 20);
            let data = Arc::new(rng.bytes(len));
            let seed = rng.next_u64();
            thread::spawn(move || {
                let echoed = stream_and_read_back(addr, Arc::clone(&data), seed);
                assert_same(&echoed, &data);
                data.len() as u64
            })
        })
        .collect();
    let sent: u64 = clients.into_iter().map(|c| c.join().expect("client")).sum();
    let stats = server.stop();
    assert_eq!(
        stats.zero_copy_conns, 8,
        "every bulk client got a pipe: {stats}"
    );
    assert_eq!(stats.zero_copy_unavailable, 0, "{stats}");
    assert_eq!(stats.tcp_bytes_in, sent, "{stats}");
    assert_eq!(stats.tcp_bytes_out, sent, "{stats}");
    assert_eq!(stats.closed_peer, 8, "{stats}");
}

/// A client writes 24 MiB before it reads a byte. The pipe holds 256 KiB, and loopback's kernel
/// buffers about 9 MiB, so the rest must wait in the connection's buffer behind the pipe, as
/// it does without zero copy; a server that stopped reading at a full pipe would leave this
/// client blocked in `write` until its timeout. Everything comes back in order.
#[test]
fn write_before_read_client_spills_past_the_full_pipe_and_loses_nothing() {
    let server = TestServer::start();
    let data = pattern(24 << 20);
    let mut stream = connect(server.tcp());
    for chunk in data.chunks(64 * 1024) {
        stream
            .write_all(chunk)
            .expect("write (blocked: the server stopped reading?)");
    }
    stream.shutdown(Shutdown::Write).expect("shutdown(SHUT_WR)");
    let echoed = read_to_eof(&mut stream, data.len());
    assert_same(&echoed, &data);
    let stats = server.stop();
    assert_eq!(
        stats.zero_copy_conns, 1,
        "the client went zero copy: {stats}"
    );
    assert_eq!(stats.tcp_bytes_out, data.len() as u64, "{stats}");
    assert_eq!(stats.closed_peer, 1, "{stats}");
}

/// With `zero_copy_conns` 2, five bulk clients open at once: two get pipes, three keep copying,
/// and all five get every byte back. (On a loaded machine a client that has its echo may wait
/// at the barrier past the 1 s pipe-idle sweep; its pipe is then given back and may go to
/// another client: a pipe given is counted once more, reclaimed once more, and never more
/// than two are held at once.)
#[test]
fn pipes_stay_within_the_limit_and_the_rest_copy() {
    const CLIENTS: usize = 5;
    let server = TestServer::with_config(Config {
        zero_copy_conns: 2,
        ..Config::default()
    });
    let addr = server.tcp();
    let mut rng = Rng::from_env("zero_copy_limit");
    // Every client stays connected until all have echoed, so no pipe is freed for reuse.
    let all_echoed = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let data = rng.bytes(2 << 20);
            let all_echoed = Arc::clone(&all_echoed);
            thread::spawn(move || {
                let mut stream = connect(addr);
                let mut reader = stream.try_clone().expect("clone stream");
                let expected = data.len();
                let reading = thread::spawn(move || {
                    let mut echoed = vec![0u8; expected];
                    reader.read_exact(&mut echoed).expect("read echo");
                    echoed
                });
                stream.write_all(&data).expect("write");
                assert_same(&reading.join().expect("reader"), &data);
                all_echoed.wait();
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client");
    }
    let stats = server.stop();
    assert!(stats.zero_copy_conns >= 2, "{stats}");
    assert!(
        stats.zero_copy_conns <= 2 + stats.zero_copy_reclaimed,
        "more than 2 pipes at once: {stats}"
    );
    assert_eq!(stats.tcp_bytes_out, (CLIENTS as u64) * (2 << 20), "{stats}");
}

/// Zero copy off (`zero_copy_conns` 0): bulk clients copy, and nothing changes for them.
#[test]
fn zero_copy_off_means_no_pipes() {
    let server = TestServer::with_config(Config {
        zero_copy_conns: 0,
        ..Config::default()
    });
    let data = Arc::new(pattern(4 << 20));
    let echoed = stream_and_read_back(server.tcp(), Arc::clone(&data), 7);
    assert_same(&echoed, &data);
    let stats = server.stop();
    assert_eq!(stats.zero_copy_conns, 0, "{stats}");
    assert_eq!(stats.tcp_bytes_out, data.len() as u64, "{stats}");
}
