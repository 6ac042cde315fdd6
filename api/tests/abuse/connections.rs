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
    let (status, _) = srv.get_json("/readyz").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once() {
    let srv = TestServer::start_with(Backend::Sqlite, &[("CIBA_MAX_CONNECTIONS", "3")]).await;
    let addr = format!("127.0.0.1:{}", srv.port);
    // The test client's own keep-alive connection may hold a slot: fill what is left.
    let mut held = Vec::new();
    let mut refused = None;
    for _ in 0..4 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => held.push(s),
            _ => {
                refused = Some(s);
                break;
            }
        }
    }
    assert!(
        refused.is_some(),
        "every connection was served past the cap of 3"
    );
    assert!(held.len() <= 3);
    // Once slots are free again, new connections are served.
    drop(held);
    drop(refused);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        if let Ok(r) = fresh.get(srv.url("/healthz")).send().await {
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(Instant::now() < deadline, "slots never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(srv
        .metrics()
        .await
        .lines()
        .any(|l| l.starts_with("ciba_connections_refused_total ") && !l.ends_with(" 0")));
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
    let (status, _) = srv.get_json("/readyz").await;
    assert_eq!(status, 200);
}
