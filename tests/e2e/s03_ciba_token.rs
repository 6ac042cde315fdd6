//! Issue 5 over real HTTP on SQLite and PostgreSQL: the CIBA token endpoint and ID tokens.
#![allow(clippy::unwrap_used)]

use crate::support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_store::schema::auth_requests;
use diesel::prelude::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{json, Value};
use support::app::*;
use support::{with_assertion, Backend, Reply, TestServer};

const CIBA: &str = "urn:openid:params:grant-type:ciba";
const FAST: &[(&str, &str)] = &[("CIBA_POLL_INTERVAL", "1")];

/// Start an App2App request and return (auth_req_id, ref, permission id).
async fn started(
    srv: &TestServer,
    m: &Merchant,
    app: &App,
    scope: &str,
    extra: &[(&str, &str)],
) -> (String, String, String) {
    let created = m
        .register(
            srv,
            &payment_statement(),
            "payment.v1",
            &app.nnin,
            "app2app",
        )
        .await;
    let pt = created["permissionToken"].as_str().unwrap().to_owned();
    let di = device_info(IPHONE);
    let mut fields = vec![
        ("login_hint_token", pt.as_str()),
        ("scope", scope),
        ("device_info", di.as_str()),
    ];
    fields.extend_from_slice(extra);
    let s = m.app_authorize(srv, &fields).await;
    s.ok();
    (
        s.str("auth_req_id").to_owned(),
        ref_of(s.str("authorize_uri")),
        created["id"].as_str().unwrap().to_owned(),
    )
}

/// The request's polling interval as the database holds it.
fn interval_of(srv: &TestServer, id: String) -> i64 {
    srv.store()
        .read(move |c| {
            Ok(auth_requests::table
                .find(&id)
                .select(auth_requests::interval_secs)
                .first::<i64>(c)?)
        })
        .unwrap()
}

/// Validate an ID token exactly as the reference document's step 11 says.
fn validate_id_token(id_token: &str, discovery: &Value, jwks: &Value, client_id: &str) -> Value {
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    let algs = discovery["id_token_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(
        algs.iter()
            .any(|a| a.as_str() == Some(&format!("{:?}", header.alg))),
        "alg is advertised"
    );
    let set: JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let key = DecodingKey::from_jwk(
        set.find(header.kid.as_deref().unwrap())
            .expect("kid in the JWKS"),
    )
    .unwrap();
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[discovery["issuer"].as_str().unwrap()]);
    v.set_audience(&[client_id]);
    v.leeway = 0;
    let claims = jsonwebtoken::decode::<Value>(id_token, &key, &v)
        .unwrap()
        .claims;
    assert!(
        claims["iat"].as_i64().unwrap() <= now(),
        "iat not in the future"
    );
    assert!(claims["exp"].as_i64().unwrap() > now());
    claims
}

