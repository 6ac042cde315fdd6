//! Issue 24: the cluster under faults. Two `ciba-api` and two `ciba-worker` processes on one
//! PostgreSQL database (`support::cluster`), hundreds of flows in progress, then a fault: a
//! replica or a worker killed, PostgreSQL restarted, its connections black-holed, polls
//! spread over both replicas, a replica stopped under load. Each ends with the
//! reconciliation of `flows`. PostgreSQL only.

mod flows;

use crate::support::cluster::{check_5xx, send, Cluster, Sent, REQUEST_TIMEOUT};
use crate::support::proxy::Mode;
use flows::{join, reconcile, spawn_flows, Ctx};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FLOWS: usize = 200;

/// 1. `kill -9` of one API replica, then of one worker, mid-load; each restarted after a
///    pause. Nothing lost, nothing redeemed twice, every ping delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s13_kill_replica_and_worker() {
    let mut c = Cluster::start(false).await;
    let ctx = Ctx::new(&c).await;
    let running = spawn_flows(&ctx, &c.receiver, FLOWS);
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.api.kill9();
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.restart_api().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.workers[0].kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.restart_worker(0).await;
    let seen = join(running).await;
    reconcile(&ctx, &c.receiver, &seen).await;
}

/// While the database cannot be reached: every request is answered 503
/// `temporarily_unavailable` with `Retry-After` within the request timeout, `/readyz` is 503
/// on both replicas. Returns the slowest answer.
async fn outage(c: &Cluster, ctx: &Ctx, lasting: Duration) -> Duration {
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let form = [
        ("grant_type", "urn:openid:params:grant-type:ciba"),
        ("auth_req_id", "no-such-request"),
    ];
    // The first answers may still come from connections made before the fault.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while started.elapsed() < lasting {
        for base in c.bases() {
            let t = Instant::now();
            let ready = c.http.get(format!("{base}/readyz")).send().await.unwrap();
            assert_eq!(ready.status(), 503, "{base}/readyz during the outage");
            slowest = slowest.max(t.elapsed());
            let t = Instant::now();
            let m = &ctx.poller;
            let sent = send(&c.http, std::slice::from_ref(&base), |h, b| {
                h.post(format!("{b}/oidc/v1/token"))
                    .basic_auth(&m.id, Some(&m.secret))
                    .form(&form)
            })
            .await;
            let Sent::Answered(r) = sent else {
                panic!("{base}: no answer during the outage: {sent:?}");
            };
            r.expect_error(503, "temporarily_unavailable");
            check_5xx(&r).unwrap();
            slowest = slowest.max(t.elapsed());
        }
    }
    assert!(slowest < REQUEST_TIMEOUT, "{slowest:?}");
    slowest
}

