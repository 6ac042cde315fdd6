//! Abuse limits (contract §10): 429 `too_many_requests` with `Retry-After`, traffic through
//! again after the window, and the same count on every replica.

use crate::support::app::{nnin, nonce_statement, App, Merchant, IPHONE, SCOPES};
use crate::support::{Backend, Reply, TestServer};
use serde_json::json;
use std::time::Duration;

const WINDOW: u64 = 4;

#[track_caller]
fn assert_limited(r: &Reply) -> u64 {
    r.expect_error(429, "too_many_requests");
    assert!(r["error_description"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=WINDOW).contains(&wait), "Retry-After {wait}");
    wait
}

async fn register(srv: &TestServer, m: &Merchant, base: &str) -> Reply {
    let t = crate::support::app::now();
    let body = json!({"type": "authentication.v1", "iat": t, "exp": t + 600, "permission": nonce_statement(),
                      "intents": ["ciba"], "loginHint": [{"scheme": "nnin", "value": nnin(10)}]});
    let resp = srv
        .http
        .post(format!("{base}/permissions/v1/"))
        .bearer_auth(&m.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    Reply::read(resp).await
}

async fn user_exists(srv: &TestServer, m: &Merchant) -> Reply {
    let body = json!({"loginHint": [{"scheme": "nnin", "value": nnin(10)}]});
    srv.post_json("/permissions/v1/user-exists", Some(&m.token), &body)
        .await
}

/// bc-authorize for `user`, with the reference document's client authentication (the access
/// token as assertion).
async fn login(srv: &TestServer, m: &Merchant, user: &str) -> Reply {
    m.backchannel_authorize(
        srv,
        &[
            ("login_hint", user),
            ("scope", "openid"),
            ("binding_message", "Sign in 4821"),
        ],
    )
    .await
}

async fn per_client_limits(backend: Backend) {
    let srv = TestServer::start_with(
        backend,
        &[
            ("CIBA_LIMIT_CLIENT_REGISTRATIONS", "3/4"),
            ("CIBA_LIMIT_CLIENT_USER_EXISTS", "3/4"),
            ("CIBA_LIMIT_CLIENT_STARTS", "2/4"),
            ("CIBA_LIMIT_USER_STARTS", "0"),
        ],
    )
    .await;
    let (spammer, prober, starter) = (
        Merchant::new(&srv, SCOPES, &[]).await,
        Merchant::new(&srv, SCOPES, &[]).await,
        Merchant::new(&srv, SCOPES, &[]).await,
    );
    App::enroll(&srv, &nnin(10), IPHONE).await;

    srv.fresh_window(Duration::from_secs(WINDOW));
    for _ in 0..3 {
        register(&srv, &spammer, &srv.base).await.expect(201);
        user_exists(&srv, &prober).await.ok();
    }
    let wait = assert_limited(&register(&srv, &spammer, &srv.base).await);
    assert_limited(&user_exists(&srv, &prober).await);
    // Refused again: the audit trail holds the first refusal of the window only.
    register(&srv, &spammer, &srv.base).await.expect(429);
    let refusals = srv.admin(&["audit", "list", "--action", "rate_limit.exceeded"]);
    let mut objects: Vec<&str> = refusals
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["object_id"].as_str().unwrap())
        .collect();
    // Two refusals in the same millisecond have no order in the trail: compare them sorted.
    objects.sort_unstable();
    let mut expected = [
        format!("client_registrations:{}", spammer.id),
        format!("client_user_exists:{}", prober.id),
    ];
    expected.sort_unstable();
    assert_eq!(objects, expected);
    // Another client is not held back by the spammer.
    register(&srv, &starter, &srv.base).await.expect(201);

    srv.fresh_window(Duration::from_secs(WINDOW));
    for _ in 0..2 {
        login(&srv, &starter, &nnin(10)).await.ok();
    }
    assert_limited(&login(&srv, &starter, &nnin(10)).await);

    // Once the window has passed, traffic goes through again.
    srv.advance(Duration::from_secs(wait.max(1)));
    register(&srv, &spammer, &srv.base).await.expect(201);
    user_exists(&srv, &prober).await.ok();
    let metrics = srv.metrics().await;
    for (endpoint, limit) in [
        ("POST /permissions/v1/", "client_registrations"),
        ("POST /permissions/v1/user-exists", "client_user_exists"),
        ("POST /oidc/v1/bc-authorize", "client_starts"),
    ] {
        let series = format!(r#"ciba_rate_limited_total{{endpoint="{endpoint}",limit="{limit}"}}"#);
        assert!(metrics.contains(&series), "{series} missing:\n{metrics}");
    }
    // SQLite counts in its writer thread's batches, committed with the writes beside them;
    // PostgreSQL in the limits' own group commit.
    let limit_batches: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ciba_limit_batch_size_count "))
        .map_or(0.0, |v| v.trim().parse().unwrap());
    match backend {
        Backend::Sqlite => assert_eq!(limit_batches, 0.0, "counted outside the writer"),
        Backend::Postgres => assert!(limit_batches > 0.0),
    }
}

/// Asking bc-authorize about unknown NNINs is a user-exists question: it spends that budget.
async fn enumeration_through_bc_authorize_is_limited(backend: Backend) {
    let srv = TestServer::start_with(backend, &[("CIBA_LIMIT_CLIENT_USER_EXISTS", "3/4")]).await;
    let enumerator = Merchant::new(&srv, SCOPES, &[]).await;
    srv.fresh_window(Duration::from_secs(WINDOW));
    for i in 0..3 {
        let r = login(&srv, &enumerator, &nnin(400 + i)).await;
        assert_eq!(r.error(), "unknown_user_id", "{r}");
    }
    assert_limited(&login(&srv, &enumerator, &nnin(410)).await);
}

/// Guessing a user's phone model with fresh tokens spends the user's budget, not only the
/// client's registrations.
async fn phone_model_guesses_spend_the_users_budget(backend: Backend) {
    let srv = TestServer::start_with(backend, &[("CIBA_LIMIT_USER_STARTS", "2/4")]).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let victim = nnin(20);
    App::enroll(&srv, &victim, IPHONE).await;
    srv.fresh_window(Duration::from_secs(WINDOW));
    let mut answers = Vec::new();
    for model in ["Pixel 7", "Pixel 8", "Pixel 9"] {
        let created = m
            .register(
                &srv,
                &crate::support::app::payment_statement(),
                "payment.v1",
                &victim,
                "app2app",
            )
            .await;
        let di = crate::support::app::device_info(("android", "Google", model));
        let r = m
            .app_authorize(
                &srv,
                &[
                    (
                        "login_hint_token",
                        created["permissionToken"].as_str().unwrap(),
                    ),
                    ("scope", "openid"),
                    ("device_info", &di),
                ],
            )
            .await;
        answers.push(r);
    }
    answers[0].expect_error(400, "device_mismatch");
    answers[1].expect_error(400, "device_mismatch");
    answers[2].expect_error(429, "too_many_requests");
}

/// Push-bombing: requests for one user are limited across all clients, while other users
/// and the same clients carry on.
async fn one_user_cannot_be_push_bombed(backend: Backend) {
    let srv = TestServer::start_with(backend, &[("CIBA_LIMIT_USER_STARTS", "3/4")]).await;
    let (a, b) = (
        Merchant::new(&srv, SCOPES, &[]).await,
        Merchant::new(&srv, SCOPES, &[]).await,
    );
    let (victim, other) = (nnin(20), nnin(30));
    App::enroll(&srv, &victim, IPHONE).await;
    App::enroll(&srv, &other, IPHONE).await;
    srv.fresh_window(Duration::from_secs(WINDOW));
    for m in [&a, &a, &b] {
        login(&srv, m, &victim).await.ok();
    }
    let wait = assert_limited(&login(&srv, &b, &victim).await);
    login(&srv, &a, &victim).await.expect(429);
    login(&srv, &a, &other).await.ok();
    srv.advance(Duration::from_secs(wait));
    login(&srv, &b, &victim).await.ok();
}

async fn token(srv: &TestServer, id: &str, secret: &str, forwarded: Option<&str>) -> Reply {
    let mut req = srv
        .http
        .post(srv.url("/oidc/v1/token"))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "permissions/client"),
        ]);
    if let Some(f) = forwarded {
        req = req.header("x-forwarded-for", f);
    }
    Reply::read(req.send().await.unwrap()).await
}

