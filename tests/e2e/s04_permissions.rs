//! Issue 3 over real HTTP on SQLite and PostgreSQL: the permissions API.
#![allow(clippy::unwrap_used)]

use crate::support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_store::schema::{devices, permissions};
use ciba_store::users::{self, DeviceRow};
use diesel::prelude::*;
use serde_json::{json, Value};
use support::app::{nnin, now, CALLBACK, REFERENCE_STATEMENT};
use support::keys::verify_with_jwks;
use support::{Backend, Reply, TestServer};

const SCOPES: &str = "permissions/client permissions/app2app permissions/ciba openid";

fn statement(nonce: &str) -> String {
    URL_SAFE_NO_PAD.encode(json!({"nonce": nonce}).to_string())
}

fn registration(permission: &str, kind: &str, hint: &str) -> Value {
    let t = now();
    json!({
        "type": kind, "loa": "sub", "iat": t, "exp": t + 900, "permission": permission,
        "intents": ["app2app"], "loginHint": [{"scheme": "nnin", "value": hint}], "app_callback_uri": CALLBACK,
    })
}

/// A merchant with a token carrying `permissions/client`.
async fn merchant(srv: &TestServer) -> (String, String) {
    let (id, secret) = srv.create_client(SCOPES, &["--callback-uri", CALLBACK]);
    let token = srv
        .access_token(&id, &secret, "permissions/client permissions/app2app")
        .await;
    (id, token)
}

async fn reference_example_registers_and_reads_back(b: Backend) {
    let srv = TestServer::start(b).await;
    let (client_id, token) = merchant(&srv).await;
    let body = registration(REFERENCE_STATEMENT, "payment.v1", &nnin(100));
    let created = srv.post_json("/permissions/v1/", Some(&token), &body).await;
    created.expect(201);
    let id = created.str("id");
    assert!(id.len() >= 22 && ciba_domain::ids::is_well_formed_id(id));
    assert_eq!(created.str("bindingMessage").len(), 7);

    // the permission token is a JWT of ours, bound to the client and the permission
    let jwks = srv.get("/oidc/v1/jwks").await.body;
    let pt = created.str("permissionToken");
    assert_eq!(
        jsonwebtoken::decode_header(pt).unwrap().typ.as_deref(),
        Some("permission+jwt")
    );
    let claims = verify_with_jwks(pt, &jwks, &srv.base, &srv.base);
    assert_eq!(claims["permission_id"], id);
    assert_eq!(claims["client_id"], client_id.as_str());
    assert_eq!(claims["exp"], body["exp"]);

    let got = srv
        .get_bearer(&format!("/permissions/v1/{id}"), &token)
        .await;
    assert_eq!(
        got.ok(),
        &json!({"id": id, "type": "payment.v1", "status": "pending", "iat": body["iat"], "exp": body["exp"], "intents": ["app2app"]})
    );
    srv.get_bearer(&format!("/permissions/v1/{id}/grant"), &token)
        .await
        .expect_error(404, "not_found");

    // also without the trailing slash
    srv.post_json(
        "/permissions/v1",
        Some(&token),
        &registration(&statement("other"), "authentication.v1", &nnin(100)),
    )
    .await
    .expect(201);
}

