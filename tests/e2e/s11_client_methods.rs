//! Contract §2 as amended and §11: each client authenticates with its registered method only,
//! secrets work at the backchannel endpoint, registration follows the method and profile, and
//! a client's published keys (`--jwks-uri`) are fetched; over real HTTP on both backends.
#![allow(clippy::unwrap_used)]

use crate::s11_fapi::{assertion, jwks_file, register, CC, SCOPES};
use crate::support;

use serde_json::{json, Value};
use support::app::{nnin, App, IPHONE};
use support::keys::EcKey;
use support::{with_assertion, Backend, TestServer};

async fn each_method_accepts_only_its_own_credentials(b: Backend) {
    let srv = TestServer::start(b).await;
    let key = EcKey::generate("k1");
    let file = jwks_file(&[&key.public_jwk]);
    let jwks = file.to_str().unwrap();
    // A secret client may register keys too (to sign requests); they do not authenticate it.
    let basic = register(
        &srv,
        &["--auth-method", "client_secret_basic", "--jwks-file", jwks],
    );
    let post = register(&srv, &["--auth-method", "client_secret_post"]);
    let keyed = register(
        &srv,
        &["--auth-method", "private_key_jwt", "--jwks-file", jwks],
    );
    std::fs::remove_file(&file).unwrap();
    assert!(
        keyed.get("client_secret").is_none(),
        "a key client has no secret: {keyed}"
    );
    assert_eq!(keyed["token_endpoint_auth_method"], "private_key_jwt");
    let id = |c: &Value| c["client_id"].as_str().unwrap().to_owned();
    let secret = |c: &Value| c["client_secret"].as_str().unwrap().to_owned();
    let (basic_id, basic_secret) = (id(&basic), secret(&basic));
    let (post_id, post_secret) = (id(&post), secret(&post));
    let keyed_id = id(&keyed);
    let token_url = srv.url("/oidc/v1/token");
    let sign = |c: &Value| key.sign(c);

    let by_basic = |cid: String, s: String| {
        let srv = &srv;
        async move {
            srv.post("/oidc/v1/token", Some((&cid, &s)), &CC)
                .await
                .status
        }
    };
    let by_post = |cid: String, s: String| {
        let srv = &srv;
        async move {
            let mut form = vec![("client_id", cid.as_str()), ("client_secret", s.as_str())];
            form.extend_from_slice(&CC);
            srv.post("/oidc/v1/token", None, &form).await.status
        }
    };
    let by_key = |cid: String| {
        let srv = &srv;
        let a = assertion(&cid, &token_url, sign);
        async move {
            srv.post("/oidc/v1/token", None, &with_assertion(&a, &CC))
                .await
                .status
        }
    };

    assert_eq!(by_basic(basic_id.clone(), basic_secret.clone()).await, 200);
    assert_eq!(
        by_post(basic_id.clone(), basic_secret.clone()).await,
        401,
        "basic client, post"
    );
    assert_eq!(
        by_key(basic_id.clone()).await,
        401,
        "basic client, private_key_jwt"
    );

    assert_eq!(by_post(post_id.clone(), post_secret.clone()).await, 200);
    assert_eq!(
        by_basic(post_id.clone(), post_secret.clone()).await,
        401,
        "post client, basic"
    );
    assert_eq!(
        by_key(post_id.clone()).await,
        401,
        "post client, private_key_jwt"
    );

    assert_eq!(by_key(keyed_id.clone()).await, 200);
    for guess in ["", "x", basic_secret.as_str()] {
        assert_eq!(
            by_basic(keyed_id.clone(), guess.into()).await,
            401,
            "key client, basic"
        );
        assert_eq!(
            by_post(keyed_id.clone(), guess.into()).await,
            401,
            "key client, post"
        );
    }

    // CIBA Core §7.1: the backchannel endpoint takes the token endpoint's method, as
    // openid-client sends it (Basic); the permissions API does not take secrets.
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let started = [
        ("login_hint", app.nnin.as_str()),
        ("scope", "openid"),
        ("binding_message", "K7Q-4MX"),
    ];
    srv.post(
        "/oidc/v1/bc-authorize",
        Some((&basic_id, &basic_secret)),
        &started,
    )
    .await
    .ok();
    srv.post(
        "/oidc/v1/bc-authorize",
        Some((&post_id, &post_secret)),
        &started,
    )
    .await
    .expect_error(401, "invalid_client");
    let resp = srv
        .http
        .get(srv.url("/permissions/v1/some-id"))
        .basic_auth(&basic_id, Some(&basic_secret))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

async fn registration_follows_the_method_and_profile(b: Backend) {
    let srv = TestServer::start(b).await;
    let ec = EcKey::generate("k1");
    let file = jwks_file(&[&ec.public_jwk]);
    let jwks = file.to_str().unwrap();
    // A 1024-bit RSA modulus: too small to verify anything with.
    let mut n = vec![0xc1u8];
    n.extend([7u8; 127]);
    use base64::Engine;
    let small = json!({"kty": "RSA", "e": "AQAB", "n": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&n)});
    let small_file = jwks_file(&[&small]);
    let refused: [(&str, Vec<&str>); 7] = [
        (
            "private_key_jwt needs --jwks-file",
            vec!["--auth-method", "private_key_jwt"],
        ),
        (
            "fapi-ciba signs its requests: it needs keys",
            vec![
                "--auth-method",
                "tls_client_auth",
                "--tls-subject-dn",
                "CN=a,O=b",
                "--profile",
                "fapi-ciba",
            ],
        ),
        (
            "tls_client_auth needs a subject DN",
            vec!["--auth-method", "tls_client_auth"],
        ),
        (
            "a subject DN is for tls_client_auth only",
            vec!["--tls-subject-dn", "CN=a,O=b"],
        ),
        (
            "fapi-ciba needs a key method",
            vec!["--profile", "fapi-ciba", "--jwks-file", jwks],
        ),
        (
            "fapi-ciba ID tokens are not RS256",
            vec![
                "--auth-method",
                "private_key_jwt",
                "--jwks-file",
                jwks,
                "--profile",
                "fapi-ciba",
                "--id-token-alg",
                "RS256",
            ],
        ),
        (
            "RSA keys below 2048 bits",
            vec![
                "--auth-method",
                "private_key_jwt",
                "--jwks-file",
                small_file.to_str().unwrap(),
            ],
        ),
    ];
    for (what, extra) in refused {
        let mut args = vec!["clients", "create", "--name", "Bank", "--scope", SCOPES];
        args.extend_from_slice(&extra);
        let out = srv.admin_raw(&args);
        assert!(!out.status.success(), "{what}");
        assert!(
            !String::from_utf8_lossy(&out.stderr).is_empty(),
            "{what}: a message"
        );
    }
    std::fs::remove_file(&file).unwrap();
    std::fs::remove_file(&small_file).unwrap();
    assert!(srv
        .admin(&["clients", "list"])
        .as_array()
        .unwrap()
        .is_empty());

    let doc = srv.get("/.well-known/openid-configuration").await.body;
    let list = |field: &str| -> Vec<String> {
        doc[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        list("token_endpoint_auth_methods_supported"),
        [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "tls_client_auth",
            "self_signed_tls_client_auth"
        ]
    );
    assert_eq!(
        list("backchannel_authentication_request_signing_alg_values_supported"),
        ["ES256", "PS256"]
    );
    assert!(list("token_endpoint_auth_signing_alg_values_supported").contains(&"PS256".to_owned()));
    assert!(list("id_token_signing_alg_values_supported").contains(&"PS256".to_owned()));
    assert_eq!(doc["tls_client_certificate_bound_access_tokens"], false);
    let jwks = srv.get("/oidc/v1/jwks").await.body;
    assert!(jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["alg"] == "PS256" && k["kty"] == "RSA"));
}

