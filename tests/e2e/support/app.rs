//! A simulated merchant and authenticating app with real device keys.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::keys::EcKey;
use super::{Reply, TestServer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

pub const CALLBACK: &str = "https://merchant.app/app_callback";
pub const SCOPES: &str = "permissions/client permissions/app2app permissions/ciba openid profile";
/// The reference document's statement (App2App guide, step 5), byte for byte.
pub const REFERENCE_STATEMENT: &str = "eyJub25jZSI6ImRXNXBjWFZsSUhaaGJIVmwiLCJpZCI6IlltRnphMlYwSUdsayIsInBheW1lbnRzIjpbeyJwYXltZW50SWQiOiJjR0Y1YldWdWRDQnBaQSIsImFtb3VudCI6IjEyMy40NSIsImN1cnJlbmN5IjoiTk9LIiwiY3JlZGl0b3JOYW1lIjoiU2Nyb29nZSBNY0R1Y2sifV19";
pub const IPHONE: (&str, &str, &str) = ("ios", "Apple", "iPhone11,2");

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn jti() -> String {
    ciba_domain::ids::random_id()
}

pub fn device_info(d: (&str, &str, &str)) -> String {
    URL_SAFE_NO_PAD.encode(json!({"p": d.0, "ma": d.1, "mo": d.2}).to_string())
}

pub fn nonce_statement() -> String {
    URL_SAFE_NO_PAD.encode(json!({"nonce": jti()}).to_string())
}

/// The reference payment with a fresh nonce (nonces are single-use per client).
pub fn payment_statement() -> String {
    let payment = json!({"paymentId": "cGF5bWVudCBpZA", "amount": "123.45", "currency": "NOK", "creditorName": "Scrooge McDuck"});
    URL_SAFE_NO_PAD
        .encode(json!({"nonce": jti(), "id": "YmFza2V0IGlk", "payments": [payment]}).to_string())
}

pub struct Merchant {
    pub id: String,
    pub secret: String,
    pub token: String,
}

impl Merchant {
    pub async fn new(srv: &TestServer, scopes: &str, extra: &[&str]) -> Self {
        let mut args = vec!["--callback-uri", CALLBACK];
        args.extend_from_slice(extra);
        let (id, secret) = srv.create_client(scopes, &args);
        let api_scopes: Vec<&str> = scopes
            .split(' ')
            .filter(|s| s.starts_with("permissions/"))
            .collect();
        let token = srv.access_token(&id, &secret, &api_scopes.join(" ")).await;
        Self { id, secret, token }
    }

    /// Register a permission; returns the 201 body.
    pub async fn register(
        &self,
        srv: &TestServer,
        statement: &str,
        kind: &str,
        nnin: &str,
        intent: &str,
    ) -> Value {
        let t = now();
        let body = json!({
            "type": kind, "loa": "sub", "iat": t, "exp": t + 900, "permission": statement, "intents": [intent],
            "loginHint": [{"scheme": "nnin", "value": nnin}], "app_callback_uri": CALLBACK,
        });
        srv.post_json("/permissions/v1/", Some(&self.token), &body)
            .await
            .expect(201)
            .clone()
    }

    /// The token of a new `authentication.v1` permission for `nnin` with intent `ciba`.
    pub async fn ciba_permission_token(&self, srv: &TestServer, nnin: &str) -> String {
        let created = self
            .register(srv, &nonce_statement(), "authentication.v1", nnin, "ciba")
            .await;
        created["permissionToken"].as_str().unwrap().to_owned()
    }

    /// Poll the token endpoint for `auth_req_id` (the CIBA grant, `client_secret_basic`).
    pub async fn poll(&self, srv: &TestServer, auth_req_id: &str) -> Reply {
        srv.post(
            "/oidc/v1/token",
            Some((&self.id, &self.secret)),
            &[
                ("grant_type", "urn:openid:params:grant-type:ciba"),
                ("auth_req_id", auth_req_id),
            ],
        )
        .await
    }

    /// app-authorize in the reference document's style (the access token as client_assertion).
    pub async fn app_authorize(&self, srv: &TestServer, fields: &[(&str, &str)]) -> Reply {
        self.post_with_token(srv, "/oidc/v1/app-authorize", fields)
            .await
    }

    /// bc-authorize, authenticated as [`Merchant::app_authorize`] is.
    pub async fn backchannel_authorize(&self, srv: &TestServer, fields: &[(&str, &str)]) -> Reply {
        self.post_with_token(srv, "/oidc/v1/bc-authorize", fields)
            .await
    }

    async fn post_with_token(
        &self,
        srv: &TestServer,
        path: &str,
        fields: &[(&str, &str)],
    ) -> Reply {
        srv.post(path, None, &super::with_assertion(&self.token, fields))
            .await
    }
}

/// `admin users create` for Kari Nordmann with `nnin`; the new user's `sub`, or `None` when
/// the command failed (e.g. the user exists).
pub fn create_user(srv: &TestServer, nnin: &str) -> Option<String> {
    let created = srv.admin_raw(&[
        "users",
        "create",
        "--nnin",
        nnin,
        "--given-name",
        "Kari",
        "--family-name",
        "Nordmann",
        "--birthdate",
        "1985-05-15",
    ]);
    created.status.success().then(|| {
        serde_json::from_slice::<Value>(&created.stdout).unwrap()["sub"]
            .as_str()
            .unwrap()
            .to_owned()
    })
}

/// A user with the authenticating app enrolled on one phone.
pub struct App {
    pub nnin: String,
    pub sub: String,
    pub device_id: String,
    pub key: EcKey,
}

impl App {
    pub async fn enroll(srv: &TestServer, nnin: &str, device: (&str, &str, &str)) -> Self {
        // The user may exist already (a second phone): then the sub stays unknown here.
        let sub = create_user(srv, nnin).unwrap_or_default();
        Self::enroll_existing(srv, nnin, sub, device).await
    }

    /// Enroll a phone with a hardware-bound key (`hwk`), as a real authenticating app does.
    pub async fn enroll_existing(
        srv: &TestServer,
        nnin: &str,
        sub: String,
        device: (&str, &str, &str),
    ) -> Self {
        Self::enroll_key(srv, nnin, sub, device, "hwk").await
    }

    /// Enroll a phone whose app declares `key_protection` (`hwk` or `swk`).
    pub async fn enroll_key(
        srv: &TestServer,
        nnin: &str,
        sub: String,
        device: (&str, &str, &str),
        key_protection: &str,
    ) -> Self {
        let code = srv.admin(&["enrollment-codes", "create", "--nnin", nnin]);
        let key = EcKey::generate("pending");
        let body = json!({
            "enrollment_code": code["code"], "device_info": {"p": device.0, "ma": device.1, "mo": device.2},
            "public_jwk": key.public_jwk, "name": "Kari's phone", "key_protection": key_protection,
        });
        let resp = srv.post_json("/app/v1/devices", None, &body).await;
        resp.expect(201);
        let device_id = resp.str("device_id").to_owned();
        let key = EcKey {
            kid: device_id.clone(),
            ..key
        };
        Self {
            nnin: nnin.to_owned(),
            sub,
            device_id,
            key,
        }
    }

    pub fn device_jwt(&self, srv: &TestServer) -> String {
        let t = now();
        self.key.sign(
            &json!({"sub": self.device_id, "aud": srv.base, "iat": t, "exp": t + 60, "jti": jti()}),
        )
    }

    pub async fn get(&self, srv: &TestServer, path: &str) -> Reply {
        srv.get_bearer(path, &self.device_jwt(srv)).await
    }

    pub async fn pending(&self, srv: &TestServer) -> Vec<Value> {
        let r = self.get(srv, "/app/v1/auth-requests?status=pending").await;
        r.ok()["auth_requests"].as_array().unwrap().clone()
    }

    pub fn sign_decision(&self, link_ref: &str, decision: &str, digest: &str) -> String {
        self.key.sign(&json!({"ref": link_ref, "decision": decision, "permission_digest": digest, "iat": now(), "jti": jti(), "amr": ["hwk", "face"]}))
    }

    pub async fn send_decision(&self, srv: &TestServer, link_ref: &str, signed: &str) -> Reply {
        let jwt = self.device_jwt(srv);
        srv.post_json(
            &format!("/app/v1/auth-requests/{link_ref}/decision"),
            Some(&jwt),
            &json!({"signed_decision": signed}),
        )
        .await
    }

    /// [`App::answer`] "approve".
    pub async fn approve(&self, srv: &TestServer, link_ref: &str) -> Reply {
        self.answer(srv, link_ref, "approve").await
    }

    /// [`App::answer`] "decline".
    pub async fn decline(&self, srv: &TestServer, link_ref: &str) -> Reply {
        self.answer(srv, link_ref, "decline").await
    }

    /// View the request, check the digest itself as a careful app does, and send `decision`.
    async fn answer(&self, srv: &TestServer, link_ref: &str, decision: &str) -> Reply {
        let view = self
            .get(srv, &format!("/app/v1/auth-requests/{link_ref}"))
            .await;
        view.ok();
        let bytes = URL_SAFE_NO_PAD
            .decode(view["permission"].as_str().unwrap())
            .unwrap();
        let digest = ciba_domain::secret::sha256_b64url(&bytes);
        assert_eq!(view["permission_digest"], digest.as_str());
        self.send_decision(
            srv,
            link_ref,
            &self.sign_decision(link_ref, decision, &digest),
        )
        .await
    }
}

/// The `ref` of an authorize_uri.
pub fn ref_of(authorize_uri: &str) -> String {
    authorize_uri.split("ref=").nth(1).unwrap().to_owned()
}

/// A valid NNIN born 15.05.1985 with an individual number from `from` on.
pub fn nnin(from: u32) -> String {
    ciba_domain::nnin::first_valid("150585", from).unwrap()
}

/// Register a payment permission for `app_nnin` and call app-authorize with `device`.
pub async fn start(
    srv: &TestServer,
    m: &Merchant,
    app_nnin: &str,
    device: (&str, &str, &str),
) -> Reply {
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

/// The synthetic NNINs of the users sandbox mode seeds (README lists them).
pub const SANDBOX_NNINS: [&str; 4] = ["01818010083", "02828510188", "03839010140", "04849510083"];
