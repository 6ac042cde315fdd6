//! Contract §11 (FAPI-CIBA) over real HTTP on both backends: a `fapi-ciba` client must use
//! its own keys and sign its requests, signed requests are refused for each broken rule,
//! tokens are bound to its certificate, and PS256 ID tokens verify against the JWKS. (Each
//! client's own method, registration rules and published keys: `s11_client_methods`.)
#![allow(clippy::unwrap_used)]

use crate::support;

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use support::app::{jti, nnin, now, App, IPHONE};
use support::keys::{verify_with_jwks, EcKey, RsaKey};
use support::tls::{ClientIdentity, Pki};
use support::{with_assertion, Backend, Reply, TestServer};

pub(crate) const SCOPES: &str = "permissions/client permissions/ciba openid";

pub(crate) fn jwks_file(keys: &[&Value]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("jwks-{}.json", jti()));
    std::fs::write(&path, json!({ "keys": keys }).to_string()).unwrap();
    path
}

/// `admin clients create` with `extra`; the whole JSON answer.
pub(crate) fn register(srv: &TestServer, extra: &[&str]) -> Value {
    let mut args = vec!["clients", "create", "--name", "Bank", "--scope", SCOPES];
    args.extend_from_slice(extra);
    srv.admin(&args)
}

/// A `private_key_jwt` for `client` at `aud`, signed by `sign`.
pub(crate) fn assertion(client: &str, aud: &str, sign: impl Fn(&Value) -> String) -> String {
    let t = now();
    sign(&json!({"iss": client, "sub": client, "aud": aud, "iat": t, "exp": t + 60, "jti": jti()}))
}

/// Form fields beside the credentials.
pub(crate) type Fields<'a> = Vec<(&'a str, &'a str)>;

pub(crate) const CC: [(&str, &str); 2] = [
    ("grant_type", "client_credentials"),
    ("scope", "permissions/client"),
];

/// A FAPI client over TLS: its requests carry its TLS client certificate (it authenticates
/// with `private_key_jwt`; the certificate binds its tokens).
struct Fapi {
    pki: Pki,
    cert: ClientIdentity,
    srv: TestServer,
    id: String,
    ec: EcKey,
    rsa: RsaKey,
    app: App,
}

impl Fapi {
    async fn start(b: Backend) -> Self {
        let pki = Pki::new();
        let mut srv = TestServer::start_tls(b, &pki, &[]).await;
        let cert = ClientIdentity::self_signed("bank", "Bank ASA");
        srv.http = pki.http(Some(&cert));
        let (ec, rsa) = (EcKey::generate("ec-1"), RsaKey::generate());
        let file = jwks_file(&[&ec.public_jwk, &rsa.public_jwk]);
        let v = register(
            &srv,
            &[
                "--auth-method",
                "private_key_jwt",
                "--jwks-file",
                file.to_str().unwrap(),
                "--profile",
                "fapi-ciba",
                "--id-token-alg",
                "PS256",
            ],
        );
        std::fs::remove_file(&file).unwrap();
        assert!(v.get("client_secret").is_none());
        let app = App::enroll(&srv, &nnin(100), IPHONE).await;
        let id = v["client_id"].as_str().unwrap().to_owned();
        Self {
            pki,
            cert,
            srv,
            id,
            ec,
            rsa,
            app,
        }
    }

    /// The client's own `private_key_jwt` (ES256) for `path`.
    fn own(&self, path: &str) -> String {
        assertion(&self.id, &self.srv.url(path), |c| self.ec.sign(c))
    }

    /// Claims of a signed request for the app's user, valid for five minutes.
    fn request_claims(&self) -> Value {
        let t = now();
        json!({"iss": self.id, "aud": self.srv.base, "iat": t, "nbf": t, "exp": t + 300, "jti": jti(),
               "login_hint": self.app.nnin, "scope": "openid", "binding_message": "K7Q-4MX", "requested_expiry": 120})
    }

    async fn bc_authorize(&self, request: Option<&str>, extra: &[(&str, &str)]) -> Reply {
        let own = self.own("/oidc/v1/bc-authorize");
        let mut form = with_assertion(&own, extra);
        if let Some(r) = request {
            form.push(("request", r));
        }
        self.srv.post("/oidc/v1/bc-authorize", None, &form).await
    }
}

