//! Issue 4 over real HTTP on SQLite and PostgreSQL: the authenticating app's API (device
//! JWTs, enrollment, signed decisions), the universal link's fallback page and well-known
//! files, and bc-authorize.
#![allow(clippy::unwrap_used)]

use crate::support;

use ciba_store::schema::auth_requests;
use diesel::prelude::*;
use serde_json::{json, Value};
use support::app::*;
use support::keys::EcKey;
use support::{Backend, Reply, TestServer};

async fn decisions_are_verified(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let started = start(&srv, &m, &app.nnin, IPHONE).await;
    let link_ref = ref_of(started.str("authorize_uri"));
    let view = app
        .get(&srv, &format!("/app/v1/auth-requests/{link_ref}"))
        .await;
    let digest = view.str("permission_digest");

    let forger = EcKey {
        kid: app.device_id.clone(),
        ..EcKey::generate("x")
    };
    let forged = forger.sign(&json!({"ref": link_ref, "decision": "approve", "permission_digest": digest, "iat": now(), "jti": jti()}));
    let r = app.send_decision(&srv, &link_ref, &forged).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "invalid_request"),
        "forged signature: {r}"
    );
    let r = app
        .send_decision(
            &srv,
            &link_ref,
            &app.sign_decision(&link_ref, "approve", "d3JvbmcgZGlnZXN0"),
        )
        .await;
    assert!(r.str("error_description").contains("permission_digest"));
    assert_eq!(r.status, 400, "wrong digest: {r}");
    app.send_decision(
        &srv,
        "another-ref",
        &app.sign_decision(&link_ref, "approve", digest),
    )
    .await
    .expect(404);
    let view = app
        .get(&srv, &format!("/app/v1/auth-requests/{link_ref}"))
        .await;
    assert_eq!(view["status"], "pending", "nothing was recorded");

    // a second device of the same user that did not match may not decide
    let other = App::enroll_existing(
        &srv,
        &app.nnin,
        app.sub.clone(),
        ("ios", "Apple", "iPhone15,2"),
    )
    .await;
    other
        .send_decision(
            &srv,
            &link_ref,
            &other.sign_decision(&link_ref, "approve", digest),
        )
        .await
        .expect_error(403, "access_denied");

    // racing decisions: exactly one wins
    let attempts = (0..8).map(|i| {
        let d = if i % 2 == 0 { "approve" } else { "decline" };
        let signed = app.sign_decision(&link_ref, d, digest);
        let srv = &srv;
        let app = &app;
        let link_ref = link_ref.clone();
        async move { app.send_decision(srv, &link_ref, &signed).await }
    });
    let results = futures_util::future::join_all(attempts).await;
    let won = results.iter().filter(|r| r.status == 200).count();
    let lost = results
        .iter()
        .filter(|r| r.status == 409 && r.error() == "request_not_pending")
        .count();
    assert_eq!(
        (won, lost),
        (1, 7),
        "{:?}",
        results.iter().map(Reply::to_string).collect::<Vec<_>>()
    );
}

async fn too_late_and_device_jwt_rules(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let started = start(&srv, &m, &app.nnin, IPHONE).await;
    let link_ref = ref_of(started.str("authorize_uri"));
    let id = started.str("auth_req_id").to_owned();
    srv.store()
        .read(move |c| {
            Ok(diesel::update(auth_requests::table.find(&id))
                .set(auth_requests::expires_at.eq(now() - 1))
                .execute(c)?)
        })
        .unwrap();
    let r = app.approve(&srv, &link_ref).await;
    assert_eq!(
        (r.status, r.error()),
        (409, "request_not_pending"),
        "after expiry: {r}"
    );
    assert!(app.pending(&srv).await.is_empty());
    srv.get(&format!("/app2app/authorize?ref={link_ref}"))
        .await
        .expect(410);

    let t = now();
    let jwt = |claims: Value| app.key.sign(&claims);
    let replayed =
        jwt(json!({"sub": app.device_id, "aud": srv.base, "iat": t, "exp": t + 60, "jti": "once"}));
    srv.get_bearer("/app/v1/auth-requests", &replayed)
        .await
        .ok();
    for (what, token) in [
        ("replayed jti", replayed),
        ("lives too long", jwt(json!({"sub": app.device_id, "aud": srv.base, "iat": t, "exp": t + 600, "jti": jti()}))),
        ("wrong audience", jwt(json!({"sub": app.device_id, "aud": "https://other", "iat": t, "exp": t + 60, "jti": jti()}))),
        ("expired", jwt(json!({"sub": app.device_id, "aud": srv.base, "iat": t - 300, "exp": t - 240, "jti": jti()}))),
        ("sub is not the device", jwt(json!({"sub": "someone", "aud": srv.base, "iat": t, "exp": t + 60, "jti": jti()}))),
        ("unknown key", EcKey { kid: app.device_id.clone(), ..EcKey::generate("x") }.sign(&json!({"sub": app.device_id, "aud": srv.base, "iat": t, "exp": t + 60, "jti": jti()}))),
    ] {
        let r = srv.get_bearer("/app/v1/auth-requests", &token).await;
        assert_eq!((r.status, r.error()), (401, "invalid_token"), "{what}: {r}");
    }
}

