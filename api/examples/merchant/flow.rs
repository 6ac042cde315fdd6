//! The merchant backend's side of the HTTP surface (`openapi.yaml`), found through discovery:
//! an access token, a permission, the start of an App2App or CIBA authentication, and the
//! polls of the token endpoint.

use super::verify::{get_json, Result};
use serde_json::{json, Value};

pub const CIBA_GRANT: &str = "urn:openid:params:grant-type:ciba";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A client of one issuer, with the endpoints its discovery document names.
pub struct Merchant {
    pub http: reqwest::Client,
    pub issuer: String,
    pub client_id: String,
    secret: String,
    pub discovery: Value,
}

/// An authentication the server has started.
pub struct Started {
    pub auth_req_id: String,
    pub expires_in: u64,
    pub interval: u64,
    /// App2App: the universal link the merchant's app opens.
    pub authorize_uri: Option<String>,
}

/// One answer of the token endpoint to a CIBA poll.
pub enum Poll {
    Tokens(Value),
    Pending,
    /// `slow_down`, or 503 `temporarily_unavailable`, which clients treat alike.
    SlowDown(String),
    /// Anything else ends the flow: `access_denied`, `expired_token`, `invalid_grant`…
    Failed(String),
}

impl Merchant {
    /// Discovery at `issuer`, whose `issuer` must be exactly that URL.
    pub async fn discover(
        http: reqwest::Client,
        issuer: &str,
        client_id: &str,
        secret: &str,
    ) -> Result<Self> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let discovery = get_json(&http, &url).await?;
        if discovery["issuer"].as_str() != Some(issuer) {
            return Err(format!(
                "discovery at {url} names issuer {}, not {issuer}",
                discovery["issuer"]
            ));
        }
        Ok(Self {
            http,
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            secret: secret.to_owned(),
            discovery,
        })
    }

    pub fn endpoint(&self, name: &str) -> Result<String> {
        self.discovery[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("discovery has no {name}"))
    }

    /// POST a form (Basic authentication when `basic`); the status and the JSON body.
    async fn post_form(
        &self,
        url: &str,
        basic: bool,
        form: &[(&str, &str)],
    ) -> Result<(u16, Value)> {
        let mut req = self.http.post(url).form(form);
        if basic {
            req = req.basic_auth(&self.client_id, Some(&self.secret));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("POST {url}: no answer: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({"error": text}));
        Ok((status, body))
    }

    /// An access token for the permissions API (`client_credentials`, `client_secret_basic`).
    pub async fn access_token(&self, scope: &str) -> Result<String> {
        let url = self.endpoint("token_endpoint")?;
        let form = [("grant_type", "client_credentials"), ("scope", scope)];
        let (status, body) = self.post_form(&url, true, &form).await?;
        match body["access_token"].as_str() {
            Some(token) if status == 200 => Ok(token.to_owned()),
            _ => Err(format!(
                "client_credentials at {url}: HTTP {status}: {body}"
            )),
        }
    }

    /// Register a permission; the 201 body (`id`, `permissionToken`, `bindingMessage`).
    pub async fn register(&self, access_token: &str, registration: &Value) -> Result<Value> {
        let url = self.endpoint("permissions_endpoint")?;
        let resp = self
            .http
            .post(&url)
            .bearer_auth(access_token)
            .json(registration)
            .send()
            .await
            .map_err(|e| format!("POST {url}: no answer: {e}"))?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status != 201 || body["permissionToken"].as_str().is_none() {
            return Err(format!(
                "registering the permission at {url}: HTTP {status}: {body}"
            ));
        }
        Ok(body)
    }

    /// app-authorize: the permission token and the phone the merchant's app runs on
    /// (`device_info`, unpadded base64url JSON), authenticated by the access token.
    pub async fn app_authorize(
        &self,
        access_token: &str,
        permission_token: &str,
        scope: &str,
        device_info: &str,
    ) -> Result<Started> {
        let url = self.endpoint("app_authentication_endpoint")?;
        let form = [
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", access_token),
            ("login_hint_token", permission_token),
            ("scope", scope),
            ("device_info", device_info),
        ];
        let (status, body) = self.post_form(&url, false, &form).await?;
        started(&url, status, &body)
    }

    /// bc-authorize (CIBA Core §7.1) with the permission token, `client_secret_basic`.
    pub async fn bc_authorize(
        &self,
        permission_token: &str,
        scope: &str,
        binding_message: Option<&str>,
    ) -> Result<Started> {
        let url = self.endpoint("backchannel_authentication_endpoint")?;
        let mut form = vec![("login_hint_token", permission_token), ("scope", scope)];
        if let Some(message) = binding_message {
            form.push(("binding_message", message));
        }
        let (status, body) = self.post_form(&url, true, &form).await?;
        started(&url, status, &body)
    }

    /// One poll of the token endpoint for `auth_req_id`.
    pub async fn poll(&self, auth_req_id: &str) -> Result<Poll> {
        let url = self.endpoint("token_endpoint")?;
        let form = [("grant_type", CIBA_GRANT), ("auth_req_id", auth_req_id)];
        let (status, body) = self.post_form(&url, true, &form).await?;
        let error = body["error"].as_str().unwrap_or_default();
        let described = || match body["error_description"].as_str() {
            Some(d) => format!("{error}: {d}"),
            None => error.to_owned(),
        };
        Ok(match (status, error) {
            (200, _) if body["id_token"].is_string() => Poll::Tokens(body),
            (400, "authorization_pending") => Poll::Pending,
            (400, "slow_down") | (503, "temporarily_unavailable") => Poll::SlowDown(described()),
            (400, "access_denied") => Poll::Failed("the user declined (access_denied)".into()),
            (400, "expired_token") => {
                Poll::Failed("the request expired before the user decided (expired_token)".into())
            }
            _ => Poll::Failed(format!("HTTP {status} from {url}: {}", described())),
        })
    }
}

fn started(url: &str, status: u16, body: &Value) -> Result<Started> {
    let secs = |k: &str| body[k].as_u64();
    match (status, body["auth_req_id"].as_str(), secs("expires_in")) {
        (200, Some(id), Some(expires_in)) => Ok(Started {
            auth_req_id: id.to_owned(),
            expires_in,
            interval: secs("interval").unwrap_or(5).max(1),
            authorize_uri: body["authorize_uri"].as_str().map(str::to_owned),
        }),
        _ => Err(format!(
            "starting the authentication at {url}: HTTP {status}: {body}"
        )),
    }
}