async fn fapi_client_signs_its_requests_with_its_own_keys(b: Backend) {
    let f = Fapi::start(b).await;
    let srv = &f.srv;
    let token_url = srv.url("/oidc/v1/token");

    // Client authentication: ES256 and PS256 assertions, never RS256.
    let tokens = srv
        .post(
            "/oidc/v1/token",
            None,
            &with_assertion(&f.own("/oidc/v1/token"), &CC),
        )
        .await;
    tokens.ok();
    let access_token = tokens.str("access_token");
    // FAPI: its tokens are sender-constrained, bound to its certificate (RFC 8705)...
    let claims = verify_with_jwks(
        access_token,
        &srv.get("/oidc/v1/jwks").await.body,
        &srv.base,
        &srv.base,
    );
    assert_eq!(claims["cnf"]["x5t#S256"], f.cert.thumbprint().as_str());
    // ...so without a certificate it gets none.
    let resp = f
        .pki
        .http(None)
        .post(&token_url)
        .form(&with_assertion(&f.own("/oidc/v1/token"), &CC))
        .send()
        .await
        .unwrap();
    Reply::read(resp).await.expect_error(400, "invalid_request");
    let ps256 = assertion(&f.id, &token_url, |c| f.rsa.sign(Algorithm::PS256, c));
    srv.post("/oidc/v1/token", None, &with_assertion(&ps256, &CC))
        .await
        .ok();
    let rs256 = assertion(&f.id, &token_url, |c| f.rsa.sign(Algorithm::RS256, c));
    let r = srv
        .post("/oidc/v1/token", None, &with_assertion(&rs256, &CC))
        .await;
    assert_eq!((r.status, r.error()), (401, "invalid_client"), "RS256: {r}");

    // At bc-authorize its access token is not enough, and the request must be signed.
    let good = f.ec.sign(&f.request_claims());
    let form = with_assertion(access_token, &[("request", good.as_str())]);
    let r = srv.post("/oidc/v1/bc-authorize", None, &form).await;
    assert_eq!(
        (r.status, r.error()),
        (401, "invalid_client"),
        "access token: {r}"
    );
    assert!(r.str("error_description").contains("fapi-ciba"), "{r}");
    let unsigned = [
        ("login_hint", f.app.nnin.as_str()),
        ("scope", "openid"),
        ("binding_message", "K7Q-4MX"),
    ];
    let r = f.bc_authorize(None, &unsigned).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "invalid_request"),
        "unsigned: {r}"
    );
    assert!(r.str("error_description").contains("signed"), "{r}");

    // Each broken rule of a signed request: 400 invalid_request.
    let claims = |change: &dyn Fn(&mut Value)| {
        let mut c = f.request_claims();
        change(&mut c);
        c
    };
    let t = now();
    let stranger = EcKey::generate("ec-1");
    let broken: Vec<(&str, String, Fields)> = vec![
        (
            "a parameter beside the request",
            f.ec.sign(&f.request_claims()),
            vec![("scope", "openid")],
        ),
        (
            "signed by a key not registered",
            stranger.sign(&f.request_claims()),
            vec![],
        ),
        (
            "RS256",
            f.rsa.sign(Algorithm::RS256, &f.request_claims()),
            vec![],
        ),
        (
            "no nbf",
            f.ec.sign(&claims(&|c| {
                c.as_object_mut().unwrap().remove("nbf");
            })),
            vec![],
        ),
        (
            "no jti",
            f.ec.sign(&claims(&|c| {
                c.as_object_mut().unwrap().remove("jti");
            })),
            vec![],
        ),
        (
            "valid too long",
            f.ec.sign(&claims(&|c| c["exp"] = json!(t + 3700))),
            vec![],
        ),
        (
            "expired",
            f.ec.sign(&claims(&|c| {
                c["nbf"] = json!(t - 900);
                c["iat"] = json!(t - 900);
                c["exp"] = json!(t - 600);
            })),
            vec![],
        ),
        (
            "another issuer",
            f.ec.sign(&claims(&|c| c["iss"] = json!("someone-else"))),
            vec![],
        ),
        (
            "another audience",
            f.ec.sign(&claims(&|c| c["aud"] = json!("https://elsewhere.example"))),
            vec![],
        ),
    ];
    for (what, request, extra) in broken {
        let r = f.bc_authorize(Some(&request), &extra).await;
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_request"),
            "{what}: {r}"
        );
        let description = r.str("error_description");
        assert!(
            description.starts_with("request") || description.contains("signed request"),
            "{what}: {r}"
        );
    }

    // A good signed request (PS256 too) starts the authentication; its jti is single-use.
    let started = f.bc_authorize(Some(&good), &[]).await;
    assert_eq!(
        started.ok()["expires_in"],
        120,
        "requested_expiry as a number"
    );
    let r = f.bc_authorize(Some(&good), &[]).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "invalid_request"),
        "replayed jti: {r}"
    );
    // (Its own binding message: the phone must approve the first request, not this one.)
    let mut ps256 = f.request_claims();
    ps256["binding_message"] = json!("PS2-56X");
    let r = f
        .bc_authorize(Some(&f.rsa.sign(Algorithm::PS256, &ps256)), &[])
        .await;
    assert_eq!(r.status, 200, "PS256: {r}");

    let auth_req_id = started.str("auth_req_id");
    let pending = f.app.pending(srv).await;
    let link_ref = pending
        .iter()
        .find(|p| p["binding_message"] == "K7Q-4MX")
        .unwrap()["ref"]
        .as_str()
        .unwrap()
        .to_owned();
    f.app.approve(srv, &link_ref).await;

    // Polling: with the access token refused, with its own assertion the PS256 ID token.
    let grant = [
        ("grant_type", "urn:openid:params:grant-type:ciba"),
        ("auth_req_id", auth_req_id),
    ];
    srv.post(
        "/oidc/v1/token",
        None,
        &with_assertion(access_token, &grant),
    )
    .await
    .expect_error(401, "invalid_client");
    let own = f.own("/oidc/v1/token");
    let tokens = srv
        .post("/oidc/v1/token", None, &with_assertion(&own, &grant))
        .await;
    tokens.ok();
    let id_token = tokens.str("id_token");
    assert_eq!(
        jsonwebtoken::decode_header(id_token).unwrap().alg,
        Algorithm::PS256
    );
    let jwks = srv.get("/oidc/v1/jwks").await.body;
    let claims = verify_with_jwks(id_token, &jwks, &srv.base, &f.id);
    assert_eq!(
        claims["urn:openid:params:jwt:claim:auth_req_id"],
        auth_req_id
    );
}

