//! Issue 2 over real HTTP on SQLite and PostgreSQL: discovery, JWKS, client authentication,
//! client_credentials, private_key_jwt, restart persistence, HTTP error shapes, shutdown.
#![allow(clippy::unwrap_used)]

use crate::support;

use serde_json::json;
use support::app::now;
use support::keys::verify_with_jwks;
use support::{Backend, Reply, TestServer};

const MERCHANT_SCOPES: &str = "permissions/client permissions/app2app openid profile";

async fn discovery_lists_every_contract_field(b: Backend) {
    let srv = TestServer::start(b).await;
    let r = srv.get("/.well-known/openid-configuration").await;
    let doc = r.ok();
    let doc2 = srv.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(*doc, doc2.body);
    assert_eq!(doc["issuer"], srv.base.as_str());
    for (field, path) in [
        ("token_endpoint", "/oidc/v1/token"),
        ("app_authentication_endpoint", "/oidc/v1/app-authorize"),
        (
            "backchannel_authentication_endpoint",
            "/oidc/v1/bc-authorize",
        ),
        ("permissions_endpoint", "/permissions/v1/"),
        ("jwks_uri", "/oidc/v1/jwks"),
        ("jwks_uri_grants", "/permissions/v1/jwks"),
    ] {
        assert_eq!(doc[field], srv.url(path).as_str(), "{field}");
    }
    let has = |field: &str, value: &str| doc[field].as_array().unwrap().iter().any(|v| v == value);
    assert!(has("grant_types_supported", "client_credentials"));
    assert!(has(
        "grant_types_supported",
        "urn:openid:params:grant-type:ciba"
    ));
    assert!(has("backchannel_token_delivery_modes_supported", "poll"));
    assert!(has("backchannel_token_delivery_modes_supported", "ping"));
    assert_eq!(doc["backchannel_user_code_parameter_supported"], false);
    for m in [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ] {
        assert!(has("token_endpoint_auth_methods_supported", m), "{m}");
    }
    assert!(has("id_token_signing_alg_values_supported", "ES256"));
    assert!(has("id_token_signing_alg_values_supported", "RS256"));
    assert!(has("subject_types_supported", "public"));
    for s in [
        "openid",
        "profile",
        "sub_nnin",
        "sub_bankid",
        "permissions/client",
        "permissions/app2app",
    ] {
        assert!(has("scopes_supported", s), "{s}");
    }
    for c in [
        "sub",
        "acr",
        "amr",
        "permission_digest",
        "urn:openid:params:jwt:claim:auth_req_id",
    ] {
        assert!(has("claims_supported", c), "{c}");
    }
    assert!(has(
        "acr_values_supported",
        "http://eidas.europa.eu/LoA/high"
    ));
    assert!(doc["response_types_supported"].is_array());
}

async fn jwks_verify_tokens_and_survive_restart(b: Backend) {
    let mut srv = TestServer::start(b).await;
    let (id, secret) = srv.create_client(MERCHANT_SCOPES, &[]);
    let token = srv.access_token(&id, &secret, "permissions/client").await;
    let jwks = srv.get("/oidc/v1/jwks").await.body;
    let keys = jwks["keys"].as_array().unwrap();
    assert!(keys.iter().any(|k| k["alg"] == "ES256") && keys.iter().any(|k| k["alg"] == "RS256"));
    for k in keys {
        assert!(
            k["kid"].is_string() && k["use"] == "sig" && k.get("d").is_none(),
            "{k}"
        );
    }
    let claims = verify_with_jwks(&token, &jwks, &srv.base, &srv.base);
    assert_eq!(claims["client_id"], id.as_str());
    assert_eq!(claims["scope"], "permissions/client");
    let grants = srv.get("/permissions/v1/jwks").await.body;
    assert_eq!(grants["keys"].as_array().unwrap().len(), 1);
    let grant_kid = &grants["keys"][0]["kid"];
    assert!(
        keys.iter().all(|k| &k["kid"] != grant_kid),
        "grant keys are separate"
    );

    srv.restart().await;
    let jwks_after = srv.get("/oidc/v1/jwks").await.body;
    assert_eq!(jwks, jwks_after, "keys survive a restart");
    let claims = verify_with_jwks(&token, &jwks_after, &srv.base, &srv.base);
    assert_eq!(claims["sub"], id.as_str());
    // the client and its secret survive too
    srv.access_token(&id, &secret, "permissions/client").await;
}

