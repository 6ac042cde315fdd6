//! Issue 8 end to end: a real `ciba-worker` beside a real `ciba-api`, pinging a local
//! receiver. Expiry, retries after 500s and downtime, final 4xx, redirects never followed,
//! dead letters retried from the admin CLI.
#![allow(clippy::unwrap_used)]

mod support;

use ciba_store::auth_requests as requests;
use ciba_store::jobs;
use diesel::RunQueryDsl;
use serde_json::json;
use std::time::Duration;
use support::app::{App, Merchant};
use support::worker::{ping_client, DownPort, Receiver};
use support::{Backend, TestServer};

pub const FAST_RETRIES: &[(&str, &str)] = &[
    ("CIBA_JOB_BACKOFF_BASE", "1"),
    ("CIBA_JOB_MAX_ATTEMPTS", "4"),
    ("CIBA_EXPIRY_INTERVAL", "1"),
];

/// bc-authorize for the app's user; returns (auth_req_id, link ref).
async fn start(srv: &TestServer, m: &Merchant, app: &App, token: &str) -> (String, String) {
    let (status, body) = m
        .bc_authorize(
            srv,
            &[
                ("login_hint", &app.nnin),
                ("scope", "openid"),
                ("client_notification_token", token),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["auth_req_id"].as_str().unwrap().to_owned();
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

async fn approval_and_expiry_are_pinged(b: Backend) {
    let srv = TestServer::start(b).await;
    let rx = Receiver::start().await;
    let (m, app) = ping_client(&srv, &rx.url("/cb"), 100).await;
    let (approved, link) = start(&srv, &m, &app, "tok-approved").await;
    let (expiring, _) = start(&srv, &m, &app, "tok-expiring").await;
    // A poll-mode client's outcomes queue nothing.
    let poller = Merchant::new(&srv, "permissions/ciba openid", &[]).await;
    let (status, polled) = poller
        .bc_authorize(&srv, &[("login_hint", &app.nnin), ("scope", "openid")])
        .await;
    assert_eq!(status, 200, "{polled}");

    let (status, body) = app.decide(&srv, &link, "approve").await;
    assert_eq!(status, 200, "{body}");
    // The outcome and its job committed together: the job exists before any worker runs.
    assert_eq!(job(&srv, &approved).status, jobs::QUEUED);
    // Let the other two requests run out of time while no worker is running.
    let ids = [
        expiring.clone(),
        polled["auth_req_id"].as_str().unwrap().to_owned(),
    ];
    srv.store()
        .write(move |c| {
            for id in &ids {
                diesel::sql_query(format!(
                    "UPDATE auth_requests SET expires_at = 1 WHERE id = '{id}'"
                ))
                .execute(c)?;
            }
            Ok(())
        })
        .unwrap();

    let w = srv.worker(FAST_RETRIES).await;
    rx.wait_for(Duration::from_secs(15), |r| r.len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
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
    assert_eq!(wait_job(&srv, &approved, jobs::DONE).await.attempts, 1);
    let metrics = w.metrics(&srv).await;
    assert!(
        metrics.contains("ciba_worker_jobs_processed_total{kind=\"ping\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ciba_worker_requests_expired_total 2"),
        "{metrics}"
    );
    // Ping clients may still poll: the approved request is redeemed as usual.
    let (status, _, tokens) = srv
        .post_form(
            "/oidc/v1/token",
            Some((&m.id, &m.secret)),
            &[
                ("grant_type", "urn:openid:params:grant-type:ciba"),
                ("auth_req_id", &approved),
            ],
        )
        .await;
    assert_eq!(status, 200, "{tokens}");
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
        assert_eq!(app.decide(&srv, &link, "decline").await.0, 200);
        ids.push(id);
    }
    let w = srv.worker(FAST_RETRIES).await;
    // 500, 503, then 200: delivered on the third attempt.
    assert_eq!(wait_job(&srv, &ids[0], jobs::DONE).await.attempts, 3);
    assert_eq!(rx.received_on("/flaky").len(), 3);
    // 401 is final: one request, then the dead letters.
    let dead = wait_job(&srv, &ids[1], jobs::DEAD).await;
    assert_eq!(dead.attempts, 1);
    assert_eq!(dead.last_error.as_deref(), Some("HTTP 401"));
    // A redirect is never followed, and is final.
    let moved = wait_job(&srv, &ids[2], jobs::DEAD).await;
    assert_eq!(moved.attempts, 1);
    assert!(moved.last_error.unwrap().contains("302"));
    // The receiver that was down comes up; the retry reaches it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(job(&srv, &ids[3]).attempts >= 1);
    let late = Receiver::start_on(down_port).await;
    assert_eq!(wait_job(&srv, &ids[3], jobs::DONE).await.status, jobs::DONE);
    assert_eq!(late.received_on("/later").len(), 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
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
    assert_eq!(wait_job(&srv, &ids[1], jobs::DONE).await.attempts, 1);
    assert_eq!(rx.received_on("/denied").len(), 2);
    let out = srv.admin_raw(&["jobs", "retry", &jobs::ping_job_id(&ids[1])]);
    assert!(!out.status.success(), "retrying a delivered job must fail");
    let metrics = w.metrics(&srv).await;
    assert!(
        metrics.contains("ciba_worker_jobs_failed_total{kind=\"ping\",outcome=\"dead\"} 2"),
        "{metrics}"
    );
}

on_both_backends!(
    approval_and_expiry_are_pinged,
    retries_after_500s_and_downtime_but_not_after_4xx_or_redirects,
);
