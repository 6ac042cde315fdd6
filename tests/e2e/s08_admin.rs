//! Contract §8, operator commands that change what the API does: an emergency key
//! revocation (`admin keys revoke KID`).
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
    assert_eq!(srv.get_bearer(resource, &token).await.0, 404);

    let out = srv.admin(&["keys", "revoke", &leaked]);
    assert_eq!(out["revoked"], leaked.as_str());
    let successor = out["successor"].as_str().unwrap().to_owned();
    assert_ne!(successor, leaked);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, jwks) = srv.get_json("/oidc/v1/jwks").await;
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
    let (status, body) = srv.get_bearer(resource, &token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    // New tokens are signed by the successor and verify against the JWKS.
    let fresh = srv.access_token(&id, &secret, "permissions/client").await;
    assert_eq!(kid_of(&fresh), successor);
    let (_, jwks) = srv.get_json("/oidc/v1/jwks").await;
    verify_with_jwks(&fresh, &jwks, &srv.base, &srv.base);
    assert_eq!(srv.get_bearer(resource, &fresh).await.0, 404);

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
}

on_both_backends!(a_revoked_key_leaves_at_once);
