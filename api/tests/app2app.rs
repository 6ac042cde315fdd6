//! Issue 4 over real HTTP on SQLite and PostgreSQL: app-authorize with device matching, the
//! universal link, bc-authorize, and the authenticating app's API with real device keys.
#![allow(clippy::unwrap_used)]

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_store::schema::{auth_requests, permissions};
use diesel::prelude::*;
use serde_json::{json, Value};
use support::app::*;
use support::keys::EcKey;
use support::{Backend, TestServer};

fn nnin(from: u32) -> String {
    ciba_domain::nnin::first_valid("150585", from).unwrap()
}

async fn start(
    srv: &TestServer,
    m: &Merchant,
    app_nnin: &str,
    device: (&str, &str, &str),
) -> (u16, Value) {
    let created = m
        .register(srv, &payment_statement(), "payment.v1", app_nnin, "app2app")
        .await;
    let pt = created["permissionToken"].as_str().unwrap().to_owned();
    m.app_authorize(
        srv,
        &[
            ("login_hint_token", &pt),
            ("scope", "openid profile"),
            ("device_info", &device_info(device)),
        ],
    )
    .await
}

async fn approve_flow_end_to_end(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let created = m
        .register(
            &srv,
            REFERENCE_STATEMENT,
            "payment.v1",
            &app.nnin,
            "app2app",
        )
        .await;
    let pid = created["id"].as_str().unwrap().to_owned();
    let pt = created["permissionToken"].as_str().unwrap().to_owned();
    let (status, started) = m
        .app_authorize(
            &srv,
            &[
                ("login_hint_token", &pt),
                ("scope", "openid profile"),
                ("device_info", &device_info(IPHONE)),
                ("requested_expiry", "300"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{started}");
    let uri = started["authorize_uri"].as_str().unwrap();
    assert!(
        uri.starts_with(&format!("{}/app2app/authorize?ref=", srv.base)),
        "{uri}"
    );
    let link_ref = ref_of(uri);
    assert_ne!(link_ref, started["auth_req_id"].as_str().unwrap());
    let expires_in = started["expires_in"].as_i64().unwrap();
    assert!((290..=300).contains(&expires_in), "{expires_in}");
    assert!(started["interval"].as_i64().unwrap() >= 1);

    // the app sees it and shows the statement as registered
    let pending = app.pending(&srv).await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["ref"], link_ref.as_str());
    let (_, view) = app
        .get(&srv, &format!("/app/v1/auth-requests/{link_ref}"))
        .await;
    let statement: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(REFERENCE_STATEMENT).unwrap()).unwrap();
    assert_eq!(view["statement"], statement);
    assert_eq!(view["permission"], REFERENCE_STATEMENT);
    assert_eq!(
        (
            view["type"].as_str(),
            view["status"].as_str(),
            view["loa"].as_str()
        ),
        (Some("payment.v1"), Some("pending"), Some("sub"))
    );
    assert_eq!(view["client_name"], "Test Shop");
    assert_eq!(view["binding_message"], created["bindingMessage"]);

    let (status, decided) = app.decide(&srv, &link_ref, "approve").await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(
        decided,
        json!({"status": "approved", "redirect_uri": CALLBACK})
    );
    let (status, again) = app.decide(&srv, &link_ref, "decline").await;
    assert_eq!(
        (status, again["error"].as_str()),
        (409, Some("request_not_pending"))
    );

    let (_, perm) = srv
        .get_bearer(&format!("/permissions/v1/{pid}"), &m.token)
        .await;
    assert_eq!(perm["status"], "granted");
    let (status, grant) = srv
        .get_bearer(&format!("/permissions/v1/{pid}/grant"), &m.token)
        .await;
    assert_eq!(status, 200);
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(grant["grant"].as_str().unwrap().split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (claims["sub"].as_str(), claims["amr"].clone()),
        (Some(app.sub.as_str()), json!(["hwk", "face"]))
    );
    assert!(app.pending(&srv).await.is_empty());
    let page = srv
        .http
        .get(format!("{}/app2app/authorize?ref={link_ref}", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 410);
}

async fn decline_is_recorded(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let (_, started) = start(&srv, &m, &app.nnin, IPHONE).await;
    let link_ref = ref_of(started["authorize_uri"].as_str().unwrap());
    let (status, decided) = app.decide(&srv, &link_ref, "decline").await;
    assert_eq!(
        (
            status,
            decided["status"].as_str(),
            decided["redirect_uri"].as_str()
        ),
        (200, Some("declined"), Some(CALLBACK))
    );
    let id = started["auth_req_id"].as_str().unwrap().to_owned();
    let status: String = srv
        .store()
        .read(move |c| {
            Ok(auth_requests::table
                .find(&id)
                .select(auth_requests::status)
                .first(c)?)
        })
        .unwrap();
    assert_eq!(status, "declined");
}

async fn device_matching_is_exact(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    for presented in [
        ("android", "Apple", "iPhone11,2"),
        ("ios", "Samsung", "iPhone11,2"),
        ("ios", "Apple", "iPhone12,3"),
        ("ios", "apple", "iPhone11,2"),
    ] {
        let (status, err) = start(&srv, &m, &app.nnin, presented).await;
        assert_eq!(
            (status, err["error"].as_str()),
            (400, Some("device_mismatch")),
            "{presented:?}"
        );
    }
    // android never matches, even when enrolled exactly so
    let droid = App::enroll(&srv, &nnin(200), ("android", "Samsung", "SM-G991B")).await;
    let (status, err) = start(&srv, &m, &droid.nnin, ("android", "Samsung", "SM-G991B")).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("device_mismatch"))
    );
}

