//! Mutual TLS (RFC 8705, contract §11) over real TLS (rustls on both ends) and through a
//! trusted proxy's header, on both backends: `tls_client_auth` and
//! `self_signed_tls_client_auth` accepted with their certificate and refused with any other,
//! certificate-bound access tokens refused without their certificate.
#![allow(clippy::unwrap_used)]

use crate::support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use support::app::{jti, nnin, App, IPHONE};
use support::tls::{ClientIdentity, Pki};
use support::{with_assertion, Backend, Reply, TestServer};

const SCOPES: &str = "permissions/client permissions/ciba openid";
const BANK_DN: &str = "CN=bank-client, O=Bank ASA";

/// The claims of a JWT, unverified (the tests that verify signatures are elsewhere).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn post(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> Reply {
    Reply::read(http.post(url).form(form).send().await.unwrap()).await
}

async fn get(http: &reqwest::Client, url: &str, bearer: &str) -> Reply {
    Reply::read(http.get(url).bearer_auth(bearer).send().await.unwrap()).await
}

/// A `tls_client_auth` client for the certificate subject [`BANK_DN`]; its id (it has no
/// secret).
fn register_bank(srv: &TestServer) -> String {
    srv.create_client_without_secret(
        SCOPES,
        &[
            "--auth-method",
            "tls_client_auth",
            "--tls-subject-dn",
            BANK_DN,
        ],
    )
}

fn cc(id: &str) -> [(&str, &str); 3] {
    [
        ("grant_type", "client_credentials"),
        ("client_id", id),
        ("scope", "permissions/client"),
    ]
}