async fn every_rule_is_enforced_with_a_precise_error(b: Backend) {
    let srv = TestServer::start(b).await;
    let (_, token) = merchant(&srv).await;
    let ok = registration(&statement("n"), "authentication.v1", &nnin(100));
    let t = now();
    let payment = |p: Value| {
        URL_SAFE_NO_PAD.encode(json!({"nonce": "x", "id": "b", "payments": [p]}).to_string())
    };
    let cases: Vec<(&str, Value)> = vec![
        ("type", json!({"type": "signature.v1"})),
        ("loa", json!({"loa": "low"})),
        ("iat", json!({"iat": t - 120})),
        ("iat", json!({"iat": t + 300, "exp": t + 400})),
        ("exp", json!({"exp": t + 3700})),
        ("exp", json!({"exp": t - 1})),
        ("permission", json!({"permission": "not base64!"})),
        (
            "permission",
            json!({"permission": format!("{}=", statement("n"))}),
        ),
        (
            "permission.nonce",
            json!({"permission": URL_SAFE_NO_PAD.encode("{}")}),
        ),
        ("intents", json!({"intents": ["fax"]})),
        (
            "loginHint",
            json!({"loginHint": [{"scheme": "nnin", "value": "12345678901"}]}),
        ),
        (
            "app_callback_uri",
            json!({"app_callback_uri": "https://evil.example/cb"}),
        ),
        ("app_callback_uri", json!({"app_callback_uri": null})),
        (
            "permission.payments[0].amount",
            json!({"type": "payment.v1", "permission": payment(json!({"paymentId": "p", "amount": "1.234", "currency": "NOK", "creditorName": "C"}))}),
        ),
        (
            "permission.payments[0].currency",
            json!({"type": "payment.v1", "permission": payment(json!({"paymentId": "p", "amount": "10", "currency": "QQQ", "creditorName": "C"}))}),
        ),
    ];
    for (field, patch) in cases {
        let mut body = ok.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = srv.post_json("/permissions/v1/", Some(&token), &body).await;
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_request"),
            "{field}: {r}"
        );
        assert!(
            r["error_description"].as_str().unwrap().starts_with(field),
            "{field}: {r}"
        );
    }
    // text.v1 needs permissions/text, which this client lacks
    let text =
        URL_SAFE_NO_PAD.encode(json!({"nonce": "t", "id": "i", "text": "hello"}).to_string());
    srv.post_json(
        "/permissions/v1/",
        Some(&token),
        &registration(&text, "text.v1", &nnin(100)),
    )
    .await
    .expect_error(403, "unauthorized_client");

    // transport-level errors
    let resp = srv
        .http
        .post(srv.url("/permissions/v1/"))
        .bearer_auth(&token)
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = srv
        .http
        .post(srv.url("/permissions/v1/"))
        .bearer_auth(&token)
        .form(&[("type", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    srv.post_json("/permissions/v1/", None, &ok)
        .await
        .expect_error(401, "invalid_client");
    let (id, secret) = srv.create_client("permissions/app2app openid", &[]);
    let weak = srv.access_token(&id, &secret, "permissions/app2app").await;
    srv.post_json("/permissions/v1/", Some(&weak), &ok)
        .await
        .expect_error(403, "insufficient_scope");
    let resp = srv
        .http
        .post(srv.url("/permissions/v1/"))
        .basic_auth(&id, Some(&secret))
        .json(&ok)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "client secrets only at the token endpoint"
    );
}

async fn nonces_are_single_use_per_client_even_concurrently(b: Backend) {
    let srv = TestServer::start(b).await;
    let (_, token) = merchant(&srv).await;
    let (_, other) = merchant(&srv).await;
    let body = registration(&statement("once"), "authentication.v1", &nnin(100));
    srv.post_json("/permissions/v1/", Some(&token), &body)
        .await
        .expect(201);
    let r = srv.post_json("/permissions/v1/", Some(&token), &body).await;
    assert!(r.expect(400)["error_description"]
        .as_str()
        .unwrap()
        .contains("nonce"));
    assert_eq!(
        srv.post_json("/permissions/v1/", Some(&other), &body)
            .await
            .status,
        201,
        "nonces are per client"
    );

    let racing = registration(&statement("race"), "authentication.v1", &nnin(100));
    let calls = (0..16).map(|_| srv.post_json("/permissions/v1/", Some(&token), &racing));
    let results = futures_util::future::join_all(calls).await;
    let created = results.iter().filter(|r| r.status == 201).count();
    let refused = results
        .iter()
        .filter(|r| r.status == 400 && r.error() == "invalid_request")
        .count();
    assert_eq!(
        (created, refused),
        (1, 15),
        "{:?}",
        results.iter().map(Reply::to_string).collect::<Vec<_>>()
    );
}

async fn other_clients_see_nothing_and_grants_verify(b: Backend) {
    let srv = TestServer::start(b).await;
    let (_, token) = merchant(&srv).await;
    let (_, other) = merchant(&srv).await;
    let user = srv.admin(&[
        "users",
        "create",
        "--nnin",
        &nnin(100),
        "--given-name",
        "Kari",
        "--family-name",
        "Nordmann",
        "--birthdate",
        "1985-05-15",
    ]);
    let sub = user["sub"].as_str().unwrap().to_owned();
    let created = srv
        .post_json(
            "/permissions/v1/",
            Some(&token),
            &registration(REFERENCE_STATEMENT, "payment.v1", &nnin(100)),
        )
        .await;
    let id = created.str("id");
    for path in [
        format!("/permissions/v1/{id}"),
        format!("/permissions/v1/{id}/grant"),
        "/permissions/v1/unknown-id".into(),
    ] {
        let r = srv.get_bearer(&path, &other).await;
        assert_eq!((r.status, r.error()), (404, "not_found"), "{path}: {r}");
    }

    // Grant it as the decision flow will (the app API arrives with the App2App issue).
    let decided = now();
    let pid = id.to_owned();
    srv.store()
        .read(move |c| {
            diesel::update(permissions::table.filter(permissions::id.eq(&pid)))
                .set((
                    permissions::status.eq("granted"),
                    permissions::decided_at.eq(decided),
                ))
                .execute(c)?;
            Ok(())
        })
        .unwrap();
    let got = srv
        .get_bearer(&format!("/permissions/v1/{id}"), &token)
        .await;
    assert_eq!(got.ok()["status"], "granted");
    let grant = srv
        .get_bearer(&format!("/permissions/v1/{id}/grant"), &token)
        .await;
    grant.ok();
    let jws = grant.str("grant");
    let grant_jwks = srv.get("/permissions/v1/jwks").await.body;
    let header = jsonwebtoken::decode_header(jws).unwrap();
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(grant_jwks).unwrap();
    let key =
        jsonwebtoken::DecodingKey::from_jwk(set.find(header.kid.as_deref().unwrap()).unwrap())
            .unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_aud = false;
    let claims = jsonwebtoken::decode::<Value>(jws, &key, &v).unwrap().claims;
    let digest =
        ciba_domain::secret::sha256_b64url(&URL_SAFE_NO_PAD.decode(REFERENCE_STATEMENT).unwrap());
    assert_eq!(claims["iss"], srv.base.as_str());
    assert_eq!(claims["permission_id"], id);
    assert_eq!(claims["permission_digest"], digest.as_str());
    assert_eq!(
        claims["sub"],
        sub.as_str(),
        "the user's sub, never the NNIN"
    );
    assert_eq!(claims["acr"], "http://eidas.europa.eu/LoA/substantial");
    assert_eq!(claims["iat"], decided);
    assert!(claims["amr"].is_array());
    let oidc_jwks = srv.get("/oidc/v1/jwks").await.body;
    assert!(oidc_jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["kid"] != header.kid.as_deref().unwrap()));
    let again = srv
        .get_bearer(&format!("/permissions/v1/{id}/grant"), &token)
        .await;
    assert_eq!(again["grant"], grant["grant"], "the grant is signed once");
    srv.get_bearer(&format!("/permissions/v1/{id}/grant"), &other)
        .await
        .expect(404);
}

