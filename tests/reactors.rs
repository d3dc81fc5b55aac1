//! Many reactors on one port (`ServerGroup`, `--threads N`): connections land on more than
//! one reactor, the limits are totals over all of them (`max_connections`, `max_per_source`,
//! `memory_budget`), one handle shuts them all down within the drain deadline, and the
//! binary's summary sums them. Loopback (127.0.0.1 and 127.0.0.2), port 0, every loop bounded.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use echoloop::{Config, Stats};
use echoloop_testkit::child::ChildProcess;
use echoloop_testkit::{
    close_cleanly, connect, connect_with, pattern, ping, write_until_blocked, TestGroup,
};

const BIN: &str = env!("CARGO_BIN_EXE_echoloop");

/// How many reactors accepted at least one connection.
fn reactors_used(each: &[Stats]) -> usize {
    each.iter().filter(|s| s.conn_accepted > 0).count()
}

/// The reactors' counters summed.
fn total(each: &[Stats]) -> Stats {
    each.iter().fold(Stats::default(), |mut sum, s| {
        sum.merge(s);
        sum
    })
}

/// True if `stream` is served (one ping comes back), false if it was turned away (EOF or a
/// reset instead of the echo).
#[track_caller]
fn is_served(mut stream: &TcpStream, data: &[u8]) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    if stream.write_all(data).is_err() {
        return false;
    }
    let mut back = vec![0u8; data.len()];
    match stream.read_exact(&mut back) {
        Ok(()) => {
            assert_eq!(back, data, "echo differs");
            true
        }
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ) =>
        {
            false
        }
        Err(e) => panic!("neither served nor turned away: {e}"),
    }
}

/// Forty clients on four reactors: every one is echoed, and the kernel spreads them over
/// more than one reactor (the chance that 40 connections hash onto one of four is 4^-39).
/// While they are open, a live snapshot (`StatsHandle`) sums the four reactors.
#[test]
fn connections_land_on_more_than_one_reactor() {
    let group = TestGroup::with_config(Config::default(), 4);
    let mut clients: Vec<_> = (0..40).map(|_| connect(group.tcp())).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        ping(client, &pattern(100 + i));
    }
    let live = group.stats.snapshot().expect("running reactors answer");
    assert_eq!((live.conn_accepted, live.conn_active), (40, 40), "{live}");
    let echoed: u64 = (0..40).map(|i| pattern(100 + i).len() as u64).sum();
    assert_eq!(live.tcp_bytes_out, echoed, "{live}");
    assert!(live.accounting_holds(), "{:?}", live.accounting_errors());
    clients.into_iter().for_each(close_cleanly);
    let each = group.stop();
    assert_eq!(each.len(), 4);
    assert!(reactors_used(&each) > 1, "all on one reactor: {each:?}");
    let sum = total(&each);
    assert_eq!(sum.conn_accepted, 40, "{sum}");
    assert_eq!(sum.closed_peer, 40, "{sum}");
}

/// `max_connections` 10 over four reactors: exactly ten of thirty clients are served, however
/// the kernel spread them, and the other twenty are turned away and counted.
#[test]
fn max_connections_is_a_total_over_reactors() {
    let config = Config {
        max_connections: 10,
        ..Config::default()
    };
    let group = TestGroup::with_config(config, 4);
    let clients: Vec<_> = (0..30).map(|_| connect(group.tcp())).collect();
    thread::sleep(Duration::from_millis(300)); // all accepted (or turned away) by now
    let served = clients
        .iter()
        .enumerate()
        .filter(|(i, client)| is_served(client, &pattern(1000 + i)))
        .count();
    assert_eq!(served, 10);
    drop(clients);
    let sum = total(&group.stop());
    assert_eq!(sum.conn_accepted, 10, "{sum}");
    assert_eq!(sum.rejected_max_connections, 20, "{sum}");
}

/// `max_per_source` 3 over four reactors: three connections from 127.0.0.1 in all, whichever
/// reactors they landed on; 127.0.0.2 is still served.
#[test]
fn max_per_source_is_a_total_over_reactors() {
    let config = Config {
        max_per_source: Some(3),
        ..Config::default()
    };
    let group = TestGroup::with_config(config, 4);
    let from = |ip: &str| Some(ip.parse::<IpAddr>().unwrap());
    let clients: Vec<_> = (0..8)
        .map(|_| connect_with(group.tcp(), from("127.0.0.1"), None))
        .collect();
    thread::sleep(Duration::from_millis(300));
    let served = clients
        .iter()
        .filter(|client| is_served(client, &pattern(64)))
        .count();
    assert_eq!(served, 3);
    let other = connect_with(group.tcp(), from("127.0.0.2"), None);
    assert!(is_served(&other, &pattern(64)));
    drop((clients, other));
    let sum = total(&group.stop());
    assert_eq!(sum.rejected_per_source, 5, "{sum}");
    assert_eq!(sum.conn_accepted, 4, "{sum}");
}

