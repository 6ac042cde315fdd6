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

on_both_backends!(
    only_the_matched_phone_sees_the_request,
    failures_do_not_tell_what_exists
);
