//! The `/metrics` endpoint as a scraper sees it: a page in the Prometheus text format whose
//! counters match the traffic, checked with two parsers of the format (the `prometheus-parse`
//! crate, and Prometheus's own `promtool check metrics` where installed), and the endpoint's
//! bounds: wrong requests get their status, an endless head is cut off, silent scrapers cannot
//! lock out a scrape, and echo keeps working meanwhile. Loopback, port 0, bounded.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use echoloop::metrics::MAX_SCRAPES;
use echoloop::Config;
use echoloop_testkit::{connect, echo_with_half_close, pattern, TestServer};

fn metrics_server() -> TestServer {
    TestServer::with_config(Config {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        ..Config::default()
    })
}

/// Sends `request` raw and returns the whole response (the server closes after it).
#[track_caller]
fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = connect(addr);
    stream.write_all(request).expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    response
}

#[track_caller]
fn scrape(addr: SocketAddr) -> String {
    let response = http(addr, b"GET /metrics HTTP/1.1\r\nHost: echoloop\r\n\r\n");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

/// Every sample of the page, by name and labels, as parsed by `prometheus-parse`.
fn samples(page: &str) -> HashMap<String, f64> {
    let lines = page.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the page parses");
    scrape
        .samples
        .into_iter()
        .map(|sample| {
            let mut labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            labels.sort();
            let value = match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                other => panic!("unexpected sample type {other:?}"),
            };
            (format!("{}{{{}}}", sample.metric, labels.join(",")), value)
        })
        .collect()
}

/// `promtool check metrics` on the page, when Prometheus's tools are installed (CI installs
/// them; `scripts/prometheus-check.sh` needs them too).
fn promtool_check(page: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not installed: skipping its check (apt-get install prometheus)");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let output = child.wait_with_output().expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n{page}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// After known traffic the page's counters say exactly that, every family is well formed for
/// both parsers, and the byte accounting adds up on the page too.
#[test]
fn the_page_counts_the_traffic_and_parses() {
    let server = metrics_server();
    let metrics = server.metrics.expect("metrics endpoint bound");
    assert!(metrics.ip().is_loopback() && metrics.port() != 0);
    echo_with_half_close(server.tcp(), &pattern(100_000));
    let open = connect(server.tcp()); // one connection open while scraping
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"ping", server.udp()).unwrap();

    // The page is a snapshot: retry (bounded) until the loop has seen the open client.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (page, values) = loop {
        let page = scrape(metrics);
        let values = samples(&page);
        let settled = values.get("echoloop_connections_open{reactor=0}") == Some(&1.0)
            && values.get("echoloop_udp_received_datagrams_total{reactor=0}") == Some(&1.0);
        if settled || Instant::now() > deadline {
            break (page, values);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(open);
    promtool_check(&page);
    let get = |key: &str| {
        *values
            .get(key)
            .unwrap_or_else(|| panic!("{key} in\n{page}"))
    };
    assert_eq!(
        get("echoloop_tcp_received_bytes_total{reactor=0}"),
        100_000.0
    );
    assert_eq!(get("echoloop_tcp_sent_bytes_total{reactor=0}"), 100_000.0);
    assert_eq!(get("echoloop_connections_accepted_total{reactor=0}"), 2.0);
    assert_eq!(
        get("echoloop_connections_closed_total{reactor=0,reason=peer}"),
        1.0
    );
    assert_eq!(get("echoloop_connections_open{reactor=0}"), 1.0);
    assert_eq!(get("echoloop_udp_received_datagrams_total{reactor=0}"), 1.0);
    assert_eq!(get("echoloop_reactors{}"), 1.0);
    let discarded: f64 = values
        .iter()
        .filter(|(k, _)| k.starts_with("echoloop_tcp_discarded_bytes_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        get("echoloop_tcp_received_bytes_total{reactor=0}")
            + get("echoloop_tcp_generated_bytes_total{reactor=0}"),
        get("echoloop_tcp_sent_bytes_total{reactor=0}")
            + get("echoloop_pending_bytes{reactor=0}")
            + discarded
    );
    // The same books per service, here echo's alone.
    assert_eq!(
        get("echoloop_service_tcp_received_bytes_total{reactor=0,service=echo}"),
        get("echoloop_tcp_received_bytes_total{reactor=0}")
    );
    assert_eq!(
        get("echoloop_service_pending_bytes{reactor=0,service=echo}"),
        get("echoloop_pending_bytes{reactor=0}")
    );
    for gauge in [
        "pending_bytes",
        "zero_copy_pipes_open",
        "udp_queued_datagrams",
    ] {
        get(&format!("echoloop_{gauge}{{reactor=0}}"));
    }
    // The endpoint's own counts: every earlier scrape was answered in full, none evicted.
    let answered_before = get("echoloop_metrics_responses_total{}");
    let next = samples(&scrape(metrics));
    assert_eq!(
        next.get("echoloop_metrics_responses_total{}"),
        Some(&(answered_before + 1.0))
    );
    assert_eq!(next.get("echoloop_metrics_evictions_total{}"), Some(&0.0));
}

/// Wrong requests get short error statuses; HEAD gets the headers only.
#[test]
fn wrong_requests_get_their_status() {
    let server = metrics_server();
    let metrics = server.metrics.unwrap();
    for (request, status) in [
        (&b"GET / HTTP/1.1\r\n\r\n"[..], "404"),
        (
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "405",
        ),
        (b"hello\r\n\r\n", "400"),
    ] {
        let response = http(metrics, request);
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "{response}"
        );
    }
    let head = http(metrics, b"HEAD /metrics HTTP/1.0\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200 OK") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
}

/// A client that sends header lines forever is answered 431 and closed, not buffered.
#[test]
fn an_endless_request_head_is_cut_off() {
    let server = metrics_server();
    let mut stream = connect(server.metrics.unwrap());
    stream.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    let line = [b'x'; 1024];
    let mut sent = 0;
    // The server answers and stops reading after 8 KiB; our writes may then fail (reset).
    while sent < 64 * 1024 && stream.write_all(&line).is_ok() {
        sent += line.len();
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 431 "), "{response}");
}

/// Silent scrapers fill every slot: the next connection evicts the oldest of them and is
/// answered at once, with the eviction on its page; echo still works, and the evicted one is
/// closed (EOF, not left hanging).
#[test]
fn silent_scrapers_cannot_lock_out_a_scrape() {
    let server = metrics_server();
    let metrics = server.metrics.unwrap();
    let mut silent: Vec<TcpStream> = (0..MAX_SCRAPES).map(|_| connect(metrics)).collect();
    // Let the loop accept them all before the scrape arrives.
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let page = scrape(metrics);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(page.contains("echoloop_connections_accepted_total"));
    // The page tells the operator: one connection was evicted for this scrape, and no
    // response had been sent before it.
    assert!(
        page.contains("\necholoop_metrics_evictions_total 1\n"),
        "{page}"
    );
    assert!(
        page.contains("\necholoop_metrics_responses_total 0\n"),
        "{page}"
    );
    echo_with_half_close(server.tcp(), b"echo is not blocked");
    // The first silent connection was the oldest: it was closed to make room.
    let mut buf = [0u8; 16];
    assert_eq!(silent[0].read(&mut buf).expect("closed, not reset"), 0);
    drop(silent.drain(..));
}