/// A client that publishes its keys (`--jwks-uri`): they are fetched and cached, a new key
/// is picked up (at most every 30 s on an unknown key), and the URL may not point inside.
async fn published_keys_are_fetched(b: Backend) {
    use std::sync::{Arc, Mutex};
    use warp::Filter;
    let srv = TestServer::start_with(b, &[("CIBA_ALLOW_INSECURE_CALLBACKS", "true")]).await;
    let (first, second) = (EcKey::generate("k1"), EcKey::generate("k2"));
    let published = Arc::new(Mutex::new(first.jwks()));
    let served = published.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let route = warp::path!("jwks").map(move || warp::reply::json(&*served.lock().unwrap()));
    tokio::spawn(warp::serve(route).incoming(listener).run());

    let id = srv.create_client_without_secret(
        SCOPES,
        &["--auth-method", "private_key_jwt", "--jwks-uri", &url],
    );
    let token_url = srv.url("/oidc/v1/token");
    let by = |key: &EcKey| {
        let a = assertion(&id, &token_url, |c| key.sign(c));
        let srv = &srv;
        async move {
            srv.post("/oidc/v1/token", None, &with_assertion(&a, &CC))
                .await
                .status
        }
    };
    assert_eq!(by(&first).await, 200);
    // The client rotates its key: a new key is fetched when the cached set is 30 s old.
    *published.lock().unwrap() = json!({"keys": [first.public_jwk, second.public_jwk]});
    assert_eq!(
        by(&second).await,
        401,
        "the cached set does not have it yet"
    );
    srv.advance(std::time::Duration::from_secs(31));
    assert_eq!(by(&second).await, 200, "fetched again");

    // Not a URL inside the network; registered keys replace a URL.
    let refused = srv.admin_raw(&[
        "clients",
        "update",
        &id,
        "--jwks-uri",
        "https://10.1.2.3/jwks",
    ]);
    assert!(!refused.status.success());
    let file = jwks_file(&[&first.public_jwk]);
    srv.admin(&[
        "clients",
        "update",
        &id,
        "--jwks-file",
        file.to_str().unwrap(),
    ]);
    std::fs::remove_file(&file).unwrap();
    let shown = srv.admin(&["clients", "show", &id]);
    assert_eq!(
        (shown["jwks"].as_bool(), shown["jwks_uri"].as_str()),
        (Some(true), None)
    );
}

on_both_backends!(
    published_keys_are_fetched,
    each_method_accepts_only_its_own_credentials,
    registration_follows_the_method_and_profile,
);
