//! Assurance claims that something backs: `amr` never claims more than the device was
//! enrolled with, eIDAS high needs a hardware-bound key and user verification, `acr_values`
//! are honoured up front, and the operator can require a hardware-bound key at enrollment.

use crate::support::app::{
    create_user, device_info, nnin, now, payment_statement, App, Merchant, CALLBACK, IPHONE, SCOPES,
};
use crate::support::{Backend, Reply, TestServer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

const HIGH: &str = "http://eidas.europa.eu/LoA/high";

/// A user whose app enrolled a software key.
async fn software_app(srv: &TestServer, user: &str) -> App {
    let sub = create_user(srv, user).unwrap();
    App::enroll_key(srv, user, sub, IPHONE, "swk").await
}

/// Register a payment permission at `loa` and start App2App.
async fn start_at(
    srv: &TestServer,
    m: &Merchant,
    user: &str,
    loa: &str,
    extra: &[(&str, &str)],
) -> Reply {
    let t = now();
    let body = json!({"type": "payment.v1", "loa": loa, "iat": t, "exp": t + 900, "permission": payment_statement(),
                      "intents": ["app2app"], "loginHint": [{"scheme": "nnin", "value": user}], "app_callback_uri": CALLBACK});
    let created = srv
        .post_json("/permissions/v1/", Some(&m.token), &body)
        .await;
    created.expect(201);
    let mut form = vec![
        (
            "login_hint_token",
            created.str("permissionToken").to_owned(),
        ),
        ("scope", "openid".to_owned()),
        ("device_info", device_info(IPHONE)),
    ];
    form.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    m.app_authorize(srv, &fields).await
}

async fn decide_with(srv: &TestServer, app: &App, link_ref: &str, amr: Value) -> Reply {
    let view = app
        .get(srv, &format!("/app/v1/auth-requests/{link_ref}"))
        .await;
    let digest = view.str("permission_digest");
    let signed = app.key.sign(
        &json!({"ref": link_ref, "decision": "approve", "permission_digest": digest,
                                      "iat": now(), "jti": crate::support::app::jti(), "amr": amr}),
    );
    app.send_decision(srv, link_ref, &signed).await
}

fn id_token_claims(tokens: &Value) -> Value {
    let payload = tokens["id_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// An app with a software key says `hwk`: refused. Saying what it is works.
async fn amr_cannot_claim_more_than_the_device(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = software_app(&srv, &nnin(100)).await;
    let s = start_at(&srv, &m, &app.nnin, "sub", &[]).await;
    s.ok();
    let link_ref = crate::support::app::ref_of(s.str("authorize_uri"));
    decide_with(&srv, &app, &link_ref, json!(["hwk", "face"]))
        .await
        .expect_error(400, "invalid_request");
    decide_with(&srv, &app, &link_ref, json!(["swk", "face"]))
        .await
        .ok();
    let tokens = m.poll(&srv, s.str("auth_req_id")).await;
    let claims = id_token_claims(tokens.ok());
    assert_eq!(claims["amr"], json!(["swk", "face"]));
    assert_eq!(claims["acr"], "http://eidas.europa.eu/LoA/substantial");
}

/// eIDAS high: refused up front for a user with only a software key; with a hardware key,
/// an approval must show hwk and user verification.
async fn loa_high_needs_a_hardware_key_and_verification(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let soft = software_app(&srv, &nnin(100)).await;
    let r = start_at(&srv, &m, &soft.nnin, "high", &[]).await;
    r.expect_error(400, "invalid_request");
    assert!(r.str("error_description").contains(HIGH));
    // acr_values asking for high are honoured the same way for a substantial permission.
    start_at(&srv, &m, &soft.nnin, "sub", &[("acr_values", HIGH)])
        .await
        .expect_error(400, "invalid_request");

    let hard = App::enroll(&srv, &nnin(200), IPHONE).await;
    let s = start_at(&srv, &m, &hard.nnin, "high", &[]).await;
    s.ok();
    let link_ref = crate::support::app::ref_of(s.str("authorize_uri"));
    decide_with(&srv, &hard, &link_ref, json!(["hwk"]))
        .await
        .expect_error(400, "invalid_request");
    decide_with(&srv, &hard, &link_ref, json!(["hwk", "pin"]))
        .await
        .ok();
    let tokens = m.poll(&srv, s.str("auth_req_id")).await;
    assert_eq!(id_token_claims(tokens.ok())["acr"], HIGH);
}

/// The operator's code requires a hardware-bound key: an app with a software key cannot use
/// it (and does not spend it).
async fn an_enrollment_code_can_require_a_hardware_key(b: Backend) {
    let srv = TestServer::start(b).await;
    let user = nnin(100);
    create_user(&srv, &user).unwrap();
    let code = srv.admin(&[
        "enrollment-codes",
        "create",
        "--nnin",
        &user,
        "--require-hwk",
    ]);
    assert_eq!(code["require_hwk"], true);
    let enroll = |protection: &'static str| {
        let body = json!({"enrollment_code": code["code"], "device_info": {"p": "ios", "ma": "Apple", "mo": "iPhone11,2"},
                          "public_jwk": crate::support::keys::EcKey::generate("k").public_jwk, "key_protection": protection});
        let srv = &srv;
        async move { srv.post_json("/app/v1/devices", None, &body).await }
    };
    enroll("swk").await.expect_error(400, "invalid_grant");
    enroll("hwk").await.expect(201);
    enroll("sparkly").await.expect_error(400, "invalid_request");
}

on_both_backends!(
    amr_cannot_claim_more_than_the_device,
    loa_high_needs_a_hardware_key_and_verification,
    an_enrollment_code_can_require_a_hardware_key,
);
