//! Scopes of an authentication (contract §5) and plain `login_hint` requests (CIBA §13).

use crate::support::app::{device_info, nnin, payment_statement, App, Merchant, IPHONE};
use crate::support::{Backend, TestServer};

/// A merchant following the reference document registers only API scopes and `openid`:
/// `profile` and `sub_bankid` are still open to it; `sub_nnin` is not without entitlement.
async fn profile_is_open_and_sub_nnin_needs_entitlement(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, "permissions/client permissions/app2app openid", &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let start = |scope: &'static str| {
        let (srv, m, app) = (&srv, &m, &app);
        async move {
            let created = m
                .register(
                    srv,
                    &payment_statement(),
                    "payment.v1",
                    &app.nnin,
                    "app2app",
                )
                .await;
            m.app_authorize(
                srv,
                &[
                    (
                        "login_hint_token",
                        created["permissionToken"].as_str().unwrap(),
                    ),
                    ("scope", scope),
                    ("device_info", &device_info(IPHONE)),
                ],
            )
            .await
        }
    };
    start("openid sub_nnin")
        .await
        .expect_error(400, "invalid_scope");
    let s = start("openid profile sub_bankid").await;
    s.ok();
    let link_ref = crate::support::app::ref_of(s.str("authorize_uri"));
    app.approve(&srv, &link_ref).await;
    let tokens = m.poll(&srv, s.str("auth_req_id")).await;
    tokens.ok();
    let id_token = tokens.str("id_token");
    let payload = id_token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["given_name"], "Kari");
    assert!(claims.get("sub_nnin").is_none());
}

/// CIBA §13: a plain `login_hint` request with no binding message would put a request on
/// the user's phone that nothing on the merchant's screen matches.
async fn a_plain_login_hint_needs_a_binding_message(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, "permissions/client permissions/ciba openid", &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    m.backchannel_authorize(&srv, &[("login_hint", &app.nnin), ("scope", "openid")])
        .await
        .expect_error(400, "invalid_binding_message");
    assert!(
        app.pending(&srv).await.is_empty(),
        "the request reached the phone"
    );
    m.backchannel_authorize(
        &srv,
        &[
            ("login_hint", &app.nnin),
            ("scope", "openid"),
            ("binding_message", "K7Q-4MX"),
        ],
    )
    .await
    .ok();
}

on_both_backends!(
    profile_is_open_and_sub_nnin_needs_entitlement,
    a_plain_login_hint_needs_a_binding_message,
);