async fn client_credentials_with_basic_and_post(b: Backend) {
    let srv = TestServer::start(b).await;
    let (id, secret) = srv.create_client(MERCHANT_SCOPES, &[]);
    let r = srv
        .post(
            "/oidc/v1/token",
            Some((&id, &secret)),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "permissions/app2app permissions/client"),
            ],
        )
        .await;
    let body = r.ok();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "permissions/app2app permissions/client");
    assert!(body["expires_in"].as_i64().unwrap() > 0);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("pragma"), Some("no-cache"));

    // A client registered for client_secret_post sends its secret in the body.
    let (id, secret) = srv.create_client(MERCHANT_SCOPES, &["--auth-method", "client_secret_post"]);
    let r = srv
        .post(
            "/oidc/v1/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
            ],
        )
        .await;
    r.ok();
    // no scope asked: every API scope the client has
    let scope = r.str("scope");
    assert!(
        scope.contains("permissions/client")
            && scope.contains("openid")
            && !scope.contains("profile"),
        "{scope}"
    );
}

async fn http_errors_are_contract_shaped(b: Backend) {
    let srv = TestServer::start(b).await;
    let (id, secret) = srv.create_client(MERCHANT_SCOPES, &[]);
    srv.get("/no/such/path")
        .await
        .expect_error(404, "not_found");
    srv.get("/oidc/v1/token")
        .await
        .expect_error(405, "method_not_allowed");

    let big = "a".repeat(70 * 1024);
    // its own client: the server closes a connection whose body it refused
    let fresh = ciba_runtime::outbound::client(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_secs(30),
    )
    .unwrap();
    let resp = fresh
        .post(srv.url("/oidc/v1/token"))
        .form(&[("grant_type", big.as_str())])
        .send()
        .await
        .unwrap();
    let r = Reply::read(resp).await;
    assert!(r.expect(413)["error"].is_string());

    let resp = srv
        .http
        .post(srv.url("/oidc/v1/token"))
        .basic_auth(&id, Some(&secret))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    Reply::read(resp).await.expect_error(400, "invalid_request");

    let r = srv
        .post(
            "/oidc/v1/token",
            Some((&id, &secret)),
            &[
                ("grant_type", "client_credentials"),
                ("grant_type", "client_credentials"),
            ],
        )
        .await;
    r.expect_error(400, "invalid_request");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    srv.post(
        "/oidc/v1/token",
        Some((&id, &secret)),
        &[("grant_type", "password")],
    )
    .await
    .expect_error(400, "unsupported_grant_type");
    let r = srv.post("/oidc/v1/token", Some((&id, &secret)), &[]).await;
    r.expect_error(400, "invalid_request");

    // every error body is exactly {error, error_description} with printable ASCII
    let keys: Vec<&String> = r.body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["error", "error_description"]);

    let r = srv.get("/healthz").await;
    assert_eq!((r.status, r["status"].as_str()), (200, Some("ok")), "{r}");
    let metrics = srv.metrics().await;
    assert!(metrics.contains("ciba_http_requests_total{method=\"POST\",route=\"POST /oidc/v1/token\",status=\"400\"}"), "{metrics}");
    assert!(metrics.contains("ciba_http_request_duration_seconds_bucket"));
    assert!(
        !metrics.contains("/no/such/path"),
        "raw paths never become labels"
    );
    // secrets never reach the log
    let logs = srv.logs();
    assert!(!logs.contains(&secret));
}