async fn expiry_follows_the_clock(b: Backend) {
    let srv = TestServer::start(b).await;
    let (_, token) = merchant(&srv).await;
    let created = srv
        .post_json(
            "/permissions/v1/",
            Some(&token),
            &registration(&statement("e"), "authentication.v1", &nnin(100)),
        )
        .await;
    let id = created.str("id");
    let pid = id.to_owned();
    srv.store()
        .read(move |c| {
            Ok(
                diesel::update(permissions::table.filter(permissions::id.eq(&pid)))
                    .set(permissions::exp.eq(now() - 1))
                    .execute(c)?,
            )
        })
        .unwrap();
    let got = srv
        .get_bearer(&format!("/permissions/v1/{id}"), &token)
        .await;
    assert_eq!(got["status"], "expired", "no sweeper needed");
}

async fn user_exists_means_an_active_device(b: Backend) {
    let srv = TestServer::start(b).await;
    let (_, token) = merchant(&srv).await;
    let ask = |n: String| {
        let srv = &srv;
        let token = token.clone();
        async move {
            srv.post_json(
                "/permissions/v1/user-exists",
                Some(&token),
                &json!({"loginHint": [{"scheme": "nnin", "value": n}]}),
            )
            .await
        }
    };
    assert_eq!(ask(nnin(100)).await.ok(), &json!({"exists": false}));
    let user = srv.admin(&[
        "users",
        "create",
        "--nnin",
        &nnin(100),
        "--given-name",
        "Ola",
        "--family-name",
        "N",
        "--birthdate",
        "1985-05-15",
    ]);
    assert_eq!(
        ask(nnin(100)).await.body,
        json!({"exists": false}),
        "no device yet"
    );
    let device = DeviceRow {
        id: "device-1".into(),
        user_sub: user["sub"].as_str().unwrap().into(),
        platform: "ios".into(),
        manufacturer: "Apple".into(),
        model: "iPhone11,2".into(),
        public_jwk: "{}".into(),
        name: None,
        status: "active".into(),
        created_at: now(),
        revoked_at: None,
        key_protection: "hwk".into(),
    };
    srv.store()
        .read(|c| users::insert_device(c, &device))
        .unwrap();
    assert_eq!(ask(nnin(100)).await.body, json!({"exists": true}));
    srv.admin(&["devices", "revoke", "device-1"]);
    assert_eq!(
        ask(nnin(100)).await.body,
        json!({"exists": false}),
        "revoked devices do not count"
    );
    ask("12345678901".into())
        .await
        .expect_error(400, "invalid_request");
    let _ = srv
        .store()
        .read(|c| Ok(devices::table.count().get_result::<i64>(c)?));
}