async fn unknown_users_and_revoked_devices(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let (status, err) = start(&srv, &m, &nnin(300), IPHONE).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("unknown_user_id")),
        "no such user"
    );
    srv.admin(&[
        "users",
        "create",
        "--nnin",
        &nnin(400),
        "--given-name",
        "A",
        "--family-name",
        "B",
        "--birthdate",
        "1985-05-15",
    ]);
    let (status, err) = start(&srv, &m, &nnin(400), IPHONE).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("unknown_user_id")),
        "no device"
    );
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    srv.admin(&["devices", "revoke", &app.device_id]);
    let (status, err) = start(&srv, &m, &app.nnin, IPHONE).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("unknown_user_id")),
        "revoked device"
    );
    let (status, err) = app.get(&srv, "/app/v1/auth-requests").await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("invalid_token")),
        "revoked devices can do nothing"
    );
}

async fn permission_tokens_are_checked(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let other = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let di = device_info(IPHONE);
    let fields = |pt: &str| {
        vec![
            ("login_hint_token", pt.to_owned()),
            ("scope", "openid".to_owned()),
            ("device_info", di.clone()),
        ]
    };
    let call = |who: &Merchant, pt: String| {
        let f = fields(&pt);
        let srv = &srv;
        let who_token = who.token.clone();
        async move {
            let mut form: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            form.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ));
            form.push(("client_assertion", &who_token));
            let (s, _, b) = srv.post_form("/oidc/v1/app-authorize", None, &form).await;
            (s, b)
        }
    };
    let created = m
        .register(
            &srv,
            &nonce_statement(),
            "authentication.v1",
            &app.nnin,
            "app2app",
        )
        .await;
    let pt = created["permissionToken"].as_str().unwrap().to_owned();
    let (status, err) = call(&other, pt.clone()).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_request")),
        "another client's token: {err}"
    );
    assert_eq!(call(&m, pt.clone()).await.0, 200);
    let (status, err) = call(&m, pt).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_request")),
        "reused"
    );
    assert!(err["error_description"]
        .as_str()
        .unwrap()
        .contains("already used"));

    let created = m
        .register(
            &srv,
            &nonce_statement(),
            "authentication.v1",
            &app.nnin,
            "app2app",
        )
        .await;
    let pid = created["id"].as_str().unwrap().to_owned();
    srv.store()
        .read(move |c| {
            Ok(diesel::update(permissions::table.find(&pid))
                .set(permissions::exp.eq(now() - 1))
                .execute(c)?)
        })
        .unwrap();
    let (status, err) = call(&m, created["permissionToken"].as_str().unwrap().to_owned()).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("expired_login_hint_token"))
    );
    let (status, err) = call(&m, "not-a-token".into()).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // a ciba permission cannot start app2app
    let ciba = m
        .register(
            &srv,
            &nonce_statement(),
            "authentication.v1",
            &app.nnin,
            "ciba",
        )
        .await;
    let (status, _) = call(&m, ciba["permissionToken"].as_str().unwrap().to_owned()).await;
    assert_eq!(status, 400);
}

