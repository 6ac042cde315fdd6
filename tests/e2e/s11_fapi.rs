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
use support::{Backend, TestServer};

pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
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

pub(crate) fn with_assertion<'a>(
    assertion: &'a str,
    fields: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    form.extend_from_slice(fields);
    form
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

    async fn bc_authorize(&self, request: Option<&str>, extra: &[(&str, &str)]) -> (u16, Value) {
        let own = self.own("/oidc/v1/bc-authorize");
        let mut form = with_assertion(&own, extra);
        if let Some(r) = request {
            form.push(("request", r));
        }
        let (status, _, body) = self
            .srv
            .post_form("/oidc/v1/bc-authorize", None, &form)
            .await;
        (status, body)
    }
}

async fn fapi_client_signs_its_requests_with_its_own_keys(b: Backend) {
    let f = Fapi::start(b).await;
    let srv = &f.srv;
    let token_url = srv.url("/oidc/v1/token");

    // Client authentication: ES256 and PS256 assertions, never RS256.
    let (status, _, body) = srv
        .post_form(
            "/oidc/v1/token",
            None,
            &with_assertion(&f.own("/oidc/v1/token"), &CC),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let access_token = body["access_token"].as_str().unwrap().to_owned();
    // FAPI: its tokens are sender-constrained, bound to its certificate (RFC 8705)...
    let claims = verify_with_jwks(
        &access_token,
        &srv.get_json("/oidc/v1/jwks").await.1,
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
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
    let ps256 = assertion(&f.id, &token_url, |c| f.rsa.sign(Algorithm::PS256, c));
    assert_eq!(
        srv.post_form("/oidc/v1/token", None, &with_assertion(&ps256, &CC))
            .await
            .0,
        200
    );
    let rs256 = assertion(&f.id, &token_url, |c| f.rsa.sign(Algorithm::RS256, c));
    let (status, _, body) = srv
        .post_form("/oidc/v1/token", None, &with_assertion(&rs256, &CC))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "RS256: {body}"
    );

    // At bc-authorize its access token is not enough, and the request must be signed.
    let good = f.ec.sign(&f.request_claims());
    let form = with_assertion(&access_token, &[("request", good.as_str())]);
    let (status, _, body) = srv.post_form("/oidc/v1/bc-authorize", None, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "access token: {body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("fapi-ciba"),
        "{body}"
    );
    let unsigned = [
        ("login_hint", f.app.nnin.as_str()),
        ("scope", "openid"),
        ("binding_message", "K7Q-4MX"),
    ];
    let (status, body) = f.bc_authorize(None, &unsigned).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "unsigned: {body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("signed"),
        "{body}"
    );

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
        let (status, body) = f.bc_authorize(Some(&request), &extra).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request")),
            "{what}: {body}"
        );
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description.starts_with("request") || description.contains("signed request"),
            "{what}: {body}"
        );
    }

    // A good signed request (PS256 too) starts the authentication; its jti is single-use.
    let (status, started) = f.bc_authorize(Some(&good), &[]).await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["expires_in"], 120, "requested_expiry as a number");
    let (status, body) = f.bc_authorize(Some(&good), &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "replayed jti: {body}"
    );
    // (Its own binding message: the phone must approve the first request, not this one.)
    let mut ps256 = f.request_claims();
    ps256["binding_message"] = json!("PS2-56X");
    let (status, body) = f
        .bc_authorize(Some(&f.rsa.sign(Algorithm::PS256, &ps256)), &[])
        .await;
    assert_eq!(status, 200, "PS256: {body}");

    let auth_req_id = started["auth_req_id"].as_str().unwrap();
    let pending = f.app.pending(srv).await;
    let link_ref = pending
        .iter()
        .find(|p| p["binding_message"] == "K7Q-4MX")
        .unwrap()["ref"]
        .as_str()
        .unwrap()
        .to_owned();
    f.app.decide(srv, &link_ref, "approve").await;

    // Polling: with the access token refused, with its own assertion the PS256 ID token.
    let grant = [
        ("grant_type", "urn:openid:params:grant-type:ciba"),
        ("auth_req_id", auth_req_id),
    ];
    let (status, _, body) = srv
        .post_form(
            "/oidc/v1/token",
            None,
            &with_assertion(&access_token, &grant),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let own = f.own("/oidc/v1/token");
    let (status, _, body) = srv
        .post_form("/oidc/v1/token", None, &with_assertion(&own, &grant))
        .await;
    assert_eq!(status, 200, "{body}");
    let id_token = body["id_token"].as_str().unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(id_token).unwrap().alg,
        Algorithm::PS256
    );
    let (_, jwks) = srv.get_json("/oidc/v1/jwks").await;
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
    let (status, _, body) = srv
        .post_form(
            "/oidc/v1/bc-authorize",
            Some((id, secret)),
            &[("request", request.as_str())],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 90, "requested_expiry as a string");
    let pending = app.pending(&srv).await;
    assert_eq!(pending[0]["binding_message"], "Signed");
    // An unsigned request from a client outside the profile still works.
    let (status, _, body) = srv
        .post_form(
            "/oidc/v1/bc-authorize",
            Some((id, secret)),
            &[
                ("login_hint", &app.nnin),
                ("scope", "openid"),
                ("binding_message", "Plain"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

on_both_backends!(
    fapi_client_signs_its_requests_with_its_own_keys,
    secret_clients_may_sign_requests,
);
