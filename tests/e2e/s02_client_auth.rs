//! The reusable client-authentication function against a real database: Bearer access
//! tokens of this server and of a trusted external issuer (JWKS served locally).
#![allow(clippy::unwrap_used)]

use crate::support;

use ciba_api::auth::{authenticate, Endpoint, Method, OfferedCredentials};
use ciba_api::crypto::password::hash_secret;
use ciba_api::state::AppState;
use ciba_domain::client::SigningAlg;
use ciba_runtime::config::Config;
use ciba_runtime::crypto::jwt::{self, TYP_CLIENT_TOKEN};
use ciba_runtime::crypto::keyring::{self, Purpose};
use ciba_store::clients::{self, ClientRow};
use ciba_store::testing::TestDatabase;
use ciba_store::{DatabaseUrl, Store};
use serde_json::{json, Value};
use support::app::now;
use support::keys::EcKey;
use support::Backend;

const ISSUER: &str = "https://ciba.test";
const IDP: &str = "https://idp.test";

/// Serve `jwks` at http://127.0.0.1:PORT/jwks.
async fn jwks_server(jwks: Value) -> String {
    use warp::Filter;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let route = warp::path!("jwks").map(move || warp::reply::json(&jwks));
    tokio::spawn(warp::serve(route).incoming(listener).run());
    format!("http://{addr}/jwks")
}

struct Fixture {
    _db: TestDatabase,
    state: AppState,
    client_id: String,
    idp_key: EcKey,
}

async fn fixture(b: Backend) -> Fixture {
    let db = TestDatabase::create(b);
    let idp_key = EcKey::generate("idp-1");
    let jwks_uri = jwks_server(idp_key.jwks()).await;
    let ext = json!([{"issuer": IDP, "jwks_uri": jwks_uri, "audience": ISSUER}]).to_string();
    let vars = [
        ("DATABASE_URL", db.url.as_str()),
        ("CIBA_ISSUER", ISSUER),
        ("CIBA_KEY_ENCRYPTION_KEY", support::TEST_KEK),
        ("CIBA_EXTERNAL_ISSUERS", ext.as_str()),
    ];
    let config = Config::from_map(
        &vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
    .unwrap();
    let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 4).unwrap();
    store.migrate().unwrap();
    let state = AppState::new(config, store.clone()).unwrap();
    keyring::ensure_keys(&store, &state.kek, now()).unwrap();
    state.keys.reload(&store, now()).unwrap();
    let client_id = "merchant-1".to_owned();
    let row = ClientRow {
        id: client_id.clone(),
        name: "Merchant".into(),
        secret_hash: Some(hash_secret("secret").unwrap()),
        auth_method: "client_secret_basic".into(),
        previous_secret_hash: None,
        previous_secret_until: None,
        profile: None,
        tls_subject_dn: None,
        scopes: "permissions/client permissions/app2app openid".into(),
        callback_uris: "[]".into(),
        sub_nnin: false,
        jwks: None,
        jwks_uri: None,
        id_token_alg: "ES256".into(),
        delivery_mode: "poll".into(),
        notification_endpoint: None,
        disabled: false,
        created_at: now(),
        updated_at: now(),
    };
    store.read(|c| clients::insert(c, &row)).unwrap();
    Fixture {
        _db: db,
        state,
        client_id,
        idp_key,
    }
}

fn own_token(f: &Fixture, purpose: Purpose, typ: &str, claims: Value) -> String {
    let key = f
        .state
        .keys
        .signer(purpose, SigningAlg::Es256, now())
        .unwrap();
    jwt::sign(&key, typ, &claims).unwrap()
}

fn at_claims(f: &Fixture, scope: &str) -> Value {
    let t = now();
    json!({"iss": ISSUER, "sub": f.client_id, "aud": ISSUER, "client_id": f.client_id, "scope": scope,
           "iat": t, "exp": t + 300, "jti": ciba_domain::ids::random_id()})
}

async fn bearer(
    f: &Fixture,
    token: &str,
) -> Result<ciba_api::auth::Authenticated, ciba_api::error::ApiError> {
    let header = format!("Bearer {token}");
    let req = OfferedCredentials {
        authorization: Some(&header),
        form: None,
        endpoint: "https://ciba.test/permissions/v1/",
        kind: Endpoint::Api,
        cert: None,
        request_id: None,
        source: None,
    };
    authenticate(&f.state, req, now()).await
}

