//! Admission control: `max_connections` and `max_per_source`. A connection over a limit is
//! accepted and closed at once (the client sees a prompt EOF, the server counts it), and a
//! slot freed by a leaving client is taken again. Loopback (127.0.0.1 and 127.0.0.2), port 0.
//! Running out of descriptors (EMFILE) is in `fd_exhaustion.rs`.

use std::time::Duration;

use echoloop::Config;
use echoloop_testkit::{
    close_cleanly, connect, connect_with, expect_closed_within, pattern, ping, TestServer,
};

/// With `max_connections` 5: five clients are served; the 6th to 10th are accepted and closed
/// at once (prompt EOF, counted); after one served client leaves, a new one is served.
#[test]
fn max_connections_rejects_the_sixth_and_frees_the_slot_on_close() {
    let config = Config {
        max_connections: 5,
        ..Default::default()
    };
    let server = TestServer::with_config(config);
    let addr = server.tcp();
    let mut served: Vec<_> = (0..5).map(|_| connect(addr)).collect();
    // Served means echoed: this also makes sure all five are admitted before the others come.
    for (i, stream) in served.iter_mut().enumerate() {
        ping(stream, &pattern(100 + i));
    }
    for _ in 5..10 {
        let mut rejected = connect(addr);
        let took = expect_closed_within(&mut rejected, Duration::from_secs(2));
        assert!(took < Duration::from_secs(2));
    }
    for (i, stream) in served.iter_mut().enumerate() {
        ping(stream, &pattern(200 + i));
    }
    // The server closes its side and frees the slot in the same turn.
    close_cleanly(served.remove(0));
    let mut newcomer = connect(addr);
    ping(&mut newcomer, &pattern(4096));
    close_cleanly(newcomer);
    served.into_iter().for_each(close_cleanly);
    let stats = server.stop();
    assert_eq!(stats.rejected_max_connections, 5, "{stats}");
    assert_eq!(stats.conn_accepted, 6, "{stats}");
    assert_eq!(stats.closed_peer, 6, "{stats}");
}

/// With `max_per_source` 3: the 4th connection from 127.0.0.1 is closed at once, one from
/// 127.0.0.2 is served, and a slot freed by 127.0.0.1 can be taken again by it.
#[test]
fn max_per_source_rejects_the_fourth_from_one_address_only() {
    let config = Config {
        max_per_source: Some(3),
        ..Default::default()
    };
    let server = TestServer::with_config(config);
    let addr = server.tcp();
    let local = Some("127.0.0.1".parse().unwrap());
    let mut served: Vec<_> = (0..3).map(|_| connect_with(addr, local, None)).collect();
    for (i, stream) in served.iter_mut().enumerate() {
        ping(stream, &pattern(100 + i));
    }
    let mut fourth = connect_with(addr, local, None);
    expect_closed_within(&mut fourth, Duration::from_secs(2));
    let mut other = connect_with(addr, Some("127.0.0.2".parse().unwrap()), None);
    ping(&mut other, &pattern(1000));
    assert_eq!(other.local_addr().unwrap().ip().to_string(), "127.0.0.2");
    close_cleanly(served.remove(0));
    let mut again = connect_with(addr, local, None);
    ping(&mut again, &pattern(2000));
    close_cleanly(again);
    close_cleanly(other);
    served.into_iter().for_each(close_cleanly);
    let stats = server.stop();
    assert_eq!(stats.rejected_per_source, 1, "{stats}");
    assert_eq!(stats.rejected_max_connections, 0, "{stats}");
    assert_eq!(stats.conn_accepted, 5, "{stats}");
    assert_eq!(stats.closed_peer, 5, "{stats}");
}
