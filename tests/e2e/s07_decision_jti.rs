//! Issue 21: the decision route spends its device JWT's jti in the same write as the
//! decision (one commit). A device JWT is still good for one call whatever that call's
//! answer: refused decisions spend it too, a replayed one is refused as replayed (401) on
//! every route, and of two calls racing with one JWT exactly one gets through.
#![allow(clippy::unwrap_used)]

use crate::support;

use serde_json::{json, Value};
use support::app::*;
use support::{Backend, Reply, TestServer};

/// A pending request for `app` and its ref and permission digest (viewed once).
pub(crate) async fn pending_request(
    srv: &TestServer,
    m: &Merchant,
    app: &App,
) -> (String, String, String) {
    let started = start(srv, m, &app.nnin, IPHONE).await;
    started.ok();
    let link_ref = ref_of(started.str("authorize_uri"));
    let view = app
        .get(srv, &format!("/app/v1/auth-requests/{link_ref}"))
        .await;
    let digest = view.str("permission_digest").to_owned();
    (started.str("auth_req_id").to_owned(), link_ref, digest)
}

async fn post_decision(srv: &TestServer, device_jwt: &str, link_ref: &str, body: &Value) -> Reply {
    let path = format!("/app/v1/auth-requests/{link_ref}/decision");
    srv.post_json(&path, Some(device_jwt), body).await
}

fn assert_replayed(r: &Reply, what: &str) {
    assert_eq!((r.status, r.error()), (401, "invalid_token"), "{what}: {r}");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.contains("invalid_token")),
        "{what}: {r}"
    );
}

async fn a_device_jwt_is_spent_by_any_decision(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(400), IPHONE).await;
    let (id, link_ref, digest) = pending_request(&srv, &m, &app).await;
    let approve = |l: &str, d: &str| json!({"signed_decision": app.sign_decision(l, "approve", d)});

    // Refused before its write (no signed decision; a decision for another ref): the device
    // JWT is spent all the same, here and on the other routes.
    let jwt = app.device_jwt(&srv);
    post_decision(&srv, &jwt, &link_ref, &json!({}))
        .await
        .expect_error(400, "invalid_request");
    let again = post_decision(&srv, &jwt, &link_ref, &approve(&link_ref, &digest)).await;
    assert_replayed(&again, "after a refused decision");
    let jwt = app.device_jwt(&srv);
    post_decision(&srv, &jwt, &link_ref, &approve("someref", &digest))
        .await
        .expect_error(400, "invalid_request");
    assert_replayed(
        &srv.get_bearer("/app/v1/auth-requests", &jwt).await,
        "at another route after a refused decision",
    );
    // Not even a body that is no JSON leaves it usable.
    let jwt = app.device_jwt(&srv);
    let path = srv.url(&format!("/app/v1/auth-requests/{link_ref}/decision"));
    let resp = srv
        .http
        .post(path)
        .bearer_auth(&jwt)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_replayed(
        &srv.get_bearer("/app/v1/auth-requests", &jwt).await,
        "after a malformed body",
    );

    // Spent at another route first: a valid decision with it is refused, and decides nothing.
    let jwt = app.device_jwt(&srv);
    srv.get_bearer("/app/v1/auth-requests", &jwt).await.ok();
    let r = post_decision(&srv, &jwt, &link_ref, &approve(&link_ref, &digest)).await;
    assert_replayed(&r, "spent at another route");
    m.poll(&srv, &id)
        .await
        .expect_error(400, "authorization_pending");

    // Accepted once; the same JWT carrying another valid decision is refused.
    let jwt = app.device_jwt(&srv);
    post_decision(&srv, &jwt, &link_ref, &approve(&link_ref, &digest))
        .await
        .ok();
    let (id2, link_ref2, digest2) = pending_request(&srv, &m, &app).await;
    let r = post_decision(&srv, &jwt, &link_ref2, &approve(&link_ref2, &digest2)).await;
    assert_replayed(&r, "after a recorded decision");
    assert_replayed(
        &srv.get_bearer("/app/v1/auth-requests", &jwt).await,
        "at another route after a recorded decision",
    );
    m.poll(&srv, &id2)
        .await
        .expect_error(400, "authorization_pending");
    m.poll(&srv, &id).await.ok();

    // Two decisions racing with one JWT (on two requests): exactly one is recorded.
    let (id3, link_ref3, digest3) = pending_request(&srv, &m, &app).await;
    let jwt = app.device_jwt(&srv);
    let (body2, body3) = (approve(&link_ref2, &digest2), approve(&link_ref3, &digest3));
    let (a, b) = tokio::join!(
        post_decision(&srv, &jwt, &link_ref2, &body2),
        post_decision(&srv, &jwt, &link_ref3, &body3),
    );
    let statuses = [a.status, b.status];
    assert!(
        statuses.contains(&200) && statuses.contains(&401),
        "{a} / {b}"
    );
    let redeemed = [
        m.poll(&srv, &id2).await.status,
        m.poll(&srv, &id3).await.status,
    ];
    assert_eq!(
        redeemed.iter().filter(|s| **s == 200).count(),
        1,
        "{redeemed:?}"
    );
}

on_both_backends!(a_device_jwt_is_spent_by_any_decision);
