//! Issue 8 end to end: the worker beside a real `ciba-api`, pinging a local receiver.
//! Expiry, retries after 500s and downtime, final 4xx, redirects never followed, dead letters
//! retried from the admin CLI: the worker's passes run in-process on the server's clock,
//! moved past each backoff instead of waiting for it. The worker as a process: its logs
//! and its slots. Then the attacks on the worker's outbound
//! POSTs: notification endpoints over plain http or on this network (refused when a client
//! is registered and again at delivery), and a client whose receiver never answers trying
//! to hold every worker slot.
#![allow(clippy::unwrap_used)]

use crate::support;

use ciba_store::auth_requests as requests;
use ciba_store::jobs;
use ciba_worker::{periodic, queue, Ctx};
use diesel::RunQueryDsl;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use support::app::{App, Merchant};
use support::worker::{
    create_ping_client, ping_client, ping_client_with, DownPort, Receiver, INSECURE_CALLBACKS,
    SECURE_CALLBACKS,
};
use support::{Backend, TestServer};

pub const FAST_RETRIES: &[(&str, &str)] = &[
    ("CIBA_JOB_BACKOFF_BASE", "1"),
    ("CIBA_JOB_MAX_ATTEMPTS", "4"),
    ("CIBA_EXPIRY_INTERVAL", "1"),
];

/// bc-authorize for the app's user; returns (auth_req_id, link ref).
async fn start(srv: &TestServer, m: &Merchant, app: &App, token: &str) -> (String, String) {
    let started = m
        .backchannel_authorize(
            srv,
            &[
                ("login_hint", &app.nnin),
                ("scope", "openid"),
                ("binding_message", "Ping test"),
                ("client_notification_token", token),
            ],
        )
        .await;
    started.ok();
    let id = started.str("auth_req_id").to_owned();
    let i = id.clone();
    let row = srv
        .store()
        .read(move |c| requests::find(c, &i))
        .unwrap()
        .unwrap();
    (id, row.link_ref)
}

fn job(srv: &TestServer, auth_req_id: &str) -> jobs::JobRow {
    let id = jobs::ping_job_id(auth_req_id);
    srv.store()
        .read(move |c| jobs::find(c, &id))
        .unwrap()
        .unwrap()
}