async fn bearer_access_tokens(b: Backend) {
    let f = fixture(b).await;
    let token = own_token(
        &f,
        Purpose::Oidc,
        TYP_CLIENT_TOKEN,
        at_claims(&f, "permissions/client permissions/text"),
    );
    let auth = bearer(&f, &token).await.unwrap();
    assert_eq!(auth.method, Method::AccessToken);
    assert_eq!(auth.client.id, f.client_id);
    // a scope the client is no longer registered for is dropped
    assert_eq!(auth.scopes.to_string(), "permissions/client");
    auth.require_scope("permissions/client").unwrap();
    let denied = auth.require_scope("permissions/app2app").unwrap_err();
    assert_eq!(
        (denied.error.status(), denied.code().as_str()),
        (403, "insufficient_scope")
    );
    assert!(denied
        .www_authenticate
        .unwrap()
        .contains("insufficient_scope"));

    let mut expired = at_claims(&f, "permissions/client");
    expired["exp"] = json!(now() - 120);
    let mut wrong_aud = at_claims(&f, "permissions/client");
    wrong_aud["aud"] = json!("https://elsewhere");
    let mut unknown_client = at_claims(&f, "permissions/client");
    unknown_client["client_id"] = json!("nobody");
    let cases = [
        (
            "expired",
            own_token(&f, Purpose::Oidc, TYP_CLIENT_TOKEN, expired),
        ),
        (
            "wrong audience",
            own_token(&f, Purpose::Oidc, TYP_CLIENT_TOKEN, wrong_aud),
        ),
        (
            "unregistered client",
            own_token(&f, Purpose::Oidc, TYP_CLIENT_TOKEN, unknown_client),
        ),
        (
            "an ID token is not an access token",
            own_token(
                &f,
                Purpose::Oidc,
                "JWT",
                at_claims(&f, "permissions/client"),
            ),
        ),
        (
            "signed by the grants key",
            own_token(
                &f,
                Purpose::Grants,
                TYP_CLIENT_TOKEN,
                at_claims(&f, "permissions/client"),
            ),
        ),
        ("not a JWT", "abc.def".to_owned()),
    ];
    for (what, token) in cases {
        let err = bearer(&f, &token).await.unwrap_err();
        assert_eq!(
            (err.error.status(), err.code().as_str()),
            (401, "invalid_client"),
            "{what}"
        );
        assert!(
            err.www_authenticate
                .as_deref()
                .unwrap()
                .starts_with("Bearer"),
            "{what}"
        );
    }
    // client secrets are not accepted outside the token and backchannel endpoints
    let req = OfferedCredentials {
        authorization: Some("Basic bWVyY2hhbnQtMTpzZWNyZXQ="),
        form: None,
        endpoint: "x",
        kind: Endpoint::Api,
        cert: None,
        request_id: None,
        source: None,
    };
    assert_eq!(
        authenticate(&f.state, req, now())
            .await
            .unwrap_err()
            .code()
            .as_str(),
        "invalid_client"
    );
}

async fn external_issuer_tokens(b: Backend) {
    let f = fixture(b).await;
    let t = now();
    let claims = |aud: &str| json!({"iss": IDP, "aud": aud, "azp": f.client_id, "scope": "permissions/client openid", "iat": t, "exp": t + 300});
    let auth = bearer(&f, &f.idp_key.sign(&claims(ISSUER))).await.unwrap();
    assert_eq!(auth.method, Method::ExternalToken);
    assert_eq!(auth.client.id, f.client_id);
    assert!(auth.scopes.contains("permissions/client"));

    let mut untrusted = claims(ISSUER);
    untrusted["iss"] = json!("https://untrusted.test");
    let mut expired = claims(ISSUER);
    expired["exp"] = json!(t - 120);
    let cases = [
        ("wrong audience", f.idp_key.sign(&claims("https://other"))),
        ("untrusted issuer", f.idp_key.sign(&untrusted)),
        ("expired", f.idp_key.sign(&expired)),
        (
            "key not in the issuer's JWKS",
            EcKey::generate("idp-1").sign(&claims(ISSUER)),
        ),
    ];
    for (what, token) in cases {
        let err = bearer(&f, &token).await.unwrap_err();
        assert_eq!(err.code().as_str(), "invalid_client", "{what}");
    }
}

on_both_backends!(bearer_access_tokens, external_issuer_tokens);
