//! A flood of token requests with wrong secrets and made-up client ids must not starve the
//! polls of a real merchant or the readiness probe: password hashing has its own bounded
//! pool and refuses at once (429) when it is full.

use crate::support::app::{nnin, start, App, Merchant, IPHONE, SCOPES};
use crate::support::{Backend, Reply, TestServer};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FLOOD: Duration = Duration::from_secs(8);

async fn flood_does_not_starve_polls_or_readiness(backend: Backend) {
    let srv = TestServer::start_with(
        backend,
        &[
            ("CIBA_HASH_THREADS", "1"),
            ("CIBA_HASH_QUEUE", "4"),
            // All of this test's traffic comes from 127.0.0.1: the per-address limit on
            // failures would refuse the flood before it reached the hashing pool.
            ("CIBA_LIMIT_AUTH_FAILURES", "0"),
            ("CIBA_POLL_INTERVAL", "1"),
        ],
    )
    .await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let user = nnin(100);
    App::enroll(&srv, &user, IPHONE).await;
    let started = start(&srv, &m, &user, IPHONE).await;
    started.ok();
    let auth_req_id = started.str("auth_req_id");
    // The merchant's secret is verified once before the flood (as it would be in service).
    let form = [
        ("grant_type", "urn:openid:params:grant-type:ciba"),
        ("auth_req_id", auth_req_id),
    ];
    srv.post("/oidc/v1/token", Some((&m.id, &m.secret)), &form)
        .await
        .expect(400);

    let stop = Arc::new(AtomicBool::new(false));
    let (unauthorized, refused, other) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut attackers = Vec::new();
    for i in 0..64 {
        let (stop, unauthorized, refused, other) = (
            stop.clone(),
            unauthorized.clone(),
            refused.clone(),
            other.clone(),
        );
        let url = srv.url("/oidc/v1/token");
        let victim = m.id.clone();
        attackers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // Half guess the merchant's secret, half make up client ids.
                let id = if i % 2 == 0 {
                    victim.clone()
                } else {
                    format!("made-up-{i}-{n}")
                };
                let resp = http
                    .post(&url)
                    .basic_auth(&id, Some(format!("guess-{n}")))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await;
                match resp.map(|r| r.status().as_u16()) {
                    Ok(401) => unauthorized.fetch_add(1, Ordering::Relaxed),
                    Ok(429) => refused.fetch_add(1, Ordering::Relaxed),
                    _ => other.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }

    // Meanwhile: a well-paced poll and a readiness probe each second, each answered promptly.
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let until = Instant::now() + FLOOD;
    let mut polls = 0;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let resp = probe
            .post(srv.url("/oidc/v1/token"))
            .basic_auth(&m.id, Some(&m.secret))
            .form(&form)
            .send()
            .await
            .expect("a poll went unanswered during the flood");
        let r = Reply::read(resp).await;
        assert!(
            r.error() == "authorization_pending" || r.error() == "slow_down",
            "{r}"
        );
        polls += 1;
        let ready = probe
            .get(srv.url("/readyz"))
            .send()
            .await
            .expect("/readyz went unanswered during the flood");
        assert_eq!(ready.status(), 200);
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.await.unwrap();
    }
    assert!(polls >= 5);
    let (unauthorized, refused, other) = (
        unauthorized.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
    );
    // Wrong credentials are refused as such while there is room, and at once when there is not.
    assert_eq!(other, 0, "unexpected answers to the flood");
    assert!(unauthorized > 0);
    assert!(
        refused > 0,
        "the hashing pool never refused ({unauthorized} answered 401)"
    );
    let metrics = srv.metrics().await;
    assert!(
        metrics.contains(
            r#"ciba_rate_limited_total{endpoint="client authentication",limit="hash_capacity"}"#
        ),
        "{metrics}"
    );
}

/// A guessing loop on one connection is answered late, whatever it guesses; the merchant's
/// own credentials are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_authentications_are_answered_late() {
    let srv = TestServer::start_with(
        Backend::Sqlite,
        &[
            ("CIBA_AUTH_FAILURE_DELAY_MS", "400"),
            ("CIBA_LIMIT_AUTH_FAILURES", "0"),
        ],
    )
    .await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    for (id, secret) in [(m.id.as_str(), "guess"), ("made-up", "guess")] {
        let started = Instant::now();
        srv.post(
            "/oidc/v1/token",
            Some((id, secret)),
            &[("grant_type", "client_credentials")],
        )
        .await
        .expect(401);
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "answered at once"
        );
    }
    srv.post(
        "/oidc/v1/token",
        Some((&m.id, &m.secret)),
        &[("grant_type", "client_credentials")],
    )
    .await
    .ok();
}

/// Made-up client ids keep the hashing pool busy; a registered client whose secret is not
/// verified yet (a new replica, a restart, a rotated secret) must still get through.
async fn a_registered_client_gets_through_made_up_ids(backend: Backend) {
    let srv = TestServer::start_with(
        backend,
        &[
            ("CIBA_HASH_THREADS", "1"),
            ("CIBA_HASH_QUEUE", "4"),
            ("CIBA_LIMIT_AUTH_FAILURES", "0"),
            ("CIBA_AUTH_FAILURE_DELAY_MS", "0"),
        ],
    )
    .await;
    let (id, secret) = srv.create_client("permissions/client", &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut attackers = Vec::new();
    for i in 0..64 {
        let (stop, refused, url) = (stop.clone(), refused.clone(), srv.url("/oidc/v1/token"));
        attackers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let resp = http
                    .post(&url)
                    .basic_auth(format!("made-up-{i}-{n}"), Some("guess"))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await;
                if resp.is_ok_and(|r| r.status() == 429) {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // The pool is saturated by the flood before the merchant arrives.
    let deadline = Instant::now() + Duration::from_secs(20);
    while refused.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "the flood never filled the hashing pool"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..3 {
        let r = srv
            .post(
                "/oidc/v1/token",
                Some((&id, &secret)),
                &[("grant_type", "client_credentials")],
            )
            .await;
        assert_eq!(r.status, 200, "a registered client was refused: {r}");
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.await.unwrap();
    }
}

on_both_backends!(
    flood_does_not_starve_polls_or_readiness,
    a_registered_client_gets_through_made_up_ids,
);