async fn wait_job(srv: &TestServer, auth_req_id: &str, status: &str) -> jobs::JobRow {
    for _ in 0..300 {
        let j = job(srv, auth_req_id);
        if j.status == status {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job never became {status}: {:?}", job(srv, auth_req_id));
}

/// One pass of a periodic task of `ctx` (in-process, on the server's clock), to its end.
async fn pass(ctx: &Arc<Ctx>, task: fn(&Ctx)) {
    let c = ctx.clone();
    tokio::task::spawn_blocking(move || task(&c)).await.unwrap();
}

async fn approval_and_expiry_are_pinged(b: Backend) {
    let srv = TestServer::start(b).await;
    let rx = Receiver::start().await;
    let (m, app) = ping_client(&srv, &rx.url("/cb"), 100).await;
    let (approved, link) = start(&srv, &m, &app, "tok-approved").await;
    let (expiring, _) = start(&srv, &m, &app, "tok-expiring").await;
    // A poll-mode client's outcomes queue nothing.
    let poller = Merchant::new(&srv, "permissions/ciba openid", &[]).await;
    poller
        .backchannel_authorize(
            &srv,
            &[
                ("login_hint", &app.nnin),
                ("scope", "openid"),
                ("binding_message", "Ping test"),
            ],
        )
        .await
        .ok();

    app.approve(&srv, &link).await.ok();
    // The outcome and its job committed together: the job exists before any worker runs.
    assert_eq!(job(&srv, &approved).status, jobs::QUEUED);
    // Ping clients may still poll: the approved request is redeemed as usual.
    srv.post(
        "/oidc/v1/token",
        Some((&m.id, &m.secret)),
        &[
            ("grant_type", "urn:openid:params:grant-type:ciba"),
            ("auth_req_id", &approved),
        ],
    )
    .await
    .ok();
    // The other two requests run out of time while no worker is running; then the worker's
    // expiry sweep and its job loop run once each.
    srv.advance(Duration::from_secs(3_600));
    let ctx = Arc::new(srv.worker_in_process(FAST_RETRIES));
    pass(&ctx, periodic::expire_due).await;
    assert_eq!(queue::run_due(&ctx).await, 2, "the two pings");
    let got = rx.received();
    assert_eq!(got.len(), 2, "{got:?}");
    for (id, token) in [(&approved, "tok-approved"), (&expiring, "tok-expiring")] {
        let r = got
            .iter()
            .find(|r| r.body == json!({"auth_req_id": id}))
            .unwrap();
        assert_eq!(
            r.authorization.as_deref(),
            Some(format!("Bearer {token}").as_str())
        );
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        assert_eq!(r.path, "/cb");
    }
    // Delivered once: nothing is left to run, now or later.
    srv.advance(Duration::from_secs(3_600));
    pass(&ctx, periodic::expire_due).await;
    assert_eq!(queue::run_due(&ctx).await, 0);
    assert_eq!(rx.received().len(), 2);
    let e = expiring.clone();
    let row = srv
        .store()
        .read(move |c| requests::find(c, &e))
        .unwrap()
        .unwrap();
    assert_eq!(row.status, "expired");
    let pid = row.permission_id.unwrap();
    let p = srv
        .store()
        .read(move |c| ciba_store::permissions::find(c, &pid))
        .unwrap()
        .unwrap();
    assert_eq!(p.status, "expired");
    assert_eq!(job(&srv, &approved).status, jobs::DONE);
    assert_eq!(job(&srv, &approved).attempts, 1);
    let metrics = ctx.metrics.render();
    assert!(
        metrics.contains("ciba_worker_jobs_processed_total{kind=\"ping\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ciba_worker_requests_expired_total 2"),
        "{metrics}"
    );
}

async fn retries_after_500s_and_downtime_but_not_after_4xx_or_redirects(b: Backend) {
    let srv = TestServer::start(b).await;
    let rx = Receiver::start().await;
    rx.answer("/flaky", &[500, 503]);
    rx.answer("/denied", &[401]);
    rx.answer("/moving", &[302]);
    let down_port = DownPort::new();
    let down = format!("http://127.0.0.1:{}/later", down_port.port());
    let mut ids = Vec::new();
    for (i, endpoint) in [rx.url("/flaky"), rx.url("/denied"), rx.url("/moving"), down]
        .iter()
        .enumerate()
    {
        let (m, app) = ping_client(&srv, endpoint, 200 + 10 * i as u32).await;
        let (id, link) = start(&srv, &m, &app, "tok").await;
        app.decline(&srv, &link).await.ok();
        ids.push(id);
    }
    // The worker's job loop, one pass at a time on the server's clock, moved past each
    // retry's backoff (30 s, then 60 s, with up to a quarter more) between passes.
    let ctx = Arc::new(srv.worker_in_process(&[
        ("CIBA_JOB_BACKOFF_BASE", "30"),
        ("CIBA_JOB_MAX_ATTEMPTS", "4"),
    ]));
    let next_pass = || async {
        srv.advance(Duration::from_secs(100));
        queue::run_due(&ctx).await
    };
    assert_eq!(queue::run_due(&ctx).await, 4, "every first attempt");
    // 401 is final: one request, then the dead letters.
    let dead = job(&srv, &ids[1]);
    assert_eq!((dead.status.as_str(), dead.attempts), (jobs::DEAD, 1));
    assert_eq!(dead.last_error.as_deref(), Some("HTTP 401"));
    // A redirect is never followed, and is final.
    let moved = job(&srv, &ids[2]);
    assert_eq!((moved.status.as_str(), moved.attempts), (jobs::DEAD, 1));
    assert!(moved.last_error.unwrap().contains("302"));
    // The 500 and the receiver that is down are retried, and nothing before its time.
    assert_eq!(queue::run_due(&ctx).await, 0, "not due yet");
    assert_eq!(
        next_pass().await,
        2,
        "the 503 and the second failed connection"
    );
    // The receiver that was down comes up; the retry reaches it. 500, 503, then 200:
    // delivered on the third attempt.
    let late = Receiver::start_on(down_port).await;
    assert_eq!(next_pass().await, 2);
    let flaky = job(&srv, &ids[0]);
    assert_eq!((flaky.status.as_str(), flaky.attempts), (jobs::DONE, 3));
    assert_eq!(rx.received_on("/flaky").len(), 3);
    let later = job(&srv, &ids[3]);
    assert_eq!((later.status.as_str(), later.attempts), (jobs::DONE, 3));
    assert_eq!(late.received_on("/later").len(), 1);
    // Nothing is ever sent again.
    assert_eq!(next_pass().await, 0);
    assert_eq!(rx.received_on("/denied").len(), 1);
    assert_eq!(rx.received_on("/moving").len(), 1);
    assert!(rx.received_on("/moved").is_empty());

    // The operator lists the dead letters and retries one: delivered (the receiver says 200 now).
    let listed = srv.admin(&["jobs", "list"]);
    let dead_ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert!(
        dead_ids.contains(&jobs::ping_job_id(&ids[1]).as_str()),
        "{listed}"
    );
    assert_eq!(dead_ids.len(), 2, "{listed}");
    srv.admin(&["jobs", "retry", &jobs::ping_job_id(&ids[1])]);
    assert_eq!(queue::run_due(&ctx).await, 1);
    let retried = job(&srv, &ids[1]);
    assert_eq!((retried.status.as_str(), retried.attempts), (jobs::DONE, 1));
    assert_eq!(rx.received_on("/denied").len(), 2);
    let out = srv.admin_raw(&["jobs", "retry", &jobs::ping_job_id(&ids[1])]);
    assert!(!out.status.success(), "retrying a delivered job must fail");
    let metrics = ctx.metrics.render();
    assert!(
        metrics.contains("ciba_worker_jobs_failed_total{kind=\"ping\",outcome=\"dead\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ciba_worker_jobs_failed_total{kind=\"ping\",outcome=\"retry\"} 4"),
        "{metrics}"
    );
}

/// `UPDATE clients SET notification_endpoint` behind the admin CLI's back (an endpoint
/// registered before the policy, or changed in the database).
fn set_endpoint(srv: &TestServer, client_id: &str, endpoint: &str) {
    let sql =
        format!("UPDATE clients SET notification_endpoint = '{endpoint}' WHERE id = '{client_id}'");
    let n = srv
        .store()
        .write(move |c| Ok(diesel::sql_query(sql).execute(c)?))
        .unwrap();
    assert_eq!(n, 1);
}

/// The policy needs no database: SQLite only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_refuses_notification_endpoints_outside_the_policy() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let none: &[(&str, &str)] = &[];
    let dev: &[(&str, &str)] = &[INSECURE_CALLBACKS];
    for (env, endpoint, why) in [
        // Plain http: the token would cross the network in clear.
        (none, "http://merchant.example/ping", "https"),
        (dev, "http://merchant.example/ping", "loopback"),
        (dev, "http://10.0.0.1/ping", "loopback"),
        // Loopback over http only in development.
        (
            none,
            "http://127.0.0.1:9/ping",
            "CIBA_ALLOW_INSECURE_CALLBACKS",
        ),
        (none, "http://localhost:9/ping", "https"),
        // https to this network: the metadata service, loopback in any spelling, CGNAT.
        (
            none,
            "https://169.254.169.254/latest/meta-data",
            "link-local",
        ),
        (
            dev,
            "https://169.254.169.254/latest/meta-data",
            "link-local",
        ),
        (none, "https://127.0.0.1:9/ping", "loopback"),
        (none, "https://0x7f.1:9/ping", "loopback"),
        (none, "https://[::ffff:127.0.0.1]/ping", "loopback"),
        (none, "https://[fe80::1]/ping", "link-local"),
        (none, "https://100.64.0.1/ping", "CGNAT"),
        (none, "https://192.168.1.10/ping", "private"),
    ] {
        let out = create_ping_client(&srv, endpoint, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{endpoint} {env:?} was accepted");
        assert!(
            stderr.contains("--notification-endpoint") && stderr.contains(why),
            "{endpoint} {env:?}: {stderr}"
        );
    }
    assert_eq!(srv.admin(&["clients", "list"]), json!([]));
    for (env, endpoint) in [
        (none, "https://merchant.example/ping"),
        (dev, "http://127.0.0.1:9/ping"),
        (
            &[("CIBA_PING_ALLOWED_NETWORKS", "10.0.0.0/8")][..],
            "https://10.1.2.3/ping",
        ),
    ] {
        let out = create_ping_client(&srv, endpoint, env);
        assert!(
            out.status.success(),
            "{endpoint} {env:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(srv.admin(&["clients", "list"]).as_array().unwrap().len(), 3);
}

async fn pings_to_this_network_are_refused_at_delivery(b: Backend) {
    let srv = TestServer::start(b).await;
    let rx = Receiver::start().await;
    let port = rx.addr.port();
    // Registered in development mode: plain http to 127.0.0.1.
    let plain = ping_client(&srv, &rx.url("/plain"), 400).await;
    // Registered as https names, then pointed at loopback in the database.
    let literal = ping_client_with(&srv, "https://merchant.example/a", 410, &[]).await;
    set_endpoint(
        &srv,
        &literal.0.id,
        &format!("https://127.0.0.1:{port}/literal"),
    );
    let mapped = ping_client_with(&srv, "https://merchant.example/b", 420, &[]).await;
    set_endpoint(
        &srv,
        &mapped.0.id,
        &format!("https://[::ffff:127.0.0.1]:{port}/mapped"),
    );
    // A name is not resolved at registration: it is accepted, and resolves to loopback.
    let named = format!("https://localhost:{port}/named");
    let named = ping_client_with(&srv, &named, 430, &[SECURE_CALLBACKS]).await;
    let mut ids = Vec::new();
    for (m, app) in [&plain, &literal, &mapped, &named] {
        let (id, link) = start(&srv, m, app, "tok-must-not-leak").await;
        app.decline(&srv, &link).await.ok();
        ids.push(id);
    }
    let env: Vec<(&str, &str)> = FAST_RETRIES
        .iter()
        .copied()
        .chain([SECURE_CALLBACKS])
        .collect();
    let w = srv.worker(&env).await;
    for (id, why) in ids.iter().zip([
        "must be an https URL",
        "127.0.0.1 is a loopback address",
        "::ffff:127.0.0.1 is a loopback address",
        "localhost resolves only to refused addresses",
    ]) {
        // Final at the first attempt: never retried.
        let dead = wait_job(&srv, id, jobs::DEAD).await;
        assert_eq!(dead.attempts, 1, "{dead:?}");
        let error = dead.last_error.unwrap();
        assert!(
            error.starts_with("refused target: ") && error.contains(why),
            "{error}"
        );
    }
    // Refused before any connection, and dead (never claimed again): the receiver got
    // nothing.
    assert!(rx.received().is_empty(), "{:?}", rx.received());
    let logs = w.logs();
    assert!(logs.contains("refused target"), "{logs}");
    assert!(!logs.contains("tok-must-not-leak"), "{logs}");
    let metrics = w.metrics(&srv).await;
    assert!(
        metrics.contains("ciba_worker_jobs_failed_total{kind=\"ping\",outcome=\"dead\"} 4"),
        "{metrics}"
    );
}

async fn a_slow_receiver_cannot_hold_every_worker_slot(b: Backend) {
    let srv = TestServer::start(b).await;
    // A receiver that takes every request and never answers (within this test).
    let slow_rx = Receiver::start().await;
    slow_rx.set_delay(Duration::from_secs(300));
    let fast_rx = Receiver::start().await;
    let (slow, slow_app) = ping_client(&srv, &slow_rx.url("/slow"), 500).await;
    let (fast, fast_app) = ping_client(&srv, &fast_rx.url("/fast"), 510).await;
    let mut slow_ids = Vec::new();
    for i in 0..4 {
        let (id, link) = start(&srv, &slow, &slow_app, &format!("tok-slow-{i}")).await;
        slow_app.decline(&srv, &link).await.ok();
        slow_ids.push(jobs::ping_job_id(&id));
    }
    let (fast_id, link) = start(&srv, &fast, &fast_app, "tok-fast").await;
    fast_app.decline(&srv, &link).await.ok();
    // The slow client's pings are first in line.
    let sql = format!(
        "UPDATE jobs SET run_at = run_at - 60 WHERE id IN ('{}')",
        slow_ids.join("', '")
    );
    srv.store()
        .write(move |c| Ok(diesel::sql_query(sql).execute(c)?))
        .unwrap();

    let w = srv
        .worker(&[
            ("CIBA_WORKER_CONCURRENCY", "2"),
            ("CIBA_PING_PER_CLIENT_CONCURRENCY", "1"),
            ("CIBA_PING_TIMEOUT_MS", "50000"),
        ])
        .await;
    fast_rx
        .wait_for(Duration::from_secs(20), |r| !r.is_empty())
        .await;
    assert_eq!(wait_job(&srv, &fast_id, jobs::DONE).await.attempts, 1);
    // One slow delivery at a time; the others wait in the queue without using attempts.
    assert!(slow_rx.received().len() <= 1, "{:?}", slow_rx.received());
    let waiting: Vec<jobs::JobRow> = slow_ids
        .iter()
        .map(|id| {
            let id = id.clone();
            srv.store()
                .read(move |c| jobs::find(c, &id))
                .unwrap()
                .unwrap()
        })
        .collect();
    // (A job may be caught between its claim and its deferral: running, one attempt.)
    for j in &waiting {
        assert!(
            (j.status == jobs::RUNNING && j.attempts == 1)
                || (j.status == jobs::QUEUED && j.attempts == 0),
            "{j:?}"
        );
    }
    let metrics = w.metrics(&srv).await;
    assert!(
        metrics.contains("ciba_worker_jobs_deferred_total"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("ciba_worker_jobs_deferred_total 0"),
        "{metrics}"
    );
}

/// The deferred pings are not lost, not retried as failures, and not spun on: a client at its
/// cap gets each of its pings exactly once, one at a time, each on its first attempt.
async fn a_capped_clients_pings_all_arrive_once(b: Backend) {
    let srv = TestServer::start(b).await;
    let rx = Receiver::start().await;
    rx.set_delay(Duration::from_millis(700));
    let (m, app) = ping_client(&srv, &rx.url("/busy"), 600).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let (id, link) = start(&srv, &m, &app, &format!("tok-{i}")).await;
        app.decline(&srv, &link).await.ok();
        ids.push(id);
    }
    let w = srv
        .worker(&[
            ("CIBA_WORKER_CONCURRENCY", "4"),
            ("CIBA_PING_PER_CLIENT_CONCURRENCY", "1"),
        ])
        .await;
    rx.wait_for(Duration::from_secs(30), |r| r.len() >= 4).await;
    for id in &ids {
        assert_eq!(wait_job(&srv, id, jobs::DONE).await.attempts, 1);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = rx.received();
    assert_eq!(got.len(), 4, "{got:?}");
    for id in &ids {
        assert_eq!(
            got.iter()
                .filter(|r| r.body == json!({"auth_req_id": id}))
                .count(),
            1
        );
    }
    // One at a time: each arrived after the previous one was answered.
    let mut arrivals: Vec<_> = got.iter().map(|r| r.at).collect();
    arrivals.sort();
    for pair in arrivals.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(650),
            "{arrivals:?}"
        );
    }
    let metrics = w.metrics(&srv).await;
    let deferred: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ciba_worker_jobs_deferred_total "))
        .unwrap()
        .parse()
        .unwrap();
    // About one re-check per waiting job per second; a busy loop would be thousands.
    assert!((1..=100).contains(&deferred), "{deferred} deferrals");
    // Its series are there from the start, at 0 (alerts see the first failure).
    assert!(
        metrics
            .lines()
            .filter(|l| l.starts_with("ciba_worker_jobs_failed_total{"))
            .all(|l| l.ends_with(" 0")),
        "{metrics}"
    );
}

on_both_backends!(
    approval_and_expiry_are_pinged,
    retries_after_500s_and_downtime_but_not_after_4xx_or_redirects,
    pings_to_this_network_are_refused_at_delivery,
    a_slow_receiver_cannot_hold_every_worker_slot,
    a_capped_clients_pings_all_arrive_once,
);
