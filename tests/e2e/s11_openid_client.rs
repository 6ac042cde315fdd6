//! A standard relying party completes CIBA poll mode against us unmodified (contract §2, §11;
//! CIBA Core §7.1): openid-client (npm, `tests/rp`) does discovery, `client_credentials`,
//! bc-authorize with its token-endpoint method, polls with its own interval and `slow_down`
//! handling, and validates the ID token. The test plays the user on an enrolled phone.
#![allow(clippy::unwrap_used)]

use crate::support;

use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::app::{jti, nnin, App, IPHONE};
use support::keys::EcKey;
use support::{Backend, TestServer};

const SCOPES: &str = "permissions/ciba openid";

/// `tests/rp` with its packages installed (`npm ci` once, under a lock: the two backends'
/// tests run at the same time).
fn relying_party() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/rp");
    let lock = std::fs::File::create(std::env::temp_dir().join("ciba-tests-rp.lock")).unwrap();
    lock.lock().unwrap();
    if !dir.join("node_modules/openid-client").exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--silent", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm (Node.js) is needed for the relying-party test");
        assert!(status.success(), "npm ci in tests/rp failed");
    }
    dir
}

/// Run the relying party with `env`, approve its request on the phone, and return what it
/// printed (the validated ID token's claims).
async fn drive(srv: &TestServer, app: &App, env: &[(&str, &str)]) -> Value {
    let dir = relying_party();
    let mut child = tokio::process::Command::new("node")
        .arg("ciba.mjs")
        .current_dir(&dir)
        .env("ISSUER", &srv.base)
        .env("LOGIN_HINT", &app.nnin)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The user: wait for the request on the phone, check what it shows, approve.
    let deadline = Instant::now() + Duration::from_secs(30);
    let link_ref = loop {
        let pending = app.pending(srv).await;
        if let Some(p) = pending.first() {
            assert_eq!(p["binding_message"], "RP-4711", "{p}");
            break p["ref"].as_str().unwrap().to_owned();
        }
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output().await.unwrap();
            panic!(
                "the relying party ended ({status}) before starting: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(Instant::now() < deadline, "no request reached the phone");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    app.approve(srv, &link_ref).await.ok();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the relying party finishes")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "openid-client failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

fn check_result(srv: &TestServer, client_id: &str, out: &Value) {
    assert_eq!(out["client_credentials_scope"], "permissions/ciba", "{out}");
    assert_eq!(
        out["token_type"].as_str().map(str::to_lowercase).as_deref(),
        Some("bearer")
    );
    let claims = &out["claims"];
    assert_eq!(claims["iss"], srv.base.as_str(), "{out}");
    assert_eq!(claims["aud"], client_id, "{out}");
    assert_eq!(
        claims["urn:openid:params:jwt:claim:auth_req_id"],
        out["auth_req_id"]
    );
    assert!(
        claims["sub"].is_string() && claims["given_name"].is_string(),
        "{out}"
    );
}

async fn openid_client_with_client_secret_basic(b: Backend) {
    let srv = TestServer::start(b).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let (id, secret) = srv.create_client(SCOPES, &["--auth-method", "client_secret_basic"]);
    let env = [
        ("CLIENT_ID", id.as_str()),
        ("AUTH", "client_secret_basic"),
        ("CLIENT_SECRET", secret.as_str()),
        ("ID_TOKEN_ALG", "ES256"),
    ];
    let out = drive(&srv, &app, &env).await;
    check_result(&srv, &id, &out);
}

async fn openid_client_with_private_key_jwt(b: Backend) {
    let srv = TestServer::start(b).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let key = EcKey::generate("rp-key-1");
    let jwks = std::env::temp_dir().join(format!("jwks-{}.json", jti()));
    std::fs::write(&jwks, key.jwks().to_string()).unwrap();
    let id = srv.create_client_without_secret(
        SCOPES,
        &[
            "--auth-method",
            "private_key_jwt",
            "--jwks-file",
            jwks.to_str().unwrap(),
            "--id-token-alg",
            "PS256",
        ],
    );
    std::fs::remove_file(&jwks).unwrap();
    let private_jwk = key.private_jwk().to_string();
    let env = [
        ("CLIENT_ID", id.as_str()),
        ("AUTH", "private_key_jwt"),
        ("CLIENT_JWK", private_jwk.as_str()),
        ("ID_TOKEN_ALG", "PS256"),
    ];
    let out = drive(&srv, &app, &env).await;
    check_result(&srv, &id, &out);
}

on_both_backends!(
    openid_client_with_client_secret_basic,
    openid_client_with_private_key_jwt,
);
