//! Issue 2 over real HTTP on SQLite and PostgreSQL: client authentication at the token
//! endpoint: wrong credentials and scopes, private_key_jwt rules, access-token assertions.
#![allow(clippy::unwrap_used)]

use crate::support;

use serde_json::json;
use support::app::{jti, now};
use support::keys::{raw_jwt, EcKey};
use support::{Backend, TestServer, ASSERTION_TYPE};

const MERCHANT_SCOPES: &str = "permissions/client permissions/app2app openid profile";

async fn bad_credentials_and_scopes_are_refused(b: Backend) {
    let srv = TestServer::start_with(b, &[("CIBA_CLIENT_CACHE_TTL", "1")]).await;
    let (id, secret) = srv.create_client("permissions/client openid", &[]);
    let cc = [("grant_type", "client_credentials")];
    for (cid, sec) in [
        (id.as_str(), "wrong-secret"),
        ("no-such-client", secret.as_str()),
    ] {
        let r = srv.post("/oidc/v1/token", Some((cid, sec)), &cc).await;
        r.expect_error(401, "invalid_client");
        assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
    }
    let r = srv.post("/oidc/v1/token", None, &cc).await;
    r.expect_error(401, "invalid_client");
    assert!(r.headers.contains_key("www-authenticate"));
    srv.post(
        "/oidc/v1/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", "nope"),
        ],
    )
    .await
    .expect_error(401, "invalid_client");

    for scope in [
        "permissions/app2app",
        "permissions/client profile",
        "made/up",
    ] {
        let r = srv
            .post(
                "/oidc/v1/token",
                Some((&id, &secret)),
                &[("grant_type", "client_credentials"), ("scope", scope)],
            )
            .await;
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_scope"),
            "{scope}: {r}"
        );
    }
    // a disabled client can no longer authenticate
    srv.admin(&["clients", "disable", &id]);
    // cached client rows live CIBA_CLIENT_CACHE_TTL seconds
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    srv.post("/oidc/v1/token", Some((&id, &secret)), &cc)
        .await
        .expect(401);
}

async fn private_key_jwt_single_use_and_strict(b: Backend) {
    let srv = TestServer::start(b).await;
    let key = EcKey::generate("merchant-key-1");
    let jwks_path = std::env::temp_dir().join(format!("jwks-{}.json", jti()));
    std::fs::write(&jwks_path, key.jwks().to_string()).unwrap();
    let id = srv.create_client_without_secret(
        MERCHANT_SCOPES,
        &[
            "--auth-method",
            "private_key_jwt",
            "--jwks-file",
            jwks_path.to_str().unwrap(),
        ],
    );
    std::fs::remove_file(&jwks_path).unwrap();
    let token_url = srv.url("/oidc/v1/token");
    let claims = |aud: &str, iat: i64, exp: i64, jti: &str| json!({"iss": id, "sub": id, "aud": aud, "iat": iat, "exp": exp, "jti": jti});
    let call = |assertion: String| {
        let srv = &srv;
        async move {
            srv.post(
                "/oidc/v1/token",
                None,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_assertion_type", ASSERTION_TYPE),
                    ("client_assertion", &assertion),
                    ("scope", "permissions/client"),
                ],
            )
            .await
        }
    };
    let t = now();
    let good = key.sign(&claims(&token_url, t, t + 60, &jti()));
    assert!(call(good.clone()).await.ok()["access_token"].is_string());

    let r = call(good).await;
    assert_eq!(
        (r.status, r.error()),
        (401, "invalid_client"),
        "jti replay: {r}"
    );
    assert!(r.headers.contains_key("www-authenticate"));

    // the issuer is an accepted audience as well
    call(key.sign(&claims(&srv.base, t, t + 60, &jti())))
        .await
        .ok();

    let hs_header = json!({"alg": "HS256", "typ": "JWT", "kid": key.kid});
    let rejected = [
        ("wrong aud", key.sign(&claims("https://evil.example", t, t + 60, &jti()))),
        ("expired", key.sign(&claims(&token_url, t - 600, t - 300, &jti()))),
        ("too long-lived", key.sign(&claims(&token_url, t, t + 3600, &jti()))),
        ("no exp", key.sign(&json!({"iss": id, "sub": id, "aud": token_url, "iat": t, "jti": jti()}))),
        ("no jti", key.sign(&json!({"iss": id, "sub": id, "aud": token_url, "iat": t, "exp": t + 60}))),
        ("sub differs", key.sign(&json!({"iss": id, "sub": "other", "aud": token_url, "iat": t, "exp": t + 60, "jti": jti()}))),
        ("alg none", raw_jwt(&json!({"alg": "none", "typ": "JWT", "kid": key.kid}), &claims(&token_url, t, t + 60, &jti()), None)),
        ("HS256 with public key bytes", raw_jwt(&hs_header, &claims(&token_url, t, t + 60, &jti()), Some(&key.sec1))),
        (
            "HS256 with public JWK text",
            raw_jwt(&hs_header, &claims(&token_url, t, t + 60, &jti()), Some(key.public_jwk.to_string().as_bytes())),
        ),
        ("another key", EcKey::generate("merchant-key-1").sign(&claims(&token_url, t, t + 60, &jti()))),
    ];
    for (what, assertion) in rejected {
        let r = call(assertion).await;
        assert_eq!(
            (r.status, r.error()),
            (401, "invalid_client"),
            "{what}: {r}"
        );
    }
}

async fn access_token_as_assertion_is_authenticated(b: Backend) {
    let srv = TestServer::start(b).await;
    let (id, secret) = srv.create_client(MERCHANT_SCOPES, &[]);
    let token = srv.access_token(&id, &secret, "permissions/client").await;
    // the reference document's style: the access token as client_assertion. It authenticates,
    // but a token may not mint its own successor.
    srv.post(
        "/oidc/v1/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &token),
        ],
    )
    .await
    .expect_error(400, "unauthorized_client");
    // a tampered token does not authenticate
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    srv.post(
        "/oidc/v1/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &tampered),
        ],
    )
    .await
    .expect_error(401, "invalid_client");
    // two methods at once
    srv.post(
        "/oidc/v1/token",
        Some((&id, &secret)),
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &token),
        ],
    )
    .await
    .expect_error(400, "invalid_request");
}

on_both_backends!(
    bad_credentials_and_scopes_are_refused,
    private_key_jwt_single_use_and_strict,
    access_token_as_assertion_is_authenticated,
);
