//! What the user sees is exactly what is signed: JSON with a repeated key is refused at any
//! depth, and text shown to the user holds no invisible or reordering characters.

use crate::support::app::{nnin, now, App, Merchant, IPHONE, SCOPES};
use crate::support::keys::EcKey;
use crate::support::{Backend, Reply, TestServer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;

fn b64(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

/// A JWS over exactly `payload` (which may repeat a member, as serde_json cannot write).
fn sign_raw(key: &EcKey, payload: &str) -> String {
    let header = b64(&json!({"alg": "ES256", "typ": "JWT", "kid": key.kid}).to_string());
    let input = format!("{header}.{}", b64(payload));
    let sig = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &key.encoding,
        jsonwebtoken::Algorithm::ES256,
    )
    .unwrap();
    format!("{input}.{sig}")
}

async fn register_raw(srv: &TestServer, m: &Merchant, body: String) -> Reply {
    let resp = srv
        .http
        .post(srv.url("/permissions/v1/"))
        .bearer_auth(&m.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    Reply::read(resp).await
}

fn permission_body(kind: &str, statement: &str, intent: &str, user: &str) -> String {
    let t = now();
    json!({"type": kind, "iat": t, "exp": t + 600, "permission": b64(statement), "intents": [intent],
           "loginHint": [{"scheme": "nnin", "value": user}], "app_callback_uri": crate::support::app::CALLBACK})
    .to_string()
}

/// `{"amount":"1.00","amount":"9999.00"}`: an app keeping the first shows 1.00 while the
/// server keeps the last. Refused wherever the server reads JSON from a client.
async fn repeated_keys_are_refused(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let user = nnin(100);
    let app = App::enroll(&srv, &user, IPHONE).await;
    let ambiguous = r#"{"nonce":"n-1","id":"b","payments":[{"paymentId":"p","amount":"1.00","amount":"9999.00","currency":"NOK","creditorName":"Shop"}]}"#;
    let r = register_raw(
        &srv,
        &m,
        permission_body("payment.v1", ambiguous, "app2app", &user),
    )
    .await;
    r.expect_error(400, "invalid_request");
    assert!(r.str("error_description").contains("amount"));
    // The request body itself.
    let good = permission_body("authentication.v1", r#"{"nonce":"n-2"}"#, "app2app", &user);
    let doubled = good.replacen('{', r#"{"type":"text.v1","#, 1);
    register_raw(&srv, &m, doubled)
        .await
        .expect_error(400, "invalid_request");
    // device_info at app-authorize.
    let created = register_raw(&srv, &m, good).await;
    created.expect(201);
    let pt = created.str("permissionToken");
    let di = b64(r#"{"p":"android","ma":"Apple","mo":"iPhone11,2","p":"ios"}"#);
    m.app_authorize(
        &srv,
        &[
            ("login_hint_token", pt),
            ("scope", "openid"),
            ("device_info", &di),
        ],
    )
    .await
    .expect_error(400, "invalid_request");
    // A device's signed decision that says both.
    let s = crate::support::app::start(&srv, &m, &user, IPHONE).await;
    s.ok();
    let link_ref = crate::support::app::ref_of(s.str("authorize_uri"));
    let view = app
        .get(&srv, &format!("/app/v1/auth-requests/{link_ref}"))
        .await;
    let digest = view.str("permission_digest");
    let payload = format!(
        r#"{{"ref":"{link_ref}","decision":"decline","permission_digest":"{digest}","iat":{},"jti":"j-1","decision":"approve"}}"#,
        now()
    );
    app.send_decision(&srv, &link_ref, &sign_raw(&app.key, &payload))
        .await
        .expect_error(400, "invalid_request");
    let r = m.poll(&srv, s.str("auth_req_id")).await;
    assert_eq!(r.error(), "authorization_pending", "{r}");
}

/// Bidi overrides, zero-width characters and separators make the screen say something else
/// than the bytes: refused (never rewritten) in every text shown to the user.
async fn spoofing_characters_are_refused(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, &format!("{SCOPES} permissions/text"), &[]).await;
    let user = nnin(100);
    App::enroll(&srv, &user, IPHONE).await;
    for binding in [
        "Pay \u{202E}00.1",
        "K7Q\u{200B}4MX",
        "a\u{2028}b",
        "x\u{2066}y\u{2069}",
    ] {
        let r = m
            .backchannel_authorize(
                &srv,
                &[
                    ("login_hint", &user),
                    ("scope", "openid"),
                    ("binding_message", binding),
                ],
            )
            .await;
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_binding_message"),
            "{binding:?}: {r}"
        );
    }
    let texts = [
        (
            "text.v1",
            json!({"nonce": "t1", "id": "i", "text": "Transfer 100\u{200B}0 NOK"}),
        ),
        (
            "text.v1",
            json!({"nonce": "t2", "id": "i", "text": "Line\u{2029}break"}),
        ),
        (
            "payment.v1",
            json!({"nonce": "t3", "id": "i", "payments": [{"paymentId": "p", "amount": "1.00",
            "currency": "NOK", "creditorName": "Good Shop\u{202E}evil"}]}),
        ),
        (
            "payment.v1",
            json!({"nonce": "t4", "id": "i", "payments": [{"paymentId": "p", "amount": "1.00",
            "currency": "NOK", "creditorName": "Two\nlines"}]}),
        ),
    ];
    for (kind, statement) in texts {
        let r = register_raw(
            &srv,
            &m,
            permission_body(kind, &statement.to_string(), "ciba", &user),
        )
        .await;
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_request"),
            "{statement}: {r}"
        );
    }
    // A plain multi-line text still works.
    let plain = json!({"nonce": "t5", "id": "i", "text": "Sign this\nplease"}).to_string();
    assert_eq!(
        register_raw(&srv, &m, permission_body("text.v1", &plain, "ciba", &user))
            .await
            .status,
        201
    );
    // The client's name is shown beside the request: the operator cannot register a spoof.
    let out = srv.admin_raw(&[
        "clients",
        "create",
        "--name",
        "Bank\u{202E}knaB",
        "--scope",
        "openid",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("U+202E"));
}

on_both_backends!(repeated_keys_are_refused, spoofing_characters_are_refused);