async fn nnins_never_reach_the_logs(b: Backend) {
    let srv = TestServer::start_with(b, &[("RUST_LOG", "debug")]).await;
    let (_, token) = merchant(&srv).await;
    let hint = nnin(100);
    srv.admin(&[
        "users",
        "create",
        "--nnin",
        &hint,
        "--given-name",
        "Kari",
        "--family-name",
        "N",
        "--birthdate",
        "1985-05-15",
    ]);
    let created = srv
        .post_json(
            "/permissions/v1/",
            Some(&token),
            &registration(REFERENCE_STATEMENT, "payment.v1", &hint),
        )
        .await;
    assert!(!created.expect(201).to_string().contains(&hint));
    let id = created.str("id");
    let got = srv
        .get_bearer(&format!("/permissions/v1/{id}"), &token)
        .await;
    assert!(!got.body.to_string().contains(&hint));
    srv.post_json(
        "/permissions/v1/user-exists",
        Some(&token),
        &json!({"loginHint": [{"scheme": "nnin", "value": hint}]}),
    )
    .await;
    let mut bad = hint.clone().into_bytes();
    bad[10] = if bad[10] == b'0' { b'1' } else { b'0' };
    let bad = String::from_utf8(bad).unwrap();
    let err = srv
        .post_json(
            "/permissions/v1/",
            Some(&token),
            &registration(&statement("z"), "authentication.v1", &bad),
        )
        .await;
    assert!(!err.expect(400).to_string().contains(&bad));
    let logs = srv.logs();
    assert!(
        logs.contains("POST /permissions/v1/"),
        "the log was captured"
    );
    assert!(
        !logs.contains(&hint) && !logs.contains(&bad),
        "an NNIN reached the log"
    );
    assert!(!logs.contains(&token), "a token reached the log");
}

on_both_backends!(
    reference_example_registers_and_reads_back,
    every_rule_is_enforced_with_a_precise_error,
    nonces_are_single_use_per_client_even_concurrently,
    other_clients_see_nothing_and_grants_verify,
    expiry_follows_the_clock,
    user_exists_means_an_active_device,
    nnins_never_reach_the_logs,
);
