//! Issue 21: a permission registered through this process names a user whose phones it read
//! with the registration, so app-authorize claims the token and starts the request in one
//! write, with no read. That write checks the user's active phones are still those the
//! request was matched against: a phone enrolled or revoked in between takes the way that
//! claims the token first and reads the phones again, and answers as it always did.
#![allow(clippy::unwrap_used)]

use crate::support;

use support::app::*;
use support::{Backend, Reply, TestServer};

const PIXEL: (&str, &str, &str) = ("android", "Google", "Pixel 8");

/// A server whose start limits are high enough to be counted in runs: after the first
/// start, from memory (on SQLite a count is a write of its own).
async fn counting_in_runs(b: Backend) -> TestServer {
    let high = "1000000/60";
    let limits = [
        ("CIBA_LIMIT_USER_STARTS", high),
        ("CIBA_LIMIT_CLIENT_STARTS", high),
    ];
    TestServer::start_with(b, &limits).await
}

/// A payment permission for `user`, registered; its token.
async fn registered(srv: &TestServer, m: &Merchant, user: &str) -> String {
    let created = m
        .register(srv, &payment_statement(), "payment.v1", user, "app2app")
        .await;
    created["permissionToken"].as_str().unwrap().to_owned()
}

async fn authorize(
    srv: &TestServer,
    m: &Merchant,
    token: &str,
    phone: (&str, &str, &str),
) -> Reply {
    let info = device_info(phone);
    let fields = [
        ("login_hint_token", token),
        ("scope", "openid profile"),
        ("device_info", info.as_str()),
    ];
    m.app_authorize(srv, &fields).await
}

async fn app_authorize_after_registration_here_writes_once(b: Backend) {
    let srv = counting_in_runs(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(500), IPHONE).await;
    start(&srv, &m, &app.nnin, IPHONE).await.ok();
    let token = registered(&srv, &m, &app.nnin).await;
    let (started, reads, writes) = srv.trips_of(authorize(&srv, &m, &token, IPHONE)).await;
    started.ok();
    assert_eq!(
        (reads, writes),
        (0.0, 1.0),
        "the claim and the start in one write"
    );
    // The token is used up: a second call is refused, and the request is approved as usual.
    authorize(&srv, &m, &token, IPHONE)
        .await
        .expect_error(400, "invalid_request");
    let link_ref = ref_of(started.str("authorize_uri"));
    app.approve(&srv, &link_ref).await.ok();
    m.poll(&srv, started.str("auth_req_id")).await.ok();
}

/// The same for a CIBA start (bc-authorize with the permission token): one write.
async fn bc_authorize_after_registration_here_writes_once(b: Backend) {
    let srv = counting_in_runs(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(530), IPHONE).await;
    start(&srv, &m, &app.nnin, IPHONE).await.ok();
    let token = m.ciba_permission_token(&srv, &app.nnin).await;
    let fields = [("login_hint_token", token.as_str()), ("scope", "openid")];
    let (started, reads, writes) = srv.trips_of(m.backchannel_authorize(&srv, &fields)).await;
    started.ok();
    assert_eq!(
        (reads, writes),
        (0.0, 1.0),
        "the claim and the start in one write"
    );
    m.backchannel_authorize(&srv, &fields)
        .await
        .expect_error(400, "invalid_request");
    let id = started.str("auth_req_id");
    let pending = app.pending(&srv).await;
    let link_ref = pending
        .iter()
        .find(|p| p["flow"] == "ciba")
        .and_then(|p| p["ref"].as_str())
        .unwrap()
        .to_owned();
    app.approve(&srv, &link_ref).await.ok();
    m.poll(&srv, id).await.ok();
}

/// The phone that matches was enrolled after the registration: found all the same.
async fn a_phone_enrolled_after_registration_is_matched(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let user = nnin(510);
    let pixel = App::enroll(&srv, &user, PIXEL).await;
    let token = registered(&srv, &m, &user).await;
    let iphone = App::enroll_existing(&srv, &user, pixel.sub.clone(), IPHONE).await;
    let started = authorize(&srv, &m, &token, IPHONE).await;
    started.ok();
    iphone
        .approve(&srv, &ref_of(started.str("authorize_uri")))
        .await
        .ok();
}

/// The user's only phone was revoked (stolen) after the registration: the request is not
/// started against it, and the token is used up by the refusal as before.
async fn a_phone_revoked_after_registration_is_not_started_against(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(520), IPHONE).await;
    let token = registered(&srv, &m, &app.nnin).await;
    srv.admin(&["devices", "revoke", &app.device_id]);
    authorize(&srv, &m, &token, IPHONE)
        .await
        .expect_error(400, "unknown_user_id");
    authorize(&srv, &m, &token, IPHONE)
        .await
        .expect_error(400, "invalid_request");
}

/// The user's start limit refuses a start from a permission registered here: the token is
/// used up all the same, as when it is claimed before the limit is counted.
async fn a_start_refused_by_the_user_limit_uses_the_token(b: Backend) {
    let srv = TestServer::start_with(b, &[("CIBA_LIMIT_USER_STARTS", "1/60")]).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(540), IPHONE).await;
    start(&srv, &m, &app.nnin, IPHONE).await.ok();
    let token = registered(&srv, &m, &app.nnin).await;
    authorize(&srv, &m, &token, IPHONE)
        .await
        .expect_error(429, "too_many_requests");
    let again = authorize(&srv, &m, &token, IPHONE).await;
    assert_eq!(
        (again.status, again.error()),
        (400, "invalid_request"),
        "{again}"
    );
}

on_both_backends!(
    a_start_refused_by_the_user_limit_uses_the_token,
    app_authorize_after_registration_here_writes_once,
    bc_authorize_after_registration_here_writes_once,
    a_phone_enrolled_after_registration_is_matched,
    a_phone_revoked_after_registration_is_not_started_against
);