/// One handle stops four reactors, and the drain deadline holds for all: clients that never
/// read, on whichever reactors, are cut off at the deadline, and every reactor returns soon
/// after it.
#[test]
fn one_handle_shuts_every_reactor_down_within_the_drain_deadline() {
    let drain = Duration::from_secs(1);
    let config = Config {
        drain_timeout: drain,
        max_pending: 1 << 20,
        low_water: 1 << 18,
        ..Config::default()
    };
    let group = TestGroup::with_config(config, 4);
    let addr: SocketAddr = group.tcp();
    let mut stuck: Vec<_> = (0..12).map(|_| connect(addr)).collect();
    let chunk = pattern(64 * 1024);
    for client in stuck.iter_mut() {
        write_until_blocked(client, &chunk, Duration::from_millis(200), 256 << 20);
    }
    let started = Instant::now();
    group.handle().shutdown();
    let each = group.join();
    let took = started.elapsed();
    assert!(
        took >= drain,
        "the drain ended before its deadline: {took:?}"
    );
    assert!(took < drain + Duration::from_secs(4), "took {took:?}");
    assert!(reactors_used(&each) > 1, "all on one reactor: {each:?}");
    let sum = total(&each);
    assert_eq!(sum.closed_drain_timeout, 12, "{sum}");
    assert_eq!(sum.conn_active, 0, "{sum}");
    drop(stuck);
}

/// The binary with `--threads 3`: one `listening` line, echo on that port, one summary that
/// sums the reactors (each one's at debug level).
#[test]
fn the_binary_sums_its_reactors() {
    let server = ChildProcess::spawn_server(Command::new(BIN).args([
        "--port",
        "0",
        "--threads",
        "3",
        "--log-level",
        "debug",
    ]));
    let addr = server.listening().tcp();
    let mut clients: Vec<_> = (0..30).map(|_| connect(addr)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        ping(client, &pattern(10 + i));
    }
    clients.into_iter().for_each(close_cleanly);
    let mut server = server;
    server.signal(echoloop_testkit::child::Signal::TERM);
    let summary = server.next_line();
    assert_eq!(server.wait_exit(), 0);
    let log = server.stderr();
    let summary = echoloop_testkit::child::Summary::parse(&summary);
    assert_eq!(summary.get("conn_accepted"), 30);
    let per_reactor: u64 = (0..3)
        .map(|i| {
            let prefix = format!("reactor {i}: summary ");
            let line = log
                .lines()
                .find_map(|l| l.split_once(&prefix).map(|(_, rest)| rest))
                .unwrap_or_else(|| panic!("no {prefix:?} in\n{log}"));
            echoloop_testkit::child::Summary::parse(&format!("summary {line}")).get("conn_accepted")
        })
        .sum();
    assert_eq!(per_reactor, 30);
}

/// `memory_budget` 8 MiB over four reactors (2 MiB each): sixteen clients that write without
/// reading, all at once, leave at most the budget plus the 64 KiB floor per connection pending
/// in all, however the kernel spread them (without the split each reactor would hold up to
/// 8 MiB); and the budget is used, not just unreached. The drain deadline's discard count is
/// what was pending when it came.
#[test]
fn memory_budget_is_a_total_over_reactors() {
    const BUDGET: u64 = 8 << 20;
    const CLIENTS: u64 = 16;
    let config = Config {
        memory_budget: BUDGET as usize,
        max_pending: 4 << 20,
        low_water: 1 << 20,
        drain_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let group = TestGroup::with_config(config, 4);
    let addr = group.tcp();
    let writers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            thread::spawn(move || {
                // A small receive buffer keeps the echo in the server rather than in our kernel.
                let mut client = connect_with(addr, None, Some(64 << 10));
                let chunk = pattern(64 * 1024);
                write_until_blocked(&mut client, &chunk, Duration::from_millis(500), 64 << 20);
                client
            })
        })
        .collect();
    let clients: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let each = group.stop();
    drop(clients);
    assert!(reactors_used(&each) > 1, "all on one reactor: {each:?}");
    let sum = total(&each);
    let held = sum.tcp_discarded_drain_timeout;
    assert!(
        held <= BUDGET + CLIENTS * (64 << 10),
        "held {held} B: {sum}"
    );
    assert!(
        held >= BUDGET * 3 / 4,
        "the budget was never reached: {sum}"
    );
    assert!(sum.memory_budget_pauses >= 1, "{sum}");
    assert_eq!(sum.closed_drain_timeout, CLIENTS, "{sum}");
}

/// A second group asked for the port a running group holds is refused ("address in use"),
/// rather than joining its `SO_REUSEPORT` group and taking a share of its clients; once the
/// first group is gone, the port binds again.
#[test]
fn a_second_group_cannot_join_a_running_groups_port() {
    let first = TestGroup::with_config(Config::default(), 2);
    let taken = first.tcp();
    let config = Config {
        bind: taken.ip(),
        port: taken.port(),
        ..Config::default()
    };
    match echoloop::ServerGroup::bind(config.clone(), 2) {
        Err(echoloop::ServerError::Bind { source, .. }) => {
            assert_eq!(source.kind(), ErrorKind::AddrInUse, "{source}")
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a second group joined port {}", taken.port()),
    }
    let mut client = connect(taken);
    ping(&mut client, &pattern(64));
    close_cleanly(client);
    let each = first.stop();
    assert_eq!(
        total(&each).conn_accepted,
        1,
        "the first group kept its client"
    );
    let again = echoloop::ServerGroup::bind(config, 2).expect("the port is free again");
    assert_eq!(again.tcp_addr(), Some(taken));
}
