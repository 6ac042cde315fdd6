//! Issue 8: the worker under failure and concurrency, key rotation and retention.
#![allow(clippy::unwrap_used)]

use crate::support;

use ciba_store::{jobs, jtis, keys};
use diesel::{QueryDsl, RunQueryDsl};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use support::app::{nnin, now};
use support::keys::verify_with_jwks;
use support::worker::{ping_client, Receiver};
use support::{Backend, TestServer};

/// `n` declined requests of a ping client notified at `endpoint`; returns their ids.
async fn finished_requests(srv: &TestServer, endpoint: &str, n: usize) -> Vec<String> {
    let (m, app) = ping_client(srv, endpoint, 300).await;
    let mut ids = Vec::new();
    for _ in 0..n {
        let started = m
            .backchannel_authorize(
                srv,
                &[
                    ("login_hint", &app.nnin),
                    ("scope", "openid"),
                    ("binding_message", "Ping test"),
                    ("client_notification_token", "tok"),
                ],
            )
            .await;
        started.ok();
        ids.push(started.str("auth_req_id").to_owned());
    }
    for p in app.pending(srv).await {
        app.decline(srv, p["ref"].as_str().unwrap()).await.ok();
    }
    ids
}

fn count_by_id(rx: &Receiver) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in rx.received() {
        assert_eq!(
            r.body.as_object().unwrap().len(),
            1,
            "only auth_req_id: {:?}",
            r.body
        );
        *seen
            .entry(r.body["auth_req_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    seen
}

fn jobs_in(srv: &TestServer, status: &'static str) -> usize {
    srv.store()
        .read(move |c| jobs::list(c, status, 10_000))
        .unwrap()
        .len()
}

async fn wait_all_done(srv: &TestServer, n: usize) {
    for _ in 0..600 {
        if jobs_in(srv, jobs::DONE) == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not all jobs done: {} of {n}", jobs_in(srv, jobs::DONE));
}

/// Kill -9 a worker with notifications in flight, start another: every notification arrives
/// at least once, always with the same body. (At least once, not exactly once: a POST that
/// reached the receiver before the kill was never recorded as delivered, so it is sent again
/// once its lease lapses. Receivers dedupe on auth_req_id, which CIBA makes safe: a ping only
/// says "poll now".)
/// One user with many requests: the push-bombing limit is not what these tests are about.
const MANY_FOR_ONE_USER: &[(&str, &str)] = &[("CIBA_LIMIT_USER_STARTS", "0")];

async fn killed_worker_redelivers_after_restart(b: Backend) {
    let srv = TestServer::start_with(b, MANY_FOR_ONE_USER).await;
    let rx = Receiver::start().await;
    let ids = finished_requests(&srv, &rx.url("/cb"), 12).await;
    rx.set_delay(Duration::from_secs(30));
    let env = [("CIBA_JOB_LEASE", "5"), ("CIBA_WORKER_CONCURRENCY", "4")];
    let mut first = srv.worker(&env).await;
    rx.wait_for(Duration::from_secs(10), |r| r.len() >= 4).await;
    first.kill();
    let in_flight = rx.received().len();
    assert_eq!(
        jobs_in(&srv, jobs::RUNNING),
        in_flight,
        "claimed jobs stay leased to the dead worker"
    );
    rx.set_delay(Duration::ZERO);
    let _second = srv.worker(&env).await;
    wait_all_done(&srv, ids.len()).await;
    let seen = count_by_id(&rx);
    for id in &ids {
        assert!(
            seen.get(id).copied().unwrap_or(0) >= 1,
            "{id} never delivered"
        );
    }
    let resent = seen.values().filter(|n| **n > 1).count();
    assert_eq!(
        resent, in_flight,
        "exactly the in-flight ones were sent twice: {seen:?}"
    );
}

/// SIGTERM while notifications hang: the worker gives them back (the attempt does not
/// count) and exits within its shutdown grace.
async fn graceful_shutdown_releases_jobs_in_hand(b: Backend) {
    let srv = TestServer::start(b).await;
    let rx = Receiver::start().await;
    let ids = finished_requests(&srv, &rx.url("/cb"), 3).await;
    // Longer than the worker's shutdown grace (1 s), so the jobs are still in hand at SIGTERM.
    rx.set_delay(Duration::from_secs(10));
    let mut w = srv
        .worker(&[
            ("CIBA_SHUTDOWN_TIMEOUT", "1"),
            ("CIBA_WORKER_CONCURRENCY", "2"),
        ])
        .await;
    rx.wait_for(Duration::from_secs(10), |r| r.len() >= 2).await;
    assert!(
        w.stop(Duration::from_secs(8)),
        "worker did not exit cleanly: {}",
        w.logs()
    );
    assert_eq!(jobs_in(&srv, jobs::RUNNING), 0);
    let queued = srv
        .store()
        .read(|c| jobs::list(c, jobs::QUEUED, 100))
        .unwrap();
    assert_eq!(queued.len(), ids.len());
    assert!(
        queued
            .iter()
            .all(|j| j.attempts == 0 && j.locked_by.is_none()),
        "{queued:?}"
    );
}

/// Two workers on one queue: every job is processed exactly once.
async fn two_workers_never_process_a_job_twice(b: Backend) {
    let srv = TestServer::start_with(b, MANY_FOR_ONE_USER).await;
    let rx = Receiver::start().await;
    rx.set_delay(Duration::from_millis(20));
    let ids = finished_requests(&srv, &rx.url("/cb"), 40).await;
    let env = [
        ("CIBA_WORKER_CONCURRENCY", "8"),
        ("CIBA_WORKER_POLL_MS", "10"),
    ];
    let (_a, _b) = tokio::join!(srv.worker(&env), srv.worker(&env));
    wait_all_done(&srv, ids.len()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = count_by_id(&rx);
    assert_eq!(seen.len(), ids.len());
    assert!(seen.values().all(|n| *n == 1), "a job ran twice: {seen:?}");
    let done = srv
        .store()
        .read(|c| jobs::list(c, jobs::DONE, 100))
        .unwrap();
    assert!(done.iter().all(|j| j.attempts == 1), "{done:?}");
}

async fn es256_kids(srv: &TestServer) -> Vec<String> {
    let jwks = srv.get("/oidc/v1/jwks").await.body;
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["alg"] == "ES256")
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    serde_json::from_slice::<Value>(&bytes).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Scheduled rotation: the successor is published before it signs; old tokens still verify;
/// new tokens carry the new kid; the old key leaves only once everything it signed expired.
async fn key_rotation_end_to_end(b: Backend) {
    let env = [
        ("CIBA_KEY_REFRESH_INTERVAL", "1"),
        ("CIBA_KEY_PUBLISH_LEAD", "8"),
    ];
    let srv = TestServer::start_with(b, &env).await;
    let (id, secret) = srv.create_client("permissions/client openid", &[]);
    let old_token = srv.access_token(&id, &secret, "permissions/client").await;
    let old_kid = kid_of(&old_token);
    assert_eq!(es256_kids(&srv).await, vec![old_kid.clone()]);

    let mut w = srv.worker(&[("CIBA_KEY_ROTATION_PERIOD", "2")]).await;
    let mut kids = Vec::new();
    for _ in 0..200 {
        kids = es256_kids(&srv).await;
        if kids.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(w.stop(Duration::from_secs(10)));
    assert_eq!(kids.len(), 2, "the successor is published: {kids:?}");
    let new_kid = kids.iter().find(|k| **k != old_kid).unwrap().clone();
    // Published with the configured lead before it signs.
    let row = |kid: String| {
        srv.store()
            .read(keys::all)
            .unwrap()
            .into_iter()
            .find(|k| k.kid == kid)
            .unwrap()
    };
    let successor = row(new_kid.clone());
    assert_eq!(successor.activates_at - successor.created_at, 8);
    // The rest of the lead is set from here (as if the worker had just published it), so a
    // slow machine cannot turn the waits below into a race; the predecessor retires when the
    // successor activates, as the rotation set them (a fast machine used to reach the
    // retirement check below before the worker's own retirement time).
    let activates_at = now() + 4;
    let (k, old_k) = (new_kid.clone(), old_kid.clone());
    srv.store()
        .write(move |c| {
            diesel::sql_query(format!(
                "UPDATE signing_keys SET activates_at = {activates_at} WHERE kid = '{k}'"
            ))
            .execute(c)?;
            diesel::sql_query(format!(
                "UPDATE signing_keys SET retires_at = {activates_at} WHERE kid = '{old_k}'"
            ))
            .execute(c)?;
            Ok(())
        })
        .unwrap();
    // Not yet signing: tokens still come from the old key.
    assert_eq!(
        kid_of(&srv.access_token(&id, &secret, "permissions/client").await),
        old_kid
    );
    // After activation, plus the server's refresh interval (1 s) and a second of slack.
    let wait = (activates_at + 2 - now()).max(0) as u64;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let new_token = srv.access_token(&id, &secret, "permissions/client").await;
    assert_eq!(kid_of(&new_token), new_kid);
    let jwks = srv.get("/oidc/v1/jwks").await.body;
    for t in [&old_token, &new_token] {
        verify_with_jwks(t, &jwks, &srv.base, &srv.base);
    }
    // The old key stays published until everything it signed has expired.
    let rows = srv.store().read(keys::all).unwrap();
    let old = rows.iter().find(|k| k.kid == old_kid).unwrap();
    let old_claims = verify_with_jwks(&old_token, &jwks, &srv.base, &srv.base);
    let (retires, leaves) = (old.retires_at.unwrap(), old.expires_at.unwrap());
    assert!(leaves >= old_claims["exp"].as_i64().unwrap());
    // Anything it could sign up to its retirement (permission tokens: up to an hour) expires first.
    assert!(leaves >= retires + 3_600);
    assert!(old.retires_at.unwrap() <= now() + 1);
    // Once that moment has passed (simulated), the worker removes it and the JWKS drops it.
    let k = old_kid.clone();
    srv.store()
        .write(move |c| {
            diesel::sql_query(format!(
                "UPDATE signing_keys SET expires_at = 5 WHERE kid = '{k}'"
            ))
            .execute(c)?;
            Ok(())
        })
        .unwrap();
    srv.worker_pass(
        &[("CIBA_KEY_ROTATION_PERIOD", "0")],
        ciba_worker::periodic::rotate_keys,
    )
    .await;
    assert!(srv
        .store()
        .read(keys::all)
        .unwrap()
        .iter()
        .all(|k| k.kid != old_kid));
    // The server drops it from the JWKS at its next key reload (every second here); a loaded
    // machine may take a few.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while es256_kids(&srv).await != vec![new_kid.clone()] && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(es256_kids(&srv).await, vec![new_kid]);
}

/// Retention deletes rows older than CIBA_RETENTION, in batches, and nothing younger.
async fn retention_deletes_only_old_rows(b: Backend) {
    let srv = TestServer::start(b).await;
    let rx = Receiver::start().await;
    let ids = finished_requests(&srv, &rx.url("/cb"), 4).await;
    let t = now();
    let old = t - 2 * 86_400;
    let (old_ids, new_ids) = (ids[..2].to_vec(), ids[2..].to_vec());
    let o = old_ids.clone();
    srv.store()
        .write(move |c| {
            for id in &o {
                diesel::sql_query(format!(
                    "UPDATE auth_requests SET created_at = {old} WHERE id = '{id}'"
                ))
                .execute(c)?;
                diesel::sql_query(format!(
                    "UPDATE permissions SET created_at = {old} WHERE auth_req_id = '{id}'"
                ))
                .execute(c)?;
            }
            jtis::record(c, "old-jti", old)?;
            jtis::record(c, "new-jti", t + 60)?;
            // Audit events have a retention of their own (400 days by default): one past it,
            // one only past the request retention.
            let origin = ciba_domain::audit::Origin::default();
            for (object, at) in [("ancient", t - 401 * 86_400), ("two-days", old)] {
                let by = ciba_store::audit::By {
                    actor: ciba_domain::audit::Actor::System,
                    origin: &origin,
                    at_ms: at * 1000,
                };
                ciba_store::audit::record(
                    c,
                    &by,
                    "test.event",
                    Some(object),
                    ciba_domain::audit::Outcome::Ok,
                )?;
            }
            Ok(())
        })
        .unwrap();
    let code = srv.admin(&["enrollment-codes", "create", "--nnin", &nnin(300)]);
    assert!(code["code"].is_string());
    // Deliver the pings, then age two of the finished jobs.
    let w = srv.worker(&[]).await;
    for _ in 0..200 {
        if jobs_in(&srv, jobs::DONE) == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(w);
    let o = old_ids.clone();
    srv.store()
        .write(move |c| {
            for id in &o {
                let job = jobs::ping_job_id(id);
                diesel::sql_query(format!(
                    "UPDATE jobs SET updated_at = {old} WHERE id = '{job}'"
                ))
                .execute(c)?;
            }
            diesel::sql_query(format!("UPDATE enrollment_codes SET expires_at = {old}"))
                .execute(c)?;
            Ok(())
        })
        .unwrap();
    let new_code = srv.admin(&["enrollment-codes", "create", "--nnin", &nnin(300)]);
    assert!(new_code["code"].is_string());

    let retention = [("CIBA_RETENTION", "86400"), ("CIBA_RETENTION_BATCH", "1")];
    let w = srv
        .worker_pass(&retention, ciba_worker::periodic::apply_retention)
        .await;
    let gone = |id: &String| {
        let i = id.clone();
        srv.store()
            .read(move |c| ciba_store::auth_requests::find(c, &i))
            .unwrap()
            .is_none()
    };
    assert!(old_ids.iter().all(gone), "old requests deleted");
    assert!(!new_ids.iter().any(gone), "young requests kept");
    let counts = srv
        .store()
        .read(|c| {
            let perms = ciba_store::schema::permissions::table
                .count()
                .get_result::<i64>(c)?;
            let jtis = ciba_store::schema::used_jtis::table
                .count()
                .get_result::<i64>(c)?;
            Ok((perms, jtis))
        })
        .unwrap();
    assert_eq!(counts.0, 2, "two young permissions remain");
    assert!(counts.1 >= 1);
    let jti_left = srv
        .store()
        .read(|c| {
            ciba_store::schema::used_jtis::table
                .select(ciba_store::schema::used_jtis::jti_key)
                .load::<String>(c)
                .map_err(Into::into)
        })
        .unwrap();
    assert!(
        !jti_left.contains(&"old-jti".to_owned()) && jti_left.contains(&"new-jti".to_owned()),
        "{jti_left:?}"
    );
    let codes = srv
        .store()
        .read(|c| {
            ciba_store::schema::enrollment_codes::table
                .count()
                .get_result::<i64>(c)
                .map_err(Into::into)
        })
        .unwrap();
    assert_eq!(codes, 1, "only the fresh enrollment code remains");
    assert_eq!(
        jobs_in(&srv, jobs::DONE),
        2,
        "only the young finished jobs remain"
    );
    let metrics = w.metrics.render();
    assert!(
        metrics.contains("ciba_worker_retention_deleted_total{table=\"auth_requests\"} 2"),
        "{metrics}"
    );
    // The audit trail outlives the requests it records.
    let trail = srv.admin(&["audit", "list", "--limit", "100000"]);
    let objects: Vec<&str> = trail
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["object_id"].as_str())
        .collect();
    assert!(!objects.contains(&"ancient"), "past the audit retention");
    assert!(
        objects.contains(&"two-days"),
        "past the request retention only"
    );
    for id in &old_ids {
        assert!(
            objects.contains(&id.as_str()),
            "the deleted request's events stay"
        );
    }
}

on_both_backends!(
    killed_worker_redelivers_after_restart,
    graceful_shutdown_releases_jobs_in_hand,
    two_workers_never_process_a_job_twice,
    key_rotation_end_to_end,
    retention_deletes_only_old_rows,
);
