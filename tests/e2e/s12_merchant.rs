//! The merchant example (`api/examples/merchant`): the example binary, run against a real
//! server while a phone answers, prints the claims of an ID token it verified (CIBA) or stops
//! with exit 1 when the user declines (App2App); and its verification (`verify.rs`, shared
//! with `merchant_verify`) refuses tokens that are foreign-signed, tampered with, for another
//! audience or issuer, expired, of another `acr` or statement, or not asymmetric.
//!
//! The example is built by the first test that needs it (`cargo build -p ciba-api --example
//! merchant`, a no-op when `.ci/run` built it first).
#![allow(clippy::unwrap_used)]

use crate::support;

#[allow(dead_code)]
#[path = "../../api/examples/merchant/verify.rs"]
mod verify;

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::app::*;
use support::keys::{raw_jwt, EcKey};
use support::{Backend, TestServer};
use verify::Expected;

const SUBSTANTIAL: &str = "http://eidas.europa.eu/LoA/substantial";

/// The merchant example's executable, built once per test process.
fn merchant_example() -> &'static PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
        let out = std::process::Command::new(cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "-q", "-p", "ciba-api", "--example", "merchant"])
            .arg("--message-format=json")
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo build --example merchant failed"
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| m["target"]["name"] == "merchant" && m["target"]["kind"][0] == "example")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo named no executable for the merchant example")
    })
}

/// Run the example for `app`'s user with `args`; the phone answers the request with
/// `decision` once it is pending. Returns (exit code, stdout, stderr).
async fn run_example(
    srv: &TestServer,
    app: &App,
    args: &[&str],
    decision: &str,
) -> (i32, String, String) {
    let (id, secret) = srv.create_client(SCOPES, &["--callback-uri", CALLBACK]);
    let exe = merchant_example().clone();
    let mut child = tokio::process::Command::new(exe)
        .args([
            "--issuer",
            &srv.base,
            "--client-id",
            &id,
            "--nnin",
            &app.nnin,
        ])
        .args(args)
        .env("CIBA_CLIENT_SECRET", &secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let link_ref = loop {
        if let Some(r) = app.pending(srv).await.first() {
            break r["ref"].as_str().unwrap().to_owned();
        }
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().await.unwrap();
            panic!(
                "the example stopped: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(Instant::now() < deadline, "no request reached the phone");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let answered = match decision {
        "approve" => app.approve(srv, &link_ref).await,
        _ => app.decline(srv, &link_ref).await,
    };
    answered.ok();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the example did not finish")
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(out.stdout),
        text(out.stderr),
    )
}

async fn merchant_example_runs_ciba_and_prints_verified_claims(b: Backend) {
    let srv = TestServer::start_with(b, &[("CIBA_POLL_INTERVAL", "1")]).await;
    let app = App::enroll(&srv, &nnin(310), IPHONE).await;
    let args = ["--amount", "99.50", "--binding-message", "Order 42"];
    let (code, stdout, stderr) = run_example(&srv, &app, &args, "approve").await;
    assert_eq!(code, 0, "{stderr}");
    let claims: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(claims["iss"], srv.base.as_str());
    assert_eq!(claims["sub"], app.sub.as_str());
    assert_eq!(claims["acr"], SUBSTANTIAL);
    assert_eq!(claims["name"], "Kari Nordmann");
    assert!(claims["permission_digest"].is_string(), "{claims}");
    assert!(claims["urn:openid:params:jwt:claim:auth_req_id"].is_string());
    assert!(stderr.contains("ciba started"), "{stderr}");
    assert!(stderr.contains("ID token verified"), "{stderr}");
}

async fn merchant_example_stops_when_the_user_declines_app2app(b: Backend) {
    let srv = TestServer::start_with(b, &[("CIBA_POLL_INTERVAL", "1")]).await;
    let app = App::enroll(&srv, &nnin(320), IPHONE).await;
    let args = ["--flow", "app2app", "--callback-uri", CALLBACK];
    let (code, stdout, stderr) = run_example(&srv, &app, &args, "decline").await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty(), "no claims: {stdout}");
    assert!(
        stderr.contains(&format!("{}/app2app/authorize?ref=", srv.base)),
        "the authorize_uri is shown: {stderr}"
    );
    assert!(stderr.contains("declined (access_denied)"), "{stderr}");
}