/// A client outside the profile may sign its requests too (with a secret for
/// authentication); the same rules hold.
async fn secret_clients_may_sign_requests(b: Backend) {
    let srv = TestServer::start(b).await;
    let key = EcKey::generate("k1");
    let file = jwks_file(&[&key.public_jwk]);
    let c = register(&srv, &["--jwks-file", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    let (id, secret) = (
        c["client_id"].as_str().unwrap(),
        c["client_secret"].as_str().unwrap(),
    );
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let t = now();
    let claims = json!({"iss": id, "aud": srv.url("/oidc/v1/bc-authorize"), "iat": t, "nbf": t, "exp": t + 300, "jti": jti(),
                        "login_hint": app.nnin, "scope": "openid", "binding_message": "Signed", "requested_expiry": "90"});
    let request = key.sign(&claims);
    let started = srv
        .post(
            "/oidc/v1/bc-authorize",
            Some((id, secret)),
            &[("request", request.as_str())],
        )
        .await;
    assert_eq!(
        started.ok()["expires_in"],
        90,
        "requested_expiry as a string"
    );
    let pending = app.pending(&srv).await;
    assert_eq!(pending[0]["binding_message"], "Signed");
    // An unsigned request from a client outside the profile still works.
    srv.post(
        "/oidc/v1/bc-authorize",
        Some((id, secret)),
        &[
            ("login_hint", &app.nnin),
            ("scope", "openid"),
            ("binding_message", "Plain"),
        ],
    )
    .await
    .ok();
}

on_both_backends!(
    fapi_client_signs_its_requests_with_its_own_keys,
    secret_clients_may_sign_requests,
);