async fn fallback_page_and_well_known_files(b: Backend) {
    let app_ids = "ABCDE12345.no.example.authapp";
    let srv = TestServer::start_with(
        b,
        &[
            ("CIBA_APPLE_APP_IDS", app_ids),
            ("CIBA_ANDROID_PACKAGE", "no.example.authapp"),
            ("CIBA_ANDROID_CERT_FINGERPRINTS", "AA:BB"),
        ],
    )
    .await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let started = start(&srv, &m, &app.nnin, IPHONE).await;
    let resp = srv
        .http
        .get(started.str("authorize_uri"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = resp.text().await.unwrap();
    assert!(html.contains("expires in"), "{html}");
    for secret in [
        app.nnin.as_str(),
        "Kari",
        "Nordmann",
        "123.45",
        "Scrooge",
        "NOK",
    ] {
        assert!(!html.contains(secret), "the page shows {secret}");
    }
    let unknown = srv
        .http
        .get(srv.url("/app2app/authorize?ref=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(unknown.text().await.unwrap().contains("<html"));
    srv.get("/app2app/authorize").await.expect(404);

    let aasa = srv.get("/.well-known/apple-app-site-association").await;
    let doc = aasa.ok();
    assert_eq!(aasa.header("content-type"), Some("application/json"));
    assert_eq!(
        *doc,
        json!({"applinks": {"details": [{"appIDs": [app_ids], "components": [{"/": "/app2app/*"}]}]}})
    );
    let links = srv.get("/.well-known/assetlinks.json").await;
    assert_eq!(
        links.body[0]["target"]["package_name"],
        "no.example.authapp"
    );
}

async fn enrollment_codes_are_single_use(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.admin(&[
        "users",
        "create",
        "--nnin",
        &nnin(100),
        "--given-name",
        "A",
        "--family-name",
        "B",
        "--birthdate",
        "1985-05-15",
    ]);
    let code = srv.admin(&["enrollment-codes", "create", "--nnin", &nnin(100)]);
    let key = EcKey::generate("k");
    let body = json!({"enrollment_code": code["code"], "device_info": {"p": "ios", "ma": "Apple", "mo": "iPhone11,2"}, "public_jwk": key.public_jwk});
    srv.post_json("/app/v1/devices", None, &body)
        .await
        .expect(201);
    srv.post_json("/app/v1/devices", None, &body)
        .await
        .expect_error(400, "invalid_grant");
    let code = srv.admin(&["enrollment-codes", "create", "--nnin", &nnin(100)]);
    let mut private = key.public_jwk.clone();
    private["d"] = json!("AAAA");
    for (what, body) in [
        (
            "private key",
            json!({"enrollment_code": code["code"], "device_info": {"p": "ios", "ma": "Apple", "mo": "x"}, "public_jwk": private}),
        ),
        (
            "no device info",
            json!({"enrollment_code": code["code"], "public_jwk": key.public_jwk}),
        ),
        (
            "rsa key",
            json!({"enrollment_code": code["code"], "device_info": {"p": "ios", "ma": "Apple", "mo": "x"}, "public_jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}}),
        ),
    ] {
        let r = srv.post_json("/app/v1/devices", None, &body).await;
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_request"),
            "{what}: {r}"
        );
    }
    assert_eq!(srv.admin(&["devices", "list"]).as_array().unwrap().len(), 1);
}

async fn bc_authorize_flows(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let r = m
        .backchannel_authorize(
            &srv,
            &[
                ("login_hint", &app.nnin),
                ("scope", "openid"),
                ("binding_message", "K7Q-4MX"),
            ],
        )
        .await;
    let started = r.ok();
    assert!(
        started["auth_req_id"].is_string()
            && started["expires_in"].as_i64().unwrap() > 0
            && started["interval"].as_i64().unwrap() > 0
    );
    let pending = app.pending(&srv).await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["binding_message"], "K7Q-4MX");
    let decided = app.approve(&srv, pending[0]["ref"].as_str().unwrap()).await;
    assert_eq!(decided.ok()["status"], "approved");
    assert_eq!(decided["redirect_uri"], Value::Null);

    let ciba = m.ciba_permission_token(&srv, &app.nnin).await;
    let pt = ciba.as_str();
    m.backchannel_authorize(&srv, &[("login_hint_token", pt), ("scope", "openid")])
        .await
        .ok();

    let long = "x".repeat(100);
    type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![
                ("login_hint", &app.nnin),
                ("login_hint_token", pt),
                ("scope", "openid"),
            ],
            400,
            "invalid_request",
        ),
        (vec![("scope", "openid")], 400, "invalid_request"),
        (
            vec![("login_hint", &app.nnin), ("scope", "profile")],
            400,
            "invalid_scope",
        ),
        (
            vec![
                ("login_hint", &app.nnin),
                ("scope", "openid"),
                ("binding_message", &long),
            ],
            400,
            "invalid_binding_message",
        ),
        (
            vec![
                ("login_hint", "12345678901"),
                ("scope", "openid"),
                ("binding_message", "K7Q-4MX"),
            ],
            400,
            "unknown_user_id",
        ),
        // CIBA §13: a plain login_hint with nothing the user can match on the screen.
        (
            vec![("login_hint", &app.nnin), ("scope", "openid")],
            400,
            "invalid_binding_message",
        ),
    ];
    for (fields, status, code) in cases {
        let r = m.backchannel_authorize(&srv, &fields).await;
        assert_eq!((r.status, r.error()), (status, code), "{fields:?}: {r}");
    }
    let nobody = nnin(500);
    m.backchannel_authorize(
        &srv,
        &[
            ("login_hint", &nobody),
            ("scope", "openid"),
            ("binding_message", "K7Q-4MX"),
        ],
    )
    .await
    .expect_error(400, "unknown_user_id");
}

on_both_backends!(
    decisions_are_verified,
    too_late_and_device_jwt_rules,
    fallback_page_and_well_known_files,
    enrollment_codes_are_single_use,
    bc_authorize_flows,
);