async fn admin_cli_validates_input(b: Backend) {
    let srv = TestServer::start(b).await;
    for args in [
        vec![
            "clients",
            "create",
            "--name",
            "x",
            "--scope",
            "no/such/scope",
        ],
        vec![
            "clients",
            "create",
            "--name",
            "x",
            "--scope",
            "openid",
            "--callback-uri",
            "http://insecure.example/cb",
        ],
        vec![
            "clients",
            "create",
            "--name",
            "x",
            "--scope",
            "openid",
            "--delivery-mode",
            "ping",
        ],
        vec![
            "users",
            "create",
            "--nnin",
            "12345678901",
            "--given-name",
            "A",
            "--family-name",
            "B",
            "--birthdate",
            "1990-01-01",
        ],
        vec![
            "users",
            "create",
            "--nnin",
            "01019012345",
            "--given-name",
            "A",
            "--family-name",
            "B",
            "--birthdate",
            "1990-13-01",
        ],
        vec!["enrollment-codes", "create", "--nnin", "abc"],
        vec!["devices", "revoke", "no-such-device"],
    ] {
        let out = srv.admin_raw(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    }
    let nnin = ciba_domain::nnin::with_check_digits("010190123")
        .or_else(|| ciba_domain::nnin::with_check_digits("010190124"))
        .unwrap();
    let user = srv.admin(&[
        "users",
        "create",
        "--nnin",
        &nnin,
        "--given-name",
        "Kari",
        "--family-name",
        "Nordmann",
        "--birthdate",
        "1990-01-01",
    ]);
    assert!(user["sub"].as_str().unwrap().len() >= 22);
    assert_ne!(user["sub"], nnin.as_str(), "sub is not the NNIN");
    let dup = srv.admin_raw(&[
        "users",
        "create",
        "--nnin",
        &nnin,
        "--given-name",
        "K",
        "--family-name",
        "N",
        "--birthdate",
        "1990-01-01",
    ]);
    assert!(!dup.status.success());
    assert!(
        !String::from_utf8_lossy(&dup.stderr).contains(&nnin),
        "no NNIN in messages"
    );
    let code = srv.admin(&["enrollment-codes", "create", "--nnin", &nnin]);
    assert!(
        code["code"].as_str().unwrap().len() >= 22 && code["expires_at"].as_i64().unwrap() > now()
    );
    let listed = srv.admin(&["users", "list"]);
    assert!(!listed.to_string().contains(&nnin));
    let clients = srv.admin(&["clients", "list"]);
    assert!(clients.as_array().unwrap().is_empty());
    let keys = srv.admin(&["keys", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 4);
}

async fn sigterm_stops_cleanly(b: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut srv = TestServer::start(b).await;
    // A request in flight when SIGTERM arrives: headers and half the body sent before, the
    // rest after. It must still get its whole answer.
    let body = "grant_type=client_credentials&scope=openid";
    let (first, rest) = body.split_at(20);
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", srv.port))
        .await
        .unwrap();
    let head = format!(
        "POST /oidc/v1/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{first}",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    srv.signal_term();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    conn.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 401"),
        "the in-flight request was answered: {answer}"
    );
    assert!(answer.contains("invalid_client"));
    assert!(srv.stop(), "exit status 0 after SIGTERM");
    assert!(
        srv.http.get(srv.url("/healthz")).send().await.is_err(),
        "no longer accepting"
    );
}

async fn openapi_document_is_served(b: Backend) {
    let srv = TestServer::start(b).await;
    let resp = srv.http.get(srv.url("/openapi.yaml")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/yaml");
    let text = resp.text().await.unwrap();
    let on_disk = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml"));
    assert_eq!(text, on_disk.unwrap());
    assert!(text.starts_with("openapi: 3.1"));
}

on_both_backends!(
    openapi_document_is_served,
    discovery_lists_every_contract_field,
    jwks_verify_tokens_and_survive_restart,
    client_credentials_with_basic_and_post,
    http_errors_are_contract_shaped,
    admin_cli_validates_input,
    sigterm_stops_cleanly,
);
