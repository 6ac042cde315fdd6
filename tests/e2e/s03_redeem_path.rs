//! Issue 21: the poll that follows a decision made through this process reads the request
//! at once instead of first going through the poll batch (which only records polls of
//! pending requests), and an approved one is redeemed by one statement that returns what its
//! tokens are made of. The hint picks the path, never the answer: another client still gets
//! `invalid_grant`, the owner still redeems exactly once, a declined request is denied.
#![allow(clippy::unwrap_used)]

use crate::support;

use support::app::*;
use support::{Backend, TestServer};

/// Polls that went through the batch so far (the batch-size histogram's sum).
async fn batched_polls(srv: &TestServer) -> f64 {
    let text = srv.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix("ciba_poll_batch_size_sum "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

/// A new request of `m` for `app`'s user, answered by the app (`approve` or `decline`).
async fn decided(srv: &TestServer, m: &Merchant, app: &App, answer: &str) -> String {
    let started = start(srv, m, &app.nnin, IPHONE).await;
    started.ok();
    let link_ref = ref_of(started.str("authorize_uri"));
    match answer {
        "approve" => app.approve(srv, &link_ref).await.ok(),
        _ => app.decline(srv, &link_ref).await.ok(),
    };
    started.str("auth_req_id").to_owned()
}

async fn a_poll_after_a_decision_here_skips_the_batch(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let other = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(300), IPHONE).await;
    let started = start(&srv, &m, &app.nnin, IPHONE).await;
    started.ok();
    let id = started.str("auth_req_id").to_owned();

    // While pending, a poll is recorded in the batch.
    let before = batched_polls(&srv).await;
    m.poll(&srv, &id)
        .await
        .expect_error(400, "authorization_pending");
    assert_eq!(
        batched_polls(&srv).await,
        before + 1.0,
        "a pending poll is batched"
    );

    app.approve(&srv, &ref_of(started.str("authorize_uri")))
        .await
        .ok();
    // Another client's poll of the decided request learns nothing (and uses up the hint).
    other
        .poll(&srv, &id)
        .await
        .expect_error(400, "invalid_grant");
    let after_other = batched_polls(&srv).await;
    assert_eq!(after_other, before + 1.0, "the hinted poll was not batched");
    // The owner's poll now takes the batch first (no hint left), and still redeems once.
    m.poll(&srv, &id).await.ok();
    assert_eq!(batched_polls(&srv).await, after_other + 1.0);
    m.poll(&srv, &id).await.expect_error(400, "invalid_grant");

    // A second request: its owner's first poll after the decision skips the batch.
    let id = decided(&srv, &m, &app, "approve").await;
    let before = batched_polls(&srv).await;
    let tokens = m.poll(&srv, &id).await;
    tokens.ok();
    assert!(!tokens.str("id_token").is_empty());
    assert_eq!(
        batched_polls(&srv).await,
        before,
        "redeemed without the batch"
    );
    m.poll(&srv, &id).await.expect_error(400, "invalid_grant");

    // Declined here: the hinted poll redeems nothing and is told so.
    let id = decided(&srv, &m, &app, "decline").await;
    m.poll(&srv, &id).await.expect_error(400, "access_denied");
    m.poll(&srv, &id).await.expect_error(400, "access_denied");
}

on_both_backends!(a_poll_after_a_decision_here_skips_the_batch);
