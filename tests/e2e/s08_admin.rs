//! Contract §8, operator controls: an emergency key revocation (`admin keys revoke KID`)
//! and the audit trail (`admin audit list|export`).
#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::{Duration, Instant};
use support::keys::verify_with_jwks;
use support::{Backend, TestServer};

const SCOPES: &str = "permissions/client openid";

fn kid_of(jwt: &str) -> String {
    jsonwebtoken::decode_header(jwt).unwrap().kid.unwrap()
}

/// A leaked signing key is revoked: it leaves the JWKS, tokens it signed stop working, and a
/// successor signs at once (every process reloads its keys every CIBA_KEY_REFRESH_INTERVAL).
async fn a_revoked_key_leaves_at_once(b: Backend) {
    let srv = TestServer::start_with(b, &[("CIBA_KEY_REFRESH_INTERVAL", "1")]).await;
    let (id, secret) = srv.create_client(SCOPES, &[]);
    let token = srv.access_token(&id, &secret, "permissions/client").await;
    let leaked = kid_of(&token);
    let resource = "/permissions/v1/no-such-permission";
    srv.get_bearer(resource, &token).await.expect(404);

    let out = srv.admin(&["keys", "revoke", &leaked]);
    assert_eq!(out["revoked"], leaked.as_str());
    let successor = out["successor"].as_str().unwrap().to_owned();
    assert_ne!(successor, leaked);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let jwks = srv.get("/oidc/v1/jwks").await.body;
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        if !kids.contains(&leaked.as_str()) {
            assert!(kids.contains(&successor.as_str()), "{kids:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revoked key is still published"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    srv.get_bearer(resource, &token)
        .await
        .expect_error(401, "invalid_client");
    // New tokens are signed by the successor and verify against the JWKS.
    let fresh = srv.access_token(&id, &secret, "permissions/client").await;
    assert_eq!(kid_of(&fresh), successor);
    let jwks = srv.get("/oidc/v1/jwks").await.body;
    verify_with_jwks(&fresh, &jwks, &srv.base, &srv.base);
    srv.get_bearer(resource, &fresh).await.expect(404);

    // A key revoked already, or never known: a clear refusal.
    for kid in [leaked.as_str(), "no-such-kid"] {
        let out = srv.admin_raw(&["keys", "revoke", kid]);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no published key"),
            "{kid}"
        );
    }
    // The other keys were left alone: a grants key still signs.
    let keys = srv.admin(&["keys", "list"]);
    assert!(keys
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["purpose"] == "grants"));

    // A successor published by a rotation but not signing yet is revoked: the key it was to
    // replace retires on schedule, so a new successor is made (the pair keeps a signer).
    let rotated = srv.admin(&["keys", "rotate"]);
    let published: Vec<String> = rotated["published"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let keys = srv.admin(&["keys", "list"]);
    let pending = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| {
            k["purpose"] == "oidc"
                && k["alg"] == "ES256"
                && published.iter().any(|p| k["kid"] == p.as_str())
        })
        .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = srv.admin(&["keys", "revoke", &pending]);
    assert!(out["successor"].is_string(), "{out}");
}