async fn request_fields_are_validated(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    async fn fresh(srv: &TestServer, m: &Merchant, nnin: &str) -> String {
        m.register(
            srv,
            &nonce_statement(),
            "authentication.v1",
            nnin,
            "app2app",
        )
        .await["permissionToken"]
            .as_str()
            .unwrap()
            .to_owned()
    }
    let di = device_info(IPHONE);
    let partial_info = URL_SAFE_NO_PAD.encode("{\"p\":\"ios\"}");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("scope", "profile"), ("device_info", &di)],
            "invalid_scope",
        ),
        (
            vec![("scope", "openid sub_nnin"), ("device_info", &di)],
            "invalid_scope",
        ),
        (
            vec![("scope", "openid email"), ("device_info", &di)],
            "invalid_scope",
        ),
        (
            vec![("scope", "openid"), ("device_info", "!!!")],
            "invalid_request",
        ),
        (
            vec![("scope", "openid"), ("device_info", &partial_info)],
            "invalid_request",
        ),
        (vec![("scope", "openid")], "invalid_request"),
        (
            vec![
                ("scope", "openid"),
                ("device_info", &di),
                ("requested_expiry", "-1"),
            ],
            "invalid_request",
        ),
    ];
    for (fields, code) in cases {
        let pt = fresh(&srv, &m, &app.nnin).await;
        let mut all = vec![("login_hint_token", pt.as_str())];
        all.extend(fields.iter().copied());
        let (status, err) = m.app_authorize(&srv, &all).await;
        assert_eq!(
            (status, err["error"].as_str()),
            (400, Some(code)),
            "{fields:?}: {err}"
        );
    }
    let (status, err) = m
        .app_authorize(&srv, &[("scope", "openid"), ("device_info", &di)])
        .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_request")),
        "no login_hint_token"
    );
    // requested_expiry is clamped to the server maximum
    let pt = fresh(&srv, &m, &app.nnin).await;
    let (status, ok) = m
        .app_authorize(
            &srv,
            &[
                ("login_hint_token", &pt),
                ("scope", "openid"),
                ("device_info", &di),
                ("requested_expiry", "100000"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert!(ok["expires_in"].as_i64().unwrap() <= 600);
    // unknown fields are ignored (RFC 6749 §3.1)
    let pt = fresh(&srv, &m, &app.nnin).await;
    assert_eq!(
        m.app_authorize(
            &srv,
            &[
                ("login_hint_token", &pt),
                ("scope", "openid"),
                ("device_info", &di),
                ("requested_expriy", "300")
            ]
        )
        .await
        .0,
        200
    );

    // a client without permissions/app2app, and a ping client without a notification token
    let weak = Merchant::new(&srv, "permissions/client permissions/ciba openid", &[]).await;
    let (status, err) = weak
        .app_authorize(
            &srv,
            &[
                ("login_hint_token", "x"),
                ("scope", "openid"),
                ("device_info", &di),
            ],
        )
        .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (403, Some("unauthorized_client"))
    );
    let ping = Merchant::new(
        &srv,
        SCOPES,
        &[
            "--delivery-mode",
            "ping",
            "--notification-endpoint",
            "https://merchant.example/ping",
        ],
    )
    .await;
    let pt = fresh(&srv, &ping, &app.nnin).await;
    let (status, err) = ping
        .app_authorize(
            &srv,
            &[
                ("login_hint_token", &pt),
                ("scope", "openid"),
                ("device_info", &di),
            ],
        )
        .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, _) = ping
        .app_authorize(
            &srv,
            &[
                ("login_hint_token", &pt),
                ("scope", "openid"),
                ("device_info", &di),
                ("client_notification_token", "tok-123"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    let (status, err) = m.app_authorize(&srv, &[("login_hint_token", "x")]).await;
    assert_eq!(status, 400, "{err}");
    let (status, _, err) = srv
        .post_form("/oidc/v1/app-authorize", None, &[("login_hint_token", "x")])
        .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

async fn decisions_are_verified(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let (_, started) = start(&srv, &m, &app.nnin, IPHONE).await;
    let link_ref = ref_of(started["authorize_uri"].as_str().unwrap());
    let (_, view) = app
        .get(&srv, &format!("/app/v1/auth-requests/{link_ref}"))
        .await;
    let digest = view["permission_digest"].as_str().unwrap().to_owned();

    let forger = EcKey {
        kid: app.device_id.clone(),
        ..EcKey::generate("x")
    };
    let forged = forger.sign(&json!({"ref": link_ref, "decision": "approve", "permission_digest": digest, "iat": now(), "jti": jti()}));
    let (status, err) = app.send_decision(&srv, &link_ref, &forged).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_request")),
        "forged signature"
    );
    let (status, err) = app
        .send_decision(
            &srv,
            &link_ref,
            &app.sign_decision(&link_ref, "approve", "d3JvbmcgZGlnZXN0"),
        )
        .await;
    assert!(err["error_description"]
        .as_str()
        .unwrap()
        .contains("permission_digest"));
    assert_eq!(status, 400, "wrong digest");
    let (status, _) = app
        .send_decision(
            &srv,
            "another-ref",
            &app.sign_decision(&link_ref, "approve", &digest),
        )
        .await;
    assert_eq!(status, 404);
    let (_, view) = app
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
    let (status, err) = other
        .send_decision(
            &srv,
            &link_ref,
            &other.sign_decision(&link_ref, "approve", &digest),
        )
        .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (403, Some("access_denied"))
    );

    // racing decisions: exactly one wins
    let attempts = (0..8).map(|i| {
        let d = if i % 2 == 0 { "approve" } else { "decline" };
        let signed = app.sign_decision(&link_ref, d, &digest);
        let srv = &srv;
        let app = &app;
        let link_ref = link_ref.clone();
        async move { app.send_decision(srv, &link_ref, &signed).await }
    });
    let results = futures_util::future::join_all(attempts).await;
    let won = results.iter().filter(|(s, _)| *s == 200).count();
    let lost = results
        .iter()
        .filter(|(s, e)| *s == 409 && e["error"] == "request_not_pending")
        .count();
    assert_eq!((won, lost), (1, 7), "{results:?}");
}

async fn too_late_and_device_jwt_rules(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let (_, started) = start(&srv, &m, &app.nnin, IPHONE).await;
    let link_ref = ref_of(started["authorize_uri"].as_str().unwrap());
    let id = started["auth_req_id"].as_str().unwrap().to_owned();
    srv.store()
        .read(move |c| {
            Ok(diesel::update(auth_requests::table.find(&id))
                .set(auth_requests::expires_at.eq(now() - 1))
                .execute(c)?)
        })
        .unwrap();
    let (status, err) = app.decide(&srv, &link_ref, "approve").await;
    assert_eq!(
        (status, err["error"].as_str()),
        (409, Some("request_not_pending")),
        "after expiry"
    );
    assert!(app.pending(&srv).await.is_empty());
    let page = srv
        .http
        .get(srv.url(&format!("/app2app/authorize?ref={link_ref}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 410);

    let t = now();
    let jwt = |claims: Value| app.key.sign(&claims);
    let replayed =
        jwt(json!({"sub": app.device_id, "aud": srv.base, "iat": t, "exp": t + 60, "jti": "once"}));
    assert_eq!(
        srv.get_bearer("/app/v1/auth-requests", &replayed).await.0,
        200
    );
    for (what, token) in [
        ("replayed jti", replayed),
        ("lives too long", jwt(json!({"sub": app.device_id, "aud": srv.base, "iat": t, "exp": t + 600, "jti": jti()}))),
        ("wrong audience", jwt(json!({"sub": app.device_id, "aud": "https://other", "iat": t, "exp": t + 60, "jti": jti()}))),
        ("expired", jwt(json!({"sub": app.device_id, "aud": srv.base, "iat": t - 300, "exp": t - 240, "jti": jti()}))),
        ("sub is not the device", jwt(json!({"sub": "someone", "aud": srv.base, "iat": t, "exp": t + 60, "jti": jti()}))),
        ("unknown key", EcKey { kid: app.device_id.clone(), ..EcKey::generate("x") }.sign(&json!({"sub": app.device_id, "aud": srv.base, "iat": t, "exp": t + 60, "jti": jti()}))),
    ] {
        let (status, err) = srv.get_bearer("/app/v1/auth-requests", &token).await;
        assert_eq!((status, err["error"].as_str()), (401, Some("invalid_token")), "{what}");
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
    let (_, started) = start(&srv, &m, &app.nnin, IPHONE).await;
    let resp = srv
        .http
        .get(started["authorize_uri"].as_str().unwrap())
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
    assert_eq!(
        srv.http
            .get(srv.url("/app2app/authorize"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let aasa = srv
        .http
        .get(srv.url("/.well-known/apple-app-site-association"))
        .send()
        .await
        .unwrap();
    assert_eq!(aasa.status(), 200);
    assert_eq!(aasa.headers()["content-type"], "application/json");
    let doc: Value = aasa.json().await.unwrap();
    assert_eq!(
        doc,
        json!({"applinks": {"details": [{"appIDs": [app_ids], "components": [{"/": "/app2app/*"}]}]}})
    );
    let (_, links) = srv.get_json("/.well-known/assetlinks.json").await;
    assert_eq!(links[0]["target"]["package_name"], "no.example.authapp");
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
    assert_eq!(srv.post_json("/app/v1/devices", None, &body).await.0, 201);
    let (status, err) = srv.post_json("/app/v1/devices", None, &body).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant"))
    );
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
        let (status, err) = srv.post_json("/app/v1/devices", None, &body).await;
        assert_eq!(
            (status, err["error"].as_str()),
            (400, Some("invalid_request")),
            "{what}"
        );
    }
    assert_eq!(srv.admin(&["devices", "list"]).as_array().unwrap().len(), 1);
}

async fn bc_authorize_flows(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let (status, started) = m
        .bc_authorize(
            &srv,
            &[
                ("login_hint", &app.nnin),
                ("scope", "openid"),
                ("binding_message", "K7Q-4MX"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{started}");
    assert!(
        started["auth_req_id"].is_string()
            && started["expires_in"].as_i64().unwrap() > 0
            && started["interval"].as_i64().unwrap() > 0
    );
    let pending = app.pending(&srv).await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["binding_message"], "K7Q-4MX");
    let (status, decided) = app
        .decide(&srv, pending[0]["ref"].as_str().unwrap(), "approve")
        .await;
    assert_eq!(
        (status, decided["status"].as_str()),
        (200, Some("approved"))
    );
    assert_eq!(decided["redirect_uri"], Value::Null);

    let ciba = m
        .register(
            &srv,
            &nonce_statement(),
            "authentication.v1",
            &app.nnin,
            "ciba",
        )
        .await;
    let pt = ciba["permissionToken"].as_str().unwrap();
    assert_eq!(
        m.bc_authorize(&srv, &[("login_hint_token", pt), ("scope", "openid")])
            .await
            .0,
        200
    );

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
            vec![("login_hint", "12345678901"), ("scope", "openid")],
            400,
            "unknown_user_id",
        ),
    ];
    for (fields, status, code) in cases {
        let (got, err) = m.bc_authorize(&srv, &fields).await;
        assert_eq!(
            (got, err["error"].as_str()),
            (status, Some(code)),
            "{fields:?}"
        );
    }
    let nobody = nnin(500);
    let (got, err) = m
        .bc_authorize(&srv, &[("login_hint", &nobody), ("scope", "openid")])
        .await;
    assert_eq!((got, err["error"].as_str()), (400, Some("unknown_user_id")));
}

on_both_backends!(
    approve_flow_end_to_end,
    decline_is_recorded,
    device_matching_is_exact,
    unknown_users_and_revoked_devices,
    permission_tokens_are_checked,
    request_fields_are_validated,
    decisions_are_verified,
    too_late_and_device_jwt_rules,
    fallback_page_and_well_known_files,
    enrollment_codes_are_single_use,
    bc_authorize_flows,
);