/// Guessing secrets from one address: refused after a few failures, even with the right
/// secret, until the window ends; a spoofed `X-Forwarded-For` does not help.
async fn failed_authentications_are_limited_per_address(backend: Backend) {
    let srv = TestServer::start_with(backend, &[("CIBA_LIMIT_AUTH_FAILURES", "3/4")]).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    srv.fresh_window(Duration::from_secs(WINDOW));
    for i in 0..3 {
        token(&srv, &m.id, &format!("guess-{i}"), None)
            .await
            .expect(401);
    }
    let wait = assert_limited(&token(&srv, &m.id, "guess-3", None).await);
    let r = token(&srv, &m.id, &m.secret, None).await;
    assert_eq!(
        r.status, 429,
        "the right secret got through a blocked address: {r}"
    );
    let r = token(&srv, "made-up", "x", Some("198.51.100.9")).await;
    assert_eq!(
        r.status, 429,
        "X-Forwarded-For from an untrusted peer was believed"
    );
    // An access token the merchant already holds cannot be guessed: it still works.
    let r = register(&srv, &m, &srv.base).await;
    assert_eq!(
        r.status, 201,
        "a signed access token was refused with its address: {r}"
    );
    srv.advance(Duration::from_secs(wait));
    token(&srv, &m.id, &m.secret, None).await.ok();

    // Behind a trusted proxy, each forwarded client is counted on its own.
    let srv = TestServer::start_with(
        backend,
        &[
            ("CIBA_LIMIT_AUTH_FAILURES", "3/4"),
            ("CIBA_TRUSTED_PROXIES", "127.0.0.0/8"),
        ],
    )
    .await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    srv.fresh_window(Duration::from_secs(WINDOW));
    for i in 0..4 {
        token(&srv, &m.id, &format!("guess-{i}"), Some("198.51.100.1")).await;
    }
    token(&srv, &m.id, &m.secret, Some("198.51.100.1"))
        .await
        .expect(429);
    token(&srv, &m.id, &m.secret, Some("198.51.100.2"))
        .await
        .ok();
}

/// Two API processes on one database share every count.
async fn limits_hold_across_replicas(backend: Backend) {
    let srv = TestServer::start_with(backend, &[("CIBA_LIMIT_CLIENT_REGISTRATIONS", "4/4")]).await;
    let replica = srv.replica().await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    srv.fresh_window(Duration::from_secs(WINDOW));
    for base in [&srv.base, &replica.base, &srv.base, &replica.base] {
        register(&srv, &m, base).await.expect(201);
    }
    for base in [&srv.base, &replica.base] {
        assert_limited(&register(&srv, &m, base).await);
    }
}

on_both_backends!(
    per_client_limits,
    enumeration_through_bc_authorize_is_limited,
    phone_model_guesses_spend_the_users_budget,
    one_user_cannot_be_push_bombed,
    failed_authentications_are_limited_per_address,
    limits_hold_across_replicas,
);