/// A real ID token (App2App, approved), with discovery and the JWKS it verifies against.
async fn issued_token(srv: &TestServer) -> (Merchant, String, Value, Value) {
    let m = Merchant::new(srv, SCOPES, &[]).await;
    let app = App::enroll(srv, &nnin(330), IPHONE).await;
    let started = start(srv, &m, &app.nnin, IPHONE).await;
    app.approve(srv, &ref_of(started.str("authorize_uri")))
        .await
        .ok();
    let id = started.str("auth_req_id");
    let form = [
        ("grant_type", "urn:openid:params:grant-type:ciba"),
        ("auth_req_id", id),
    ];
    let tokens = srv
        .post("/oidc/v1/token", Some((&m.id, &m.secret)), &form)
        .await;
    let id_token = tokens.str("id_token").to_owned();
    let discovery = srv.get("/.well-known/openid-configuration").await.body;
    let jwks = srv.get("/oidc/v1/jwks").await.body;
    (m, id_token, discovery, jwks)
}

fn part(token: &str, i: usize) -> Value {
    let seg = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&base64_decode(seg)).unwrap()
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn encode(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn merchant_verification_refuses_what_step_11_refuses(b: Backend) {
    let srv = TestServer::start(b).await;
    let (m, token, discovery, jwks) = issued_token(&srv).await;
    let want = Expected {
        issuer: &srv.base,
        client_id: &m.id,
        acr: Some(SUBSTANTIAL),
        ..Expected::default()
    };
    let now = now();
    let check = |d: &Value, w: &Expected, t: &str, at: i64| verify::check(d, &jwks, w, t, at);
    let claims = check(&discovery, &want, &token, now).unwrap();
    assert_eq!(claims["aud"], m.id.as_str());

    let refused = |r: Result<Value, String>, why: &str| {
        let e = r.expect_err(why);
        assert!(e.contains(why), "{e} (expected: {why})");
    };
    let header = part(&token, 0);
    let payload = part(&token, 1);
    let signature = token.rsplit('.').next().unwrap();
    assert_eq!(header["alg"], "ES256", "{header}");
    let kid = header["kid"].as_str().unwrap();

    // Signed by a key that is not the issuer's, under the issuer's kid.
    let foreign = EcKey::generate(kid).sign(&payload);
    refused(
        check(&discovery, &want, &foreign, now),
        "signature is not by key",
    );
    // The issuer's signature over other claims.
    let mut other = payload.clone();
    other["sub"] = json!("someone-else");
    let signed_header = token.split('.').next().unwrap();
    let tampered = format!("{signed_header}.{}.{signature}", encode(&other));
    refused(
        check(&discovery, &want, &tampered, now),
        "signature is not by key",
    );
    // A kid the JWKS does not have.
    let unknown = EcKey::generate("not-a-kid").sign(&payload);
    refused(check(&discovery, &want, &unknown, now), "is not in");
    // None and HMAC never, whatever the claims.
    let none = raw_jwt(&json!({"alg": "none", "kid": kid}), &payload, None);
    refused(check(&discovery, &want, &none, now), "alg none is refused");
    let hmac = raw_jwt(
        &json!({"alg": "HS256", "kid": kid}),
        &payload,
        Some(b"secret"),
    );
    refused(check(&discovery, &want, &hmac, now), "alg HS256 is refused");
    // An algorithm the issuer does not list.
    let mut narrow = discovery.clone();
    narrow["id_token_signing_alg_values_supported"] = json!(["PS256"]);
    refused(check(&narrow, &want, &token, now), "not in the issuer's");

    // The claims: aud, iss, exp, iat, acr, the statement.
    let other_client = Expected {
        client_id: "another-client",
        ..want
    };
    refused(
        check(&discovery, &other_client, &token, now),
        "aud is not the client id",
    );
    let other_issuer = Expected {
        issuer: "https://elsewhere.example",
        ..want
    };
    refused(
        check(&discovery, &other_issuer, &token, now),
        "discovery names issuer",
    );
    let mut moved = discovery.clone();
    moved["issuer"] = json!("https://elsewhere.example");
    refused(
        check(&moved, &other_issuer, &token, now),
        "iss is not the issuer",
    );
    refused(
        check(&discovery, &want, &token, now + 3_600),
        "exp has passed",
    );
    refused(
        check(&discovery, &want, &token, now - 600),
        "is in the future",
    );
    let high = Expected {
        acr: Some("http://eidas.europa.eu/LoA/high"),
        ..want
    };
    refused(check(&discovery, &high, &token, now), "acr is");
    let statement = payment_statement();
    let other_statement = Expected {
        statement: Some(&statement),
        ..want
    };
    refused(
        check(&discovery, &other_statement, &token, now),
        "is not the SHA-256 of the registered statement",
    );
    // Over HTTP, as the example calls it: discovery and the JWKS from the issuer.
    let http = srv.http.clone();
    assert!(verify::id_token(&http, &want, &token).await.is_ok());
    refused(verify::id_token(&http, &other_client, &token).await, "aud");
}

on_both_backends!(
    merchant_example_runs_ciba_and_prints_verified_claims,
    merchant_example_stops_when_the_user_declines_app2app,
    merchant_verification_refuses_what_step_11_refuses,
);