async fn reference_document_flow(b: Backend) {
    let srv = TestServer::start(b).await;
    let user_app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let (client_id, secret) = srv.create_client(SCOPES, &["--callback-uri", CALLBACK]);
    // steps 2-4: configuration, access token, the biometrics configuration
    let discovery = srv.get("/.well-known/openid-configuration").await.body;
    let token_path = discovery["token_endpoint"]
        .as_str()
        .unwrap()
        .trim_start_matches(&srv.base)
        .to_owned();
    let tok = srv
        .post(
            &token_path,
            Some((&client_id, &secret)),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "permissions/app2app permissions/client"),
            ],
        )
        .await;
    tok.ok();
    let access_token = tok.str("access_token").to_owned();
    let m = Merchant {
        id: client_id.clone(),
        secret: secret.clone(),
        token: access_token.clone(),
    };
    // step 5: the permission, byte for byte
    let created = m
        .register(
            &srv,
            REFERENCE_STATEMENT,
            "payment.v1",
            &user_app.nnin,
            "app2app",
        )
        .await;
    let pt = created["permissionToken"].as_str().unwrap();
    // steps 6-7: device info and app-authorize, with the document's own requested_expriy spelling
    let di = URL_SAFE_NO_PAD.encode(r#"{"p":"ios","ma":"Apple","mo":"iPhone11,2"}"#);
    let s = m
        .app_authorize(
            &srv,
            &[
                ("login_hint_token", pt),
                ("scope", "openid"),
                ("device_info", &di),
                ("requested_expriy", "300"),
            ],
        )
        .await;
    s.ok();
    let auth_req_id = s.str("auth_req_id");
    // step 10 before the user is done
    let assertion = with_assertion(
        &access_token,
        &[("grant_type", CIBA), ("auth_req_id", auth_req_id)],
    );
    let r = srv.post(&token_path, None, &assertion).await;
    r.expect_error(400, "authorization_pending");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // step 8: the user approves in the app
    user_app
        .approve(&srv, &ref_of(s.str("authorize_uri")))
        .await
        .ok();
    // An approved request is redeemed at once: pacing applies to pending requests only.
    let tokens = srv.post(&token_path, None, &assertion).await;
    let body = tokens.ok();
    assert_eq!(
        (tokens.header("cache-control"), tokens.header("pragma")),
        (Some("no-store"), Some("no-cache"))
    );
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().unwrap() > 0 && body["access_token"].is_string());
    // step 11
    let jwks = srv
        .get(
            discovery["jwks_uri"]
                .as_str()
                .unwrap()
                .trim_start_matches(&srv.base),
        )
        .await
        .body;
    let claims = validate_id_token(tokens.str("id_token"), &discovery, &jwks, &client_id);
    assert_eq!(claims["acr"], "http://eidas.europa.eu/LoA/substantial");
    assert_eq!(claims["sub"], user_app.sub.as_str());
    assert_ne!(claims["sub"], user_app.nnin.as_str());
    assert_eq!(claims["azp"], client_id.as_str());
    assert_eq!(
        claims["urn:openid:params:jwt:claim:auth_req_id"],
        auth_req_id
    );
    assert_eq!(claims["permission_id"], created["id"]);
    let digest =
        ciba_domain::secret::sha256_b64url(&URL_SAFE_NO_PAD.decode(REFERENCE_STATEMENT).unwrap());
    assert_eq!(claims["permission_digest"], digest.as_str());
    assert_eq!(claims["amr"], json!(["hwk", "face"]));
    assert!(claims["auth_time"].as_i64().unwrap() <= claims["iat"].as_i64().unwrap());
    assert!(
        claims.get("name").is_none() && claims.get("sub_nnin").is_none(),
        "no profile without the scope"
    );
    // single use
    let again = srv.post(&token_path, None, &assertion).await;
    again.expect_error(400, "invalid_grant");
    let perm = srv
        .get_bearer(
            &format!("/permissions/v1/{}", created["id"].as_str().unwrap()),
            &access_token,
        )
        .await;
    assert_eq!(perm["status"], "granted");
    // the user's access token (from the redemption above) does not authenticate the merchant
    srv.get_bearer(
        &format!("/permissions/v1/{}", created["id"].as_str().unwrap()),
        tokens.str("access_token"),
    )
    .await
    .expect(401);
}

async fn every_error_row(b: Backend) {
    let srv = TestServer::start_with(b, FAST).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let other = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;

    m.poll(&srv, "no-such-request")
        .await
        .expect_error(400, "invalid_grant");
    let (id, link_ref, pid) = started(&srv, &m, &app, "openid", &[]).await;
    let r = other.poll(&srv, &id).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "invalid_grant"),
        "another client's request: {r}"
    );
    m.poll(&srv, &id)
        .await
        .expect_error(400, "authorization_pending");

    // too fast: slow_down, and the interval grows by 5 s each time, in the database
    m.poll(&srv, &id).await.expect_error(400, "slow_down");
    assert_eq!(interval_of(&srv, id.clone()), 6);
    assert_eq!(m.poll(&srv, &id).await.error(), "slow_down");
    assert_eq!(interval_of(&srv, id.clone()), 11);

    // declined
    app.decline(&srv, &link_ref).await;
    m.poll(&srv, &id).await.expect_error(400, "access_denied");
    assert_eq!(
        srv.get_bearer(&format!("/permissions/v1/{pid}"), &m.token)
            .await["status"],
        "declined"
    );

    // a well-paced client is never told to slow down
    let (id2, _, _) = started(&srv, &m, &app, "openid", &[]).await;
    for _ in 0..3 {
        let r = m.poll(&srv, &id2).await;
        assert_eq!(r.error(), "authorization_pending", "{r}");
        srv.advance(std::time::Duration::from_millis(1050));
    }
}

