//! A second phone cannot read an App2App request, and 401 answers do not tell which clients
//! or devices exist.

use crate::support::app::{nnin, now, start, App, Merchant, IPHONE, SCOPES};
use crate::support::keys::EcKey;
use crate::support::{with_assertion, Backend, TestServer};
use serde_json::json;

const PIXEL: (&str, &str, &str) = ("android", "Google", "Pixel 8");

/// The request matched the iPhone at app-authorize: the user's other phone may neither see
/// what is asked nor decide it.
async fn only_the_matched_phone_sees_the_request(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let user = nnin(100);
    let iphone = App::enroll(&srv, &user, IPHONE).await;
    let other = App::enroll_existing(&srv, &user, iphone.sub.clone(), PIXEL).await;
    let s = start(&srv, &m, &user, IPHONE).await;
    s.ok();
    let link_ref = crate::support::app::ref_of(s.str("authorize_uri"));
    let path = format!("/app/v1/auth-requests/{link_ref}");
    let body = other.get(&srv, &path).await;
    assert!(body.expect(403).get("statement").is_none());
    iphone.get(&srv, &path).await.ok();
}

/// Probing with made-up ids: an unknown client and a client without keys, an unknown device
/// and a revoked one, each get the same answer.
async fn failures_do_not_tell_what_exists(b: Backend) {
    let srv = TestServer::start(b).await;
    let (secret_client, _) = srv.create_client("permissions/client", &[]);
    let key = EcKey::generate("k1");
    let t = now();
    let mut answers = Vec::new();
    for client_id in [secret_client.as_str(), "no-such-client"] {
        let assertion = key.sign(&json!({"iss": client_id, "sub": client_id, "aud": srv.base,
                                         "iat": t, "exp": t + 60, "jti": format!("j-{client_id}")}));
        let r = srv
            .post(
                "/oidc/v1/token",
                None,
                &with_assertion(&assertion, &[("grant_type", "client_credentials")]),
            )
            .await;
        answers.push((r.status, r.body));
    }
    assert_eq!(answers[0].0, 401);
    assert_eq!(answers[0], answers[1]);

    let user = nnin(100);
    let revoked = App::enroll(&srv, &user, IPHONE).await;
    srv.admin(&["devices", "revoke", &revoked.device_id]);
    let unknown = App {
        device_id: "no-such-device".into(),
        key: EcKey::generate("no-such-device"),
        nnin: user.clone(),
        sub: revoked.sub.clone(),
    };
    let a = revoked
        .get(&srv, "/app/v1/auth-requests?status=pending")
        .await;
    let b = unknown
        .get(&srv, "/app/v1/auth-requests?status=pending")
        .await;
    assert_eq!(a.status, 401);
    assert_eq!((a.status, a.body), (b.status, b.body));
}

/// A phone stolen and revoked after the server last read it (its view of the request, the
/// device kept in memory for the decision): the thief's signed approval is refused, the
/// request stays pending and the merchant gets no token.
async fn a_device_revoked_after_it_was_read_cannot_decide(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(101), IPHONE).await;
    let s = start(&srv, &m, &app.nnin, IPHONE).await;
    s.ok();
    let (id, link_ref) = (
        s.str("auth_req_id"),
        crate::support::app::ref_of(s.str("authorize_uri")),
    );
    let view = app
        .get(&srv, &format!("/app/v1/auth-requests/{link_ref}"))
        .await;
    let digest = view
        .ok()
        .get("permission_digest")
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    srv.admin(&["devices", "revoke", &app.device_id]);

    // Refused by its checks too (not this permission's digest): the answer is still 401.
    let wrong = app.sign_decision(&link_ref, "approve", "not-the-digest");
    let r = app.send_decision(&srv, &link_ref, &wrong).await;
    assert_eq!((r.status, r.error()), (401, "invalid_token"), "{r}");
    let signed = app.sign_decision(&link_ref, "approve", &digest);
    let r = app.send_decision(&srv, &link_ref, &signed).await;
    assert_eq!((r.status, r.error()), (401, "invalid_token"), "{r}");
    m.poll(&srv, id)
        .await
        .expect_error(400, "authorization_pending");
}

on_both_backends!(
    only_the_matched_phone_sees_the_request,
    failures_do_not_tell_what_exists,
    a_device_revoked_after_it_was_read_cannot_decide
);