/// One whole flow leaves its events in the audit trail, in order, each with its actor, the
/// caller's address and the request's id, and never an NNIN, a secret or a token.
async fn one_flow_leaves_its_audit_trail(b: Backend) {
    use support::app::{nnin, ref_of, start, App, Merchant, IPHONE, SCOPES};
    let srv = TestServer::start(b).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    // A wrong secret first: refused, and recorded.
    srv.post(
        "/oidc/v1/token",
        Some((&m.id, "wrong")),
        &[("grant_type", "client_credentials")],
    )
    .await
    .expect(401);
    let started = start(&srv, &m, &app.nnin, IPHONE).await;
    started.ok();
    let auth_req_id = started.str("auth_req_id");
    let link_ref = ref_of(started.str("authorize_uri"));
    app.approve(&srv, &link_ref).await.ok();
    let poll = [
        ("grant_type", "urn:openid:params:grant-type:ciba"),
        ("auth_req_id", auth_req_id),
    ];
    let tokens = srv
        .post("/oidc/v1/token", Some((&m.id, &m.secret)), &poll)
        .await;
    tokens.ok();

    let events = srv.admin(&["audit", "list"]);
    let events = events.as_array().unwrap();
    let of = |action: &str| {
        events
            .iter()
            .filter(|e| e["action"] == action)
            .collect::<Vec<_>>()
    };
    // The flow, in order.
    let flow: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .filter(|a| !a.starts_with("admin.") && *a != "token.issued")
        .collect();
    assert_eq!(
        flow,
        [
            "device.enrolled",
            "client.authentication_failed",
            "permission.registered",
            "request.started",
            "request.approved",
            "request.redeemed"
        ]
    );
    for action in ["request.started", "request.approved", "request.redeemed"] {
        assert_eq!(of(action)[0]["object_id"], auth_req_id, "{action}");
    }
    let approved = of("request.approved")[0];
    assert_eq!(
        (
            approved["actor_kind"].as_str(),
            approved["actor_id"].as_str()
        ),
        (Some("device"), Some(app.device_id.as_str()))
    );
    let redeemed = of("request.redeemed")[0];
    assert_eq!(
        (
            redeemed["actor_kind"].as_str(),
            redeemed["actor_id"].as_str()
        ),
        (Some("client"), Some(m.id.as_str()))
    );
    assert_eq!(redeemed["source"], "127.0.0.1");
    assert!(
        redeemed["request_id"]
            .as_str()
            .is_some_and(|r| r.len() == 36),
        "{redeemed}"
    );
    let failed = of("client.authentication_failed")[0];
    assert_eq!(
        (failed["outcome"].as_str(), failed["actor_id"].as_str()),
        (Some("refused"), Some(m.id.as_str()))
    );
    assert!(!of("token.issued").is_empty());
    assert!(of("admin.clients.create")
        .iter()
        .any(|e| e["object_id"] == m.id.as_str()));
    assert!(!of("admin.enrollment_codes.create").is_empty());

    // Nothing secret anywhere in the trail.
    let text = serde_json::to_string(events).unwrap();
    let secrets = [
        app.nnin.as_str(),
        m.secret.as_str(),
        m.token.as_str(),
        tokens.str("access_token"),
        tokens.str("id_token"),
    ];
    for secret in secrets {
        assert!(!text.contains(secret), "the audit trail holds a secret");
    }

    // Filters, and the export for a SIEM: JSON lines.
    let approvals = srv.admin(&["audit", "list", "--action", "request.approved"]);
    assert_eq!(approvals.as_array().unwrap().len(), 1);
    let by_client = srv.admin(&["audit", "list", "--client", &m.id]);
    assert!(by_client
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor_id"] == m.id.as_str()));
    let out = srv.admin_raw(&["audit", "export", "--since", "0"]);
    assert!(out.status.success());
    let lines = String::from_utf8(out.stdout).unwrap();
    let parsed: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(parsed.len() >= events.len());
    let out = srv.admin_raw(&["audit", "list", "--since", "yesterday"]);
    assert!(!out.status.success());
}

/// The key-encryption key is rotated: every stored key is sealed anew under the new key, the
/// servers keep working (before, during with both keys, after with the new alone), and the
/// old key alone no longer opens them.
async fn kek_rotation_keeps_every_key_usable(b: Backend) {
    const NEW_KEK: &str = "Q0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0M=";
    let mut srv = TestServer::start(b).await;
    let (id, secret) = srv.create_client(SCOPES, &[]);
    let token = srv.access_token(&id, &secret, "permissions/client").await;
    let resource = "/permissions/v1/no-such-permission";

    // A new key alone does not open the stored keys; with the old one as the previous, it
    // does (the change-over).
    srv.set_env("CIBA_KEY_ENCRYPTION_KEY", NEW_KEK);
    srv.restart_refused_or_ok(false).await;
    srv.set_env("CIBA_KEY_ENCRYPTION_KEY_PREVIOUS", support::TEST_KEK);
    srv.restart_refused_or_ok(true).await;
    assert_eq!(
        srv.get_bearer(resource, &token).await.status,
        404,
        "old keys open with the previous KEK"
    );

    let out = srv.admin(&["kek", "rotate"]);
    assert_eq!(out["resealed"], 4, "every signing key: {out}");
    // After it the previous key is no longer needed, and the old key no longer enough.
    srv.set_env("CIBA_KEY_ENCRYPTION_KEY_PREVIOUS", "");
    srv.restart().await;
    assert_eq!(
        srv.get_bearer(resource, &token).await.status,
        404,
        "the same keys, resealed"
    );
    srv.set_env("CIBA_KEY_ENCRYPTION_KEY", support::TEST_KEK);
    srv.restart_refused_or_ok(false).await;
    // Rotating again without a previous key: refused, nothing changed.
    srv.set_env("CIBA_KEY_ENCRYPTION_KEY", NEW_KEK);
    let out = srv.admin_raw(&["kek", "rotate"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CIBA_KEY_ENCRYPTION_KEY_PREVIOUS"));
    srv.restart_refused_or_ok(true).await;
    let fresh = srv.access_token(&id, &secret, "permissions/client").await;
    srv.get_bearer(resource, &fresh).await.expect(404);
}

/// A client's lifecycle: shown, changed, its secret rotated with and without a grace,
/// disabled and enabled; each change is what the API does next.
async fn client_lifecycle(b: Backend) {
    let srv = TestServer::start_with(b, &[("CIBA_CLIENT_CACHE_TTL", "0")]).await;
    let (id, old) = srv.create_client(SCOPES, &[]);
    let cc = |scope: &'static str| [("grant_type", "client_credentials"), ("scope", scope)];
    let token = |secret: String, scope: &'static str| {
        let (srv, id) = (&srv, id.clone());
        async move {
            srv.post("/oidc/v1/token", Some((&id, &secret)), &cc(scope))
                .await
        }
    };
    assert_eq!(srv.admin(&["clients", "show", &id])["name"], "Test Shop");

    // A new secret; the old one works for the grace, then stops.
    let rotated = srv.admin(&["clients", "rotate-secret", &id, "--grace", "30"]);
    let new = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(
        token(old.clone(), "openid").await.status,
        200,
        "old secret within the grace"
    );
    assert_eq!(token(new.clone(), "openid").await.status, 200, "new secret");
    srv.advance(Duration::from_secs(31));
    assert_eq!(
        token(old.clone(), "openid").await.status,
        401,
        "old secret after the grace"
    );
    token(new.clone(), "openid").await.ok();
    // Without a grace the old one stops at once.
    let newest = srv.admin(&["clients", "rotate-secret", &id])["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    token(new.clone(), "openid").await.expect(401);
    token(newest.clone(), "openid").await.ok();

    // Changes: the name, and scopes narrowed.
    srv.admin(&[
        "clients",
        "update",
        &id,
        "--name",
        "Renamed Shop",
        "--scope",
        "openid",
    ]);
    let shown = srv.admin(&["clients", "show", &id]);
    assert_eq!(
        (shown["name"].as_str(), shown["scope"].as_str()),
        (Some("Renamed Shop"), Some("openid"))
    );
    token(newest.clone(), "permissions/client")
        .await
        .expect_error(400, "invalid_scope");
    let refused = srv.admin_raw(&["clients", "update", &id, "--scope", "made/up"]);
    assert!(!refused.status.success());

    // Disabled: refused; enabled again: back.
    srv.admin(&["clients", "disable", &id]);
    token(newest.clone(), "openid").await.expect(401);
    srv.admin(&["clients", "enable", &id]);
    token(newest.clone(), "openid").await.ok();

    // A client without a secret has none to rotate; an unknown one is named.
    let out = srv.admin_raw(&["clients", "rotate-secret", "no-such-client"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no client"));
    assert!(!srv
        .admin_raw(&["clients", "rotate-secret", &id, "--grace", "-1"])
        .status
        .success());
    // Every one of these is in the audit trail.
    let trail = srv.admin(&["audit", "list", "--action", "admin.clients.rotate_secret"]);
    assert_eq!(trail.as_array().unwrap().len(), 3);
    assert!(
        !trail.to_string().contains(&newest),
        "no secret in the trail"
    );
}

/// Enrollment controls: codes listed by id (never the code) and revoked; a user has at most
/// CIBA_MAX_DEVICES_PER_USER active devices (a refused code stays unused); devices listed by
/// NNIN without showing it.
async fn enrollment_controls(b: Backend) {
    use support::app::{nnin, App, IPHONE};
    use support::keys::EcKey;
    let srv = TestServer::start_with(b, &[("CIBA_MAX_DEVICES_PER_USER", "2")]).await;
    let hint = nnin(100);
    let first = App::enroll(&srv, &hint, IPHONE).await;
    App::enroll(&srv, &hint, IPHONE).await;
    let enroll_with = |code: String| {
        let srv = &srv;
        async move {
            let key = EcKey::generate("k");
            let body = serde_json::json!({"enrollment_code": code, "public_jwk": key.public_jwk,
                "device_info": {"p": "ios", "ma": "Apple", "mo": "iPhone11,2"}, "name": "third", "key_protection": "hwk"});
            srv.post_json("/app/v1/devices", None, &body).await
        }
    };
    let created = srv.admin(&["enrollment-codes", "create", "--nnin", &hint]);
    let (code, code_id) = (
        created["code"].as_str().unwrap().to_owned(),
        created["id"].as_str().unwrap().to_owned(),
    );
    let r = enroll_with(code.clone()).await;
    r.expect_error(400, "invalid_grant");
    assert!(r.str("error_description").contains("devices"), "{r}");
    // The refused code is still open, listed by its id only.
    let open = srv.admin(&["enrollment-codes", "list"]);
    assert_eq!(open.as_array().unwrap().len(), 1);
    assert_eq!(open[0]["id"], code_id.as_str());
    assert!(!open.to_string().contains(&code));

    // Devices by NNIN; revoking one makes room.
    let devices = srv.admin(&["devices", "list", "--nnin", &hint]);
    assert_eq!(devices.as_array().unwrap().len(), 2);
    assert!(!devices.to_string().contains(&hint));
    srv.admin(&["devices", "revoke", &first.device_id]);
    let enrolled = enroll_with(code.clone()).await;
    enrolled.expect(201);

    // A revoked code enrolls nothing.
    srv.admin(&["devices", "revoke", enrolled.str("device_id")]);
    let created = srv.admin(&["enrollment-codes", "create", "--nnin", &hint]);
    let out = srv.admin(&[
        "enrollment-codes",
        "revoke",
        created["id"].as_str().unwrap(),
    ]);
    assert_eq!(out["status"], "revoked");
    enroll_with(created["code"].as_str().unwrap().to_owned())
        .await
        .expect_error(400, "invalid_grant");
    assert!(srv
        .admin(&["enrollment-codes", "list"])
        .as_array()
        .unwrap()
        .is_empty());
    assert!(!srv
        .admin_raw(&["enrollment-codes", "revoke", "no-such-code"])
        .status
        .success());
}

on_both_backends!(
    client_lifecycle,
    enrollment_controls,
    a_revoked_key_leaves_at_once,
    one_flow_leaves_its_audit_trail,
    kek_rotation_keeps_every_key_usable,
);