async fn expiry_while_polling(b: Backend) {
    let srv = TestServer::start_with(b, FAST).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let (id, link_ref, pid) = started(&srv, &m, &app, "openid", &[("requested_expiry", "2")]).await;
    assert_eq!(m.poll(&srv, &id).await.error(), "authorization_pending");
    srv.advance(std::time::Duration::from_millis(2100));
    m.poll(&srv, &id).await.expect_error(400, "expired_token");
    assert_eq!(m.poll(&srv, &id).await.error(), "expired_token");
    assert_eq!(
        srv.get_bearer(&format!("/permissions/v1/{pid}"), &m.token)
            .await["status"],
        "expired"
    );
    app.approve(&srv, &link_ref).await.expect(409);
}

async fn concurrent_polls_redeem_once(b: Backend) {
    let srv = TestServer::start_with(b, FAST).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let (id, link_ref, _) = started(&srv, &m, &app, "openid", &[]).await;
    app.approve(&srv, &link_ref).await;
    let polls = (0..32).map(|_| m.poll(&srv, &id));
    let results = futures_util::future::join_all(polls).await;
    let ok = results.iter().filter(|r| r.status == 200).count();
    let refused = results
        .iter()
        .filter(|r| r.status == 400 && r.error() == "invalid_grant")
        .count();
    assert_eq!(
        (ok, refused),
        (1, 31),
        "{:?}",
        results.iter().map(Reply::to_string).collect::<Vec<_>>()
    );
}

/// Polls that arrive together are recorded together (one statement per batch): each request
/// still answers exactly as if polled alone. Four simultaneous polls of each of eight pending
/// requests: per request one `authorization_pending`, the three others too early.
async fn simultaneous_polls_of_many_pending_requests(b: Backend) {
    let srv = TestServer::start_with(b, &[("CIBA_POLL_INTERVAL", "5")]).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(started(&srv, &m, &app, "openid", &[]).await.0);
    }
    let polls = ids.iter().flat_map(|id| (0..4).map(|_| m.poll(&srv, id)));
    let results = futures_util::future::join_all(polls).await;
    for (id, answers) in ids.iter().zip(results.chunks(4)) {
        let mut errors: Vec<&str> = answers
            .iter()
            .map(|r| {
                r.expect(400);
                r.str("error")
            })
            .collect();
        errors.sort_unstable();
        assert_eq!(
            errors,
            [
                "authorization_pending",
                "slow_down",
                "slow_down",
                "slow_down"
            ],
            "{id}"
        );
    }
    // Every request now waits longer: all eight at once are too early again.
    let again = futures_util::future::join_all(ids.iter().map(|id| m.poll(&srv, id))).await;
    assert!(again.iter().all(|r| r.error() == "slow_down"));
    // Every one of the 40 polls went through exactly one batch.
    let metrics = srv.metrics().await;
    let value = |name: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(name)).unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("ciba_poll_batch_size_sum "), 40.0, "{metrics}");
    let batches = value("ciba_poll_batch_size_count ");
    assert!((1.0..=40.0).contains(&batches), "{metrics}");
}