/// After the database is back: how long until both replicas are ready and enrolling a device
/// on the replica that was restarted before works again, without restarting any process.
async fn recovery(c: &Cluster, code: &str) -> Duration {
    let started = Instant::now();
    c.wait_ready(Duration::from_secs(20)).await;
    let key = crate::support::keys::EcKey::generate("pending");
    let body = json!({
        "enrollment_code": code, "device_info": {"p": "ios", "ma": "Apple", "mo": "iPhone11,2"},
        "public_jwk": key.public_jwk, "name": "Kari's phone", "key_protection": "hwk",
    });
    loop {
        let r = c
            .http
            .post(format!("{}/app/v1/devices", c.api.base()))
            .json(&body)
            .send()
            .await
            .unwrap();
        if r.status() == 201 {
            return started.elapsed();
        }
        assert_eq!(r.status(), 503, "enrolling after the outage");
        assert!(started.elapsed() < Duration::from_secs(20), "still 503");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The issue asks for service within 5 s of the database; 2 s more for a loaded 2-core CI
/// machine.
const RECOVERY_LIMIT: Duration = Duration::from_secs(7);

/// 2a. PostgreSQL (a private server) restarted: 7 s down, with a replica that had been
///     killed and restarted before (the report's case).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s13_database_restart() {
    let mut c = Cluster::start(true).await;
    let ctx = Ctx::new(&c).await;
    let code = c
        .srv
        .admin(&["enrollment-codes", "create", "--nnin", &ctx.app.nnin])["code"]
        .as_str()
        .unwrap()
        .to_owned();
    c.api.kill9();
    c.restart_api().await;
    let running = spawn_flows(&ctx, &c.receiver, FLOWS);
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.pg.as_ref().unwrap().stop();
    let slowest = outage(&c, &ctx, Duration::from_secs(7)).await;
    c.pg.as_ref().unwrap().start_again();
    let back = recovery(&c, &code).await;
    eprintln!("restart: slowest answer while down {slowest:?}; service back after {back:?}");
    assert!(back < RECOVERY_LIMIT, "{back:?}");
    let seen = join(running).await;
    reconcile(&ctx, &c.receiver, &seen).await;
}

/// 2b. Every database connection black-holed for 10 s (accepted and held, nothing
///     forwarded, nothing closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s13_database_blackhole() {
    let c = Cluster::start(false).await;
    let ctx = Ctx::new(&c).await;
    let code = c
        .srv
        .admin(&["enrollment-codes", "create", "--nnin", &ctx.app.nnin])["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let running = spawn_flows(&ctx, &c.receiver, FLOWS);
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.set_db(Mode::Blackhole);
    let slowest = outage(&c, &ctx, Duration::from_secs(10)).await;
    c.set_db(Mode::Pass);
    let back = recovery(&c, &code).await;
    eprintln!("blackhole: slowest answer while held {slowest:?}; service back after {back:?}");
    assert!(back < RECOVERY_LIMIT, "{back:?}");
    let seen = join(running).await;
    reconcile(&ctx, &c.receiver, &seen).await;
}

/// One request's answers to polls at `offsets` (from the first), each sent to
/// `replica(k)`.
async fn poll_pattern(
    c: &Cluster,
    ctx: &Ctx,
    offsets: &[u64],
    replica: impl Fn(usize) -> usize,
) -> Vec<String> {
    let m = &ctx.poller;
    let started = m_start(c, ctx).await;
    let bases = c.bases();
    let t0 = Instant::now();
    let mut answers = Vec::new();
    for (k, off) in offsets.iter().enumerate() {
        tokio::time::sleep_until((t0 + Duration::from_millis(*off)).into()).await;
        let r = c
            .http
            .post(format!("{}/oidc/v1/token", bases[replica(k)]))
            .basic_auth(&m.id, Some(&m.secret))
            .form(&[
                ("grant_type", "urn:openid:params:grant-type:ciba"),
                ("auth_req_id", started.as_str()),
            ])
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = r.json().await.unwrap();
        answers.push(body["error"].as_str().unwrap_or("tokens").to_owned());
    }
    answers
}

async fn m_start(c: &Cluster, ctx: &Ctx) -> String {
    let form = crate::support::with_assertion(
        &ctx.poller.token,
        &[
            ("login_hint", ctx.app.nnin.as_str()),
            ("scope", "openid"),
            ("binding_message", "Pacing"),
        ],
    );
    let r = c
        .http
        .post(format!("{}/oidc/v1/bc-authorize", c.srv.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    body["auth_req_id"].as_str().unwrap().to_owned()
}

/// 3. Polls faster than `interval`, spread over both replicas, get `slow_down` exactly as one
///    replica answers the same polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s13_slow_down_cluster_wide() {
    let c = Cluster::start(false).await;
    let ctx = Ctx::new(&c).await;
    // interval 1 s, 500 ms of grace: 200 ms is too early, and so is every poll after the
    // first slow_down (interval 6 s); 1.2 s is not.
    let offsets = [0, 200, 1_400, 2_600];
    let (spread, single) = tokio::join!(
        futures_util::future::join_all(
            (0..64).map(|_| poll_pattern(&c, &ctx, &offsets, |k| k % 2))
        ),
        futures_util::future::join_all((0..64).map(|_| poll_pattern(&c, &ctx, &offsets, |_| 0))),
    );
    let reference = &single[0];
    assert!(reference.iter().any(|a| a == "slow_down"), "{reference:?}");
    for s in single.iter().chain(&spread) {
        assert_eq!(s, reference);
    }
}

/// 4. SIGTERM to a replica under 64 polling connections (their database answers slowed by
///    300 ms, so that many are in flight): every request it had received is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s13_sigterm_under_polling() {
    let mut c = Cluster::start(false).await;
    let ctx = Ctx::new(&c).await;
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..64 {
        ids.push(m_start(&c, &ctx).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let base = c.api.base();
    let tasks: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let (http, base, stop) = (http.clone(), base.clone(), stop.clone());
            let (answered, failed) = (answered.clone(), failed.clone());
            let (cid, secret) = (ctx.poller.id.clone(), ctx.poller.secret.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Acquire) {
                    let r = http
                        .post(format!("{base}/oidc/v1/token"))
                        .basic_auth(&cid, Some(&secret))
                        .form(&[
                            ("grant_type", "urn:openid:params:grant-type:ciba"),
                            ("auth_req_id", id.as_str()),
                        ])
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().as_u16() < 500 => {
                            answered.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    tokio::time::sleep(Duration::from_millis(1_000)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.set_db(Mode::Delay(Duration::from_millis(300)));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // No new requests from here; those sent are in flight.
    stop.store(true, Ordering::Release);
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.api.term();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(c.api.wait_exit(Duration::from_secs(15)), "no clean exit");
    let (a, f) = (
        answered.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    eprintln!("sigterm: {a} polls answered, {f} not");
    assert!(a >= 64, "{a}");
    assert_eq!(f, 0, "requests in flight at SIGTERM went unanswered");
}
