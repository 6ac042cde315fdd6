//! Issue 4 over real HTTP on SQLite and PostgreSQL: app-authorize (device matching, permission
//! tokens, every error code of contract §5) and the decision it leads to.
#![allow(clippy::unwrap_used)]

use crate::support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_store::schema::{auth_requests, permissions};
use diesel::prelude::*;
use serde_json::{json, Value};
use support::app::*;
use support::{with_assertion, Backend, TestServer};

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
    let started = m
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
    started.ok();
    let uri = started.str("authorize_uri");
    assert!(
        uri.starts_with(&format!("{}/app2app/authorize?ref=", srv.base)),
        "{uri}"
    );
    let link_ref = ref_of(uri);
    assert_ne!(link_ref, started.str("auth_req_id"));
    let expires_in = started["expires_in"].as_i64().unwrap();
    assert!((290..=300).contains(&expires_in), "{expires_in}");
    assert!(started["interval"].as_i64().unwrap() >= 1);

    // the app sees it and shows the statement as registered
    let pending = app.pending(&srv).await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["ref"], link_ref.as_str());
    let view = app
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

    assert_eq!(
        app.approve(&srv, &link_ref).await.ok(),
        &json!({"status": "approved", "redirect_uri": CALLBACK})
    );
    app.decline(&srv, &link_ref)
        .await
        .expect_error(409, "request_not_pending");

    let perm = srv
        .get_bearer(&format!("/permissions/v1/{pid}"), &m.token)
        .await;
    assert_eq!(perm["status"], "granted");
    let grant = srv
        .get_bearer(&format!("/permissions/v1/{pid}/grant"), &m.token)
        .await;
    grant.ok();
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(grant.str("grant").split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (claims["sub"].as_str(), claims["amr"].clone()),
        (Some(app.sub.as_str()), json!(["hwk", "face"]))
    );
    assert!(app.pending(&srv).await.is_empty());
    srv.get(&format!("/app2app/authorize?ref={link_ref}"))
        .await
        .expect(410);
}

async fn decline_is_recorded(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let started = start(&srv, &m, &app.nnin, IPHONE).await;
    let link_ref = ref_of(started.str("authorize_uri"));
    let decided = app.decline(&srv, &link_ref).await;
    assert_eq!(
        (
            decided.status,
            decided["status"].as_str(),
            decided["redirect_uri"].as_str()
        ),
        (200, Some("declined"), Some(CALLBACK)),
        "{decided}"
    );
    let id = started.str("auth_req_id").to_owned();
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
        let r = start(&srv, &m, &app.nnin, presented).await;
        assert_eq!(
            (r.status, r.error()),
            (400, "device_mismatch"),
            "{presented:?}: {r}"
        );
    }
    // android never matches, even when enrolled exactly so
    let droid = App::enroll(&srv, &nnin(200), ("android", "Samsung", "SM-G991B")).await;
    start(&srv, &m, &droid.nnin, ("android", "Samsung", "SM-G991B"))
        .await
        .expect_error(400, "device_mismatch");
}

async fn unknown_users_and_revoked_devices(b: Backend) {
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let r = start(&srv, &m, &nnin(300), IPHONE).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "unknown_user_id"),
        "no such user: {r}"
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
    let r = start(&srv, &m, &nnin(400), IPHONE).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "unknown_user_id"),
        "no device: {r}"
    );
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    srv.admin(&["devices", "revoke", &app.device_id]);
    let r = start(&srv, &m, &app.nnin, IPHONE).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "unknown_user_id"),
        "revoked device: {r}"
    );
    let r = app.get(&srv, "/app/v1/auth-requests").await;
    assert_eq!(
        (r.status, r.error()),
        (401, "invalid_token"),
        "revoked devices can do nothing: {r}"
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
            let fields: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let form = with_assertion(&who_token, &fields);
            srv.post("/oidc/v1/app-authorize", None, &form).await
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
    let r = call(&other, pt.clone()).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "invalid_request"),
        "another client's token: {r}"
    );
    assert_eq!(call(&m, pt.clone()).await.status, 200);
    let r = call(&m, pt).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "invalid_request"),
        "reused: {r}"
    );
    assert!(r.str("error_description").contains("already used"));

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
    call(&m, created["permissionToken"].as_str().unwrap().to_owned())
        .await
        .expect_error(400, "expired_login_hint_token");
    call(&m, "not-a-token".into())
        .await
        .expect_error(400, "invalid_request");
    // a ciba permission cannot start app2app
    let ciba = m.ciba_permission_token(&srv, &app.nnin).await;
    call(&m, ciba).await.expect(400);
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
        let r = m.app_authorize(&srv, &all).await;
        assert_eq!((r.status, r.error()), (400, code), "{fields:?}: {r}");
    }
    let r = m
        .app_authorize(&srv, &[("scope", "openid"), ("device_info", &di)])
        .await;
    assert_eq!(
        (r.status, r.error()),
        (400, "invalid_request"),
        "no login_hint_token: {r}"
    );
    // requested_expiry is clamped to the server maximum
    let pt = fresh(&srv, &m, &app.nnin).await;
    let r = m
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
    assert!(r.ok()["expires_in"].as_i64().unwrap() <= 600);
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
        .status,
        200
    );

    // a client without permissions/app2app, and a ping client without a notification token
    let weak = Merchant::new(&srv, "permissions/client permissions/ciba openid", &[]).await;
    weak.app_authorize(
        &srv,
        &[
            ("login_hint_token", "x"),
            ("scope", "openid"),
            ("device_info", &di),
        ],
    )
    .await
    .expect_error(403, "unauthorized_client");
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
    ping.app_authorize(
        &srv,
        &[
            ("login_hint_token", &pt),
            ("scope", "openid"),
            ("device_info", &di),
        ],
    )
    .await
    .expect_error(400, "invalid_request");
    ping.app_authorize(
        &srv,
        &[
            ("login_hint_token", &pt),
            ("scope", "openid"),
            ("device_info", &di),
            ("client_notification_token", "tok-123"),
        ],
    )
    .await
    .ok();
    m.app_authorize(&srv, &[("login_hint_token", "x")])
        .await
        .expect(400);
    srv.post("/oidc/v1/app-authorize", None, &[("login_hint_token", "x")])
        .await
        .expect_error(401, "invalid_client");
}

on_both_backends!(
    approve_flow_end_to_end,
    decline_is_recorded,
    device_matching_is_exact,
    unknown_users_and_revoked_devices,
    permission_tokens_are_checked,
    request_fields_are_validated,
);