async fn claims_follow_scope_entitlement_and_alg(b: Backend) {
    let srv = TestServer::start_with(b, FAST).await;
    let scopes = "permissions/client permissions/app2app openid profile sub_nnin sub_bankid";
    let m = Merchant::new(&srv, scopes, &["--sub-nnin", "--id-token-alg", "RS256"]).await;
    let hint = nnin(100);
    srv.admin(&[
        "users",
        "create",
        "--nnin",
        &hint,
        "--given-name",
        "Kari",
        "--family-name",
        "Nordmann",
        "--birthdate",
        "1985-05-15",
        "--bankid-pid",
        "9578-6000-4-123456",
    ]);
    let app = App::enroll_existing(&srv, &hint, String::new(), IPHONE).await;
    let (id, link_ref, _) =
        started(&srv, &m, &app, "openid profile sub_nnin sub_bankid", &[]).await;
    app.approve(&srv, &link_ref).await;
    let tokens = m.poll(&srv, &id).await;
    tokens.ok();
    let discovery = srv.get("/.well-known/openid-configuration").await.body;
    let jwks = srv.get("/oidc/v1/jwks").await.body;
    let id_token = tokens.str("id_token");
    assert_eq!(
        jsonwebtoken::decode_header(id_token).unwrap().alg,
        jsonwebtoken::Algorithm::RS256
    );
    let claims = validate_id_token(id_token, &discovery, &jwks, &m.id);
    assert_eq!(claims["name"], "Kari Nordmann");
    assert_eq!(
        (
            claims["given_name"].as_str(),
            claims["family_name"].as_str()
        ),
        (Some("Kari"), Some("Nordmann"))
    );
    assert_eq!(claims["birthdate"], "1985-05-15");
    assert!(claims["updated_at"].is_i64());
    assert_eq!(claims["sub_nnin"], hint.as_str());
    assert_eq!(claims["sub_bankid"], "9578-6000-4-123456");
}

/// Hold the request's row in another transaction for 400 ms (as a decision being committed
/// or the worker's expiry sweep would), run `then` in it before it commits, and poll meanwhile.
async fn poll_while_held(srv: &TestServer, m: &Merchant, id: &str, then: &'static str) -> Reply {
    let (url, held_id) = (srv.db.url.clone(), id.to_owned());
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
    let holder = std::thread::spawn(move || {
        let mut c = diesel::PgConnection::establish(&url).unwrap();
        c.transaction(|c| {
            diesel::sql_query("SELECT 1 FROM auth_requests WHERE id = $1 FOR NO KEY UPDATE")
                .bind::<diesel::sql_types::Text, _>(&held_id)
                .execute(c)?;
            locked_tx.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(400));
            diesel::sql_query(then)
                .bind::<diesel::sql_types::Text, _>(&held_id)
                .execute(c)?;
            Ok::<_, diesel::result::Error>(())
        })
        .unwrap();
    });
    locked_rx.await.unwrap();
    let r = m.poll(srv, id).await;
    holder.join().unwrap();
    r
}

/// A well-paced poll that arrives while another transaction holds the request's row is not
/// punished: the batch skips the held row, and the careful path must wait for it and record
/// the poll (or answer what the other transaction decided), not answer `slow_down` and grow
/// the interval. PostgreSQL only: SQLite has no row locks (its writers wait for the one writer
/// lock instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_row_does_not_make_a_well_paced_poll_too_fast() {
    // A long interval: "polling again at once" must stay too fast on a slow machine too.
    let srv = TestServer::start_with(Backend::Postgres, &[("CIBA_POLL_INTERVAL", "30")]).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let (id, _, _) = started(&srv, &m, &app, "openid", &[]).await;
    poll_while_held(&srv, &m, &id, "SELECT $1")
        .await
        .expect_error(400, "authorization_pending");
    assert_eq!(
        interval_of(&srv, id.clone()),
        30,
        "the interval must not grow"
    );
    // The poll was recorded: polling again at once is too fast.
    assert_eq!(m.poll(&srv, &id).await.error(), "slow_down");

    // The holder approves before it lets go: the waiting poll redeems the approval.
    let (id, _, _) = started(&srv, &m, &app, "openid", &[]).await;
    let approve = "UPDATE auth_requests SET status = 'approved', decided_at = 1 WHERE id = $1";
    let r = poll_while_held(&srv, &m, &id, approve).await;
    assert!(r.ok()["id_token"].is_string(), "{r}");
}

on_both_backends!(
    reference_document_flow,
    every_error_row,
    expiry_while_polling,
    concurrent_polls_redeem_once,
    simultaneous_polls_of_many_pending_requests,
    claims_follow_scope_entitlement_and_alg,
);
