//! Slow and greedy connections: a stalled request is closed, the connection count is capped.

use crate::support::{Backend, TestServer};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Read until the server closes the connection; what it sent, or `None` if still open at
/// `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_stalls_in_its_headers_or_body_is_closed() {
    let srv = TestServer::start_with(
        Backend::Sqlite,
        &[("CIBA_HEADER_TIMEOUT", "1"), ("CIBA_BODY_TIMEOUT", "1")],
    )
    .await;
    let addr = format!("127.0.0.1:{}", srv.port);

    // Half the headers, then silence (slowloris).
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /oidc/v1/token HTTP/1.1\r\nHost: x\r\nContent-Ty")
        .await
        .unwrap();
    let started = Instant::now();
    let got = read_until_closed(&mut s, Duration::from_secs(15)).await;
    assert!(got.is_some(), "a stalled header was held open for 15 s");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Whole headers, a tenth of the promised body, then silence.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        b"POST /oidc/v1/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type",
    )
    .await
    .unwrap();
    let got = read_until_closed(&mut s, Duration::from_secs(15))
        .await
        .expect("a stalled body was held open for 15 s");
    // Answered in the contract's format before the connection is closed.
    assert!(got.starts_with("HTTP/1.1 4"), "{got}");
    assert!(got.contains("invalid_request"), "{got}");

    // An idle keep-alive connection is closed too; a prompt client is served.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut s, Duration::from_secs(15))
        .await
        .expect("an idle keep-alive connection was held open for 15 s");
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    srv.get("/readyz").await.ok();
}

/// Open up to `tries` connections that each get one answer and stay open; returns those
/// served and whether one was closed unserved.
async fn fill(addr: &str, from: &str, tries: usize) -> (Vec<TcpStream>, bool) {
    let mut held = Vec::new();
    for _ in 0..tries {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let mut s = socket.connect(addr.parse().unwrap()).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => held.push(s),
            _ => return (held, true),
        }
    }
    (held, false)
}

/// Once connections are free again, a new one is served.
async fn served_again(srv: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        if let Ok(r) = fresh.get(srv.url("/healthz")).send().await {
            assert_eq!(r.status(), 200);
            return;
        }
        assert!(Instant::now() < deadline, "slots never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once() {
    let srv = TestServer::start_with(Backend::Sqlite, &[("CIBA_MAX_CONNECTIONS", "3")]).await;
    // The test client's own keep-alive connection may hold a slot: fill what is left.
    let (held, refused) = fill(&format!("127.0.0.1:{}", srv.port), "127.0.0.1", 4).await;
    assert!(refused, "every connection was served past the cap of 3");
    assert!(held.len() <= 3);
    drop(held);
    served_again(&srv).await;
    assert!(srv
        .metrics()
        .await
        .lines()
        .any(|l| l.starts_with("ciba_connections_refused_total ") && !l.ends_with(" 0")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    let srv = TestServer::start_with(
        Backend::Sqlite,
        &[("CIBA_MAX_CONNECTIONS_PER_ADDRESS", "3")],
    )
    .await;
    // From 127.0.0.2, another address than the harness's own client.
    let (held, refused) = fill(&format!("127.0.0.1:{}", srv.port), "127.0.0.2", 4).await;
    assert!(refused, "one address held more than 3 connections");
    assert_eq!(held.len(), 3);
    // Other addresses are still served.
    served_again(&srv).await;
    drop(held);
}

/// A client that asks for responses and never reads them cannot keep its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_dropped() {
    let srv = TestServer::start_with(Backend::Sqlite, &[("CIBA_BODY_TIMEOUT", "1")]).await;
    let mut s = TcpStream::connect(format!("127.0.0.1:{}", srv.port))
        .await
        .unwrap();
    const ASKED: usize = 1_000;
    let ask = b"GET /openapi.yaml HTTP/1.1\r\nHost: x\r\n\r\n".repeat(ASKED);
    s.write_all(&ask).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = read_until_closed(&mut s, Duration::from_secs(30))
        .await
        .expect("the connection was still open after 30 s");
    let answered = got.matches("HTTP/1.1 200").count();
    assert!(
        answered < ASKED,
        "all {ASKED} responses were written to a client that did not read"
    );
    served_again(&srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let resp = srv
        .http
        .get(srv.url("/healthz"))
        .header("x-padding", "a".repeat(64 * 1024))
        .send()
        .await;
    // hyper answers 431 and closes, or resets the connection: never served.
    if let Ok(r) = resp {
        assert_eq!(r.status(), 431);
    }
    srv.get("/readyz").await.ok();
}