async fn tls_client_auth_and_bound_tokens(b: Backend) {
    let pki = Pki::new();
    let srv = TestServer::start_tls(b, &pki, &[]).await;
    let doc = srv.get("/.well-known/openid-configuration").await;
    assert_eq!(doc["tls_client_certificate_bound_access_tokens"], true);
    assert_eq!(
        doc["mtls_endpoint_aliases"]["token_endpoint"],
        srv.url("/oidc/v1/token").as_str()
    );

    let id = register_bank(&srv);
    let id = id.as_str();
    let token_url = srv.url("/oidc/v1/token");
    let bank = pki.client("bank-client", "Bank ASA");
    let with_bank = pki.http(Some(&bank));

    let tokens = post(&with_bank, &token_url, &cc(id)).await;
    tokens.ok();
    let token = tokens.str("access_token");
    assert_eq!(claims(token)["cnf"]["x5t#S256"], bank.thumbprint().as_str());

    // The bound token works only over its certificate.
    let resource = srv.url("/permissions/v1/no-such-permission");
    let r = get(&with_bank, &resource, token).await;
    assert_eq!(r.status, 404, "authenticated over the certificate: {r}");
    let intruder = pki.client("intruder", "Evil AS");
    for (what, http) in [
        ("no certificate", pki.http(None)),
        ("another certificate", pki.http(Some(&intruder))),
    ] {
        let r = get(&http, &resource, token).await;
        assert_eq!((r.status, r.error()), (401, "invalid_token"), "{what}: {r}");
    }

    // Only the registered subject from the trusted CA authenticates the client.
    let impostor = ClientIdentity::self_signed("bank-client", "Bank ASA");
    for (what, http) in [
        ("another subject", pki.http(Some(&intruder))),
        ("the subject, self-signed", pki.http(Some(&impostor))),
        ("no certificate", pki.http(None)),
    ] {
        let r = post(&http, &token_url, &cc(id)).await;
        assert_eq!(
            (r.status, r.error()),
            (401, "invalid_client"),
            "{what}: {r}"
        );
    }
    // Nor does anything but its certificate: it has no secret.
    let resp = with_bank
        .post(&token_url)
        .basic_auth(id, Some("guess"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // A whole CIBA flow over the certificate: bc-authorize, the app's approval, the poll.
    let app = App::enroll(&srv, &nnin(100), IPHONE).await;
    let start = [
        ("client_id", id),
        ("login_hint", app.nnin.as_str()),
        ("scope", "openid"),
        ("binding_message", "mTLS"),
    ];
    let started = post(&with_bank, &srv.url("/oidc/v1/bc-authorize"), &start).await;
    started.ok();
    let pending = app.pending(&srv).await;
    app.approve(&srv, pending[0]["ref"].as_str().unwrap()).await;
    let poll = [
        ("grant_type", "urn:openid:params:grant-type:ciba"),
        ("client_id", id),
        ("auth_req_id", started.str("auth_req_id")),
    ];
    let tokens = post(&with_bank, &token_url, &poll).await;
    tokens.ok();
    let user_token = claims(tokens.str("access_token"));
    assert_eq!(user_token["cnf"]["x5t#S256"], bank.thumbprint().as_str());
}

async fn self_signed_tls_client_auth(b: Backend) {
    let pki = Pki::new();
    let srv = TestServer::start_tls(b, &pki, &[]).await;
    let robot = ClientIdentity::self_signed("robot", "Shop AS");
    let jwks = std::env::temp_dir().join(format!("jwks-{}.json", jti()));
    std::fs::write(&jwks, robot.jwks().to_string()).unwrap();
    let v = srv.admin(&[
        "clients",
        "create",
        "--name",
        "Shop",
        "--scope",
        SCOPES,
        "--auth-method",
        "self_signed_tls_client_auth",
        "--jwks-file",
        jwks.to_str().unwrap(),
    ]);
    std::fs::remove_file(&jwks).unwrap();
    let id = v["client_id"].as_str().unwrap();
    let token_url = srv.url("/oidc/v1/token");
    let tokens = post(&pki.http(Some(&robot)), &token_url, &cc(id)).await;
    tokens.ok();
    assert_eq!(
        claims(tokens.str("access_token"))["cnf"]["x5t#S256"],
        robot.thumbprint().as_str()
    );
    // A certificate from the trusted CA is not this client's key.
    let other = pki.client("robot", "Shop AS");
    post(&pki.http(Some(&other)), &token_url, &cc(id))
        .await
        .expect_error(401, "invalid_client");
    // Its registered key proves the certificate only: a private_key_jwt signed with it is
    // another method, refused.
    let t = support::app::now();
    let assertion = robot.sign_es256(&serde_json::json!({
        "iss": id, "sub": id, "aud": token_url, "iat": t, "exp": t + 60, "jti": jti()
    }));
    let form = with_assertion(&assertion, &[("grant_type", "client_credentials")]);
    post(&pki.http(None), &token_url, &form)
        .await
        .expect_error(401, "invalid_client");
    // And a secret client's certificate is no credential of that client.
    let (secret_id, _) = srv.create_client(SCOPES, &[]);
    post(&pki.http(Some(&robot)), &token_url, &cc(&secret_id))
        .await
        .expect_error(401, "invalid_client");
}

/// Behind an ingress that terminates TLS: the certificate arrives in a header, believed only
/// from a trusted proxy.
async fn certificate_header_from_a_trusted_proxy(b: Backend) {
    let pki = Pki::new();
    let ca = pki.path("ca.pem");
    let header = [
        ("CIBA_CLIENT_CERT_HEADER", "ssl-client-cert"),
        ("CIBA_TLS_CLIENT_CA", ca.as_str()),
    ];
    let bank = pki.client("bank-client", "Bank ASA");
    for (proxies, trusted) in [("127.0.0.1/32", true), ("10.0.0.0/8", false)] {
        let mut env = header.to_vec();
        env.push(("CIBA_TRUSTED_PROXIES", proxies));
        let srv = TestServer::start_with(b, &env).await;
        let id = register_bank(&srv);
        let id = id.as_str();
        let resp = srv
            .http
            .post(srv.url("/oidc/v1/token"))
            .header("ssl-client-cert", bank.header_value())
            .form(&cc(id))
            .send()
            .await
            .unwrap();
        let tokens = Reply::read(resp).await;
        if !trusted {
            tokens.expect_error(401, "invalid_client");
            continue;
        }
        tokens.ok();
        let token = tokens.str("access_token");
        assert_eq!(claims(token)["cnf"]["x5t#S256"], bank.thumbprint().as_str());
        let resource = srv.url("/permissions/v1/no-such-permission");
        let with_header = srv
            .http
            .get(&resource)
            .bearer_auth(token)
            .header("ssl-client-cert", bank.header_value())
            .send()
            .await
            .unwrap();
        assert_eq!(with_header.status().as_u16(), 404);
        // Two certificate headers (a proxy that appends would leave the client's own first):
        // none is believed.
        let resp = srv
            .http
            .post(srv.url("/oidc/v1/token"))
            .header("ssl-client-cert", bank.header_value())
            .header(
                "ssl-client-cert",
                pki.client("intruder", "Evil AS").header_value(),
            )
            .form(&cc(id))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        srv.get_bearer("/permissions/v1/no-such-permission", token)
            .await
            .expect_error(401, "invalid_token");
    }
}

on_both_backends!(
    tls_client_auth_and_bound_tokens,
    self_signed_tls_client_auth,
    certificate_header_from_a_trusted_proxy,
);
