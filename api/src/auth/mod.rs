//! Client authentication (contract §2 and §11), one function for every merchant endpoint:
//! Bearer access tokens (ours or a trusted external issuer's), `client_assertion` carrying
//! such a token or an RFC 7523 `private_key_jwt`, and at the token and backchannel
//! endpoints also `client_secret_basic` / `client_secret_post`. A client's own credentials
//! are those of its registered method only.

pub mod assertion;
pub mod certificate;
pub mod device;
pub mod external;
pub mod remembered;
pub mod remote_jwks;
pub mod secret;

use crate::error::{ApiError, ApiResult};
use crate::http::caller::{Caller, RequestId};
use crate::http::form::Form;
use crate::http::tls::ClientCert;
use crate::state::{AppState, MAX_ID_LEN};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_domain::audit::{action, Actor, Origin, Outcome};
use ciba_domain::client::{AuthMethod, Client};
use ciba_domain::error::{ErrorCode, OAuthError};
use ciba_domain::scope::ScopeSet;
use ciba_runtime::crypto::jwt::{self, TYP_CLIENT_TOKEN};
use ciba_runtime::crypto::keyring::Purpose;
use serde_json::Value;
use std::sync::Arc;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// An access token issued by this server.
    AccessToken,
    /// An access token of a trusted external issuer.
    ExternalToken,
    PrivateKeyJwt,
    ClientSecret,
    /// A TLS client certificate (RFC 8705).
    Certificate,
}

#[derive(Debug, Clone)]
pub struct Authenticated {
    pub client: Client,
    /// What this request may do: the token's scopes, or the client's for direct credentials.
    pub scopes: ScopeSet,
    pub method: Method,
    /// Whether the credential came in the `Authorization: Bearer` header.
    pub via_bearer: bool,
    /// `x5t#S256` of the client certificate the request came with: tokens issued to it are
    /// bound to that certificate (RFC 8705 §3).
    pub bound_to: Option<String>,
}

impl Authenticated {
    /// 403 when the credential lacks `scope`: `insufficient_scope` for Bearer tokens,
    /// `unauthorized_client` otherwise.
    pub fn require_scope(&self, scope: &str) -> ApiResult<()> {
        if self.scopes.contains(scope) {
            return Ok(());
        }
        let code = if self.via_bearer {
            ErrorCode::InsufficientScope
        } else {
            ErrorCode::UnauthorizedClient
        };
        let mut err = ApiError::new(
            OAuthError::new(code, format!("the client lacks scope {scope}")).with_status(403),
        );
        if self.via_bearer {
            err = err.with_challenge(format!(
                "Bearer realm=\"ciba\", error=\"insufficient_scope\", scope=\"{scope}\""
            ));
        }
        Err(err)
    }
}

/// What a request offers to authenticate with.
pub struct OfferedCredentials<'a> {
    pub authorization: Option<&'a str>,
    pub form: Option<&'a Form>,
    /// The full URL of the endpoint, an accepted `aud` of a `private_key_jwt`.
    pub endpoint: &'a str,
    pub kind: Endpoint,
    /// The client certificate of the connection (or from a trusted proxy).
    pub cert: Option<&'a ClientCert>,
    /// The caller's address, for the limit on failed authentications (contract §10).
    pub source: Option<std::net::IpAddr>,
    /// The HTTP request's id (the audit trail records failures with it).
    pub request_id: Option<&'a RequestId>,
}

/// Where credentials are presented (contract §2, §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The token and backchannel authentication endpoints (CIBA Core §7.1): a client's own
    /// method, secrets included; this server's access tokens too, except from a `fapi-ciba`
    /// client, which must use its method itself.
    Grant,
    /// Every other merchant endpoint: access tokens and `private_key_jwt`.
    Api,
}

impl<'a> OfferedCredentials<'a> {
    /// What `caller` offers at `endpoint` (of `kind`), with the request's `form` if any.
    pub fn of(
        caller: &'a Caller,
        form: Option<&'a Form>,
        endpoint: &'a str,
        kind: Endpoint,
    ) -> Self {
        Self {
            authorization: caller.authorization.as_deref(),
            form,
            endpoint,
            kind,
            cert: caller.cert.as_ref().map(|c| &*c.0),
            source: caller.source,
            request_id: Some(&caller.request_id),
        }
    }
}

enum Credential<'a> {
    Bearer(&'a str),
    Assertion(&'a str),
    Basic(&'a str),
    Post {
        id: &'a str,
        secret: &'a str,
    },
    /// `client_id` alone, over a connection with a client certificate.
    Certificate {
        id: &'a str,
    },
}

pub(crate) fn challenge_for(bearer: bool, basic: bool) -> String {
    if basic {
        "Basic realm=\"ciba\"".into()
    } else if bearer {
        "Bearer realm=\"ciba\", error=\"invalid_token\"".into()
    } else {
        "Bearer realm=\"ciba\"".into()
    }
}

pub(crate) fn invalid_client(description: &'static str, bearer: bool, basic: bool) -> ApiError {
    ApiError::new(OAuthError::invalid_client(description))
        .with_challenge(challenge_for(bearer, basic))
}

fn credential<'a>(req: &OfferedCredentials<'a>) -> ApiResult<Credential<'a>> {
    let mut found: Vec<Credential<'a>> = Vec::new();
    if let Some(h) = req.authorization {
        let (scheme, value) = h.split_once(' ').unwrap_or((h, ""));
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !value.is_empty() {
            found.push(Credential::Bearer(value));
        } else if scheme.eq_ignore_ascii_case("basic") && !value.is_empty() {
            found.push(Credential::Basic(value));
        } else {
            return Err(invalid_client(
                "unsupported Authorization header",
                false,
                false,
            ));
        }
    }
    if let Some(form) = req.form {
        if let Some(assertion) = form.get("client_assertion")? {
            if form.get("client_assertion_type")? != Some(ASSERTION_TYPE) {
                return Err(OAuthError::invalid_request(format!(
                    "client_assertion_type must be {ASSERTION_TYPE}"
                ))
                .into());
            }
            found.push(Credential::Assertion(assertion));
        }
        if let Some(secret) = form.get("client_secret")? {
            let id = form.require("client_id")?;
            if id.len() > MAX_ID_LEN {
                return Err(invalid_client("client_id is too long", false, false));
            }
            found.push(Credential::Post { id, secret });
        }
    }
    if found.len() > 1 {
        return Err(
            OAuthError::invalid_request("use exactly one client authentication method").into(),
        );
    }
    if found.is_empty() && req.cert.is_some() {
        if let Some(id) = req.form.map(|f| f.get("client_id")).transpose()?.flatten() {
            found.push(Credential::Certificate { id });
        }
    }
    found
        .pop()
        .ok_or_else(|| invalid_client("client authentication is required", false, false))
}

/// Authenticate the calling client. An address with too many failures is refused (429)
/// before any verification; each failure (`invalid_client`) is counted.
pub async fn authenticate(
    state: &AppState,
    req: OfferedCredentials<'_>,
    now: i64,
) -> ApiResult<Authenticated> {
    let started = tokio::time::Instant::now();
    let result = match authenticate_unlimited(state, &req, now).await {
        Err(e) if e.code() == ErrorCode::InvalidClient => {
            // Named in the trail only when it is a registered client's id (its row is in the
            // cache once verification read it): whatever else a caller sends (control
            // characters, a secret pasted in the wrong field) is not recorded.
            let claimed = claimed_client(&req).filter(|id| {
                ciba_domain::ids::is_well_formed_id(id)
                    && matches!(state.client_row_cached(id), Some(Some(_)))
            });
            let origin = Origin {
                source: req.source.map(|s| s.to_string()),
                request_id: req.request_id.map(|r| r.get().to_owned()),
            };
            record_failure(state, claimed, origin).await;
            Err(crate::limits::auth_failed(state, req.source, e, now).await)
        }
        other => other,
    };
    // A refused authentication is answered late (a timer, no thread): a guessing loop on one
    // connection gets a few answers a second instead of thousands, and every failure is
    // answered the same time after it arrived (whatever work it took: an argon2 run, a
    // cached answer, a key lookup), so its timing tells nothing.
    if let Err(e) = &result {
        let delay = state.config.server.auth_failure_delay_ms;
        if delay > 0
            && matches!(
                e.code(),
                ErrorCode::InvalidClient | ErrorCode::TooManyRequests
            )
        {
            tokio::time::sleep_until(started + std::time::Duration::from_millis(delay)).await;
        }
    }
    result
}

async fn authenticate_unlimited(
    state: &AppState,
    req: &OfferedCredentials<'_>,
    now: i64,
) -> ApiResult<Authenticated> {
    let cred = credential(req)?;
    // An address over its failure limit may not try credentials that can be guessed (secrets,
    // and assertions of its choosing); a signed access token it holds still works, so one
    // noisy neighbour behind a shared address cannot lock every merchant out.
    let guessable = match &cred {
        Credential::Bearer(_) => false,
        Credential::Assertion(token) => !peek_issuer(token)
            .is_some_and(|iss| iss == state.config.issuer || state.external.knows(&iss)),
        Credential::Basic(_) | Credential::Post { .. } => true,
        // The TLS handshake proved the key: nothing to guess.
        Credential::Certificate { .. } => false,
    };
    if guessable {
        crate::limits::refuse_blocked(state, req.source, now)?;
    }
    let auth = match cred {
        Credential::Bearer(token) => token_auth(state, token, req.cert, now, true).await?,
        Credential::Assertion(token) if !guessable => {
            token_auth(state, token, req.cert, now, false).await?
        }
        Credential::Assertion(token) => {
            assertion::private_key_jwt(state, token, req.endpoint, now).await?
        }
        Credential::Basic(_) | Credential::Post { .. } if req.kind == Endpoint::Api => {
            let basic = req.authorization.is_some();
            return Err(invalid_client(
                "client secrets are accepted only at the token and backchannel authentication endpoints",
                false,
                basic,
            ));
        }
        Credential::Basic(value) => {
            let (id, secret) = secret::decode_basic(value)
                .ok_or_else(|| invalid_client("malformed Basic credentials", false, true))?;
            if id.len() > MAX_ID_LEN {
                return Err(invalid_client("client_id is too long", false, true));
            }
            secret::client_secret(state, &id, &secret, AuthMethod::ClientSecretBasic).await?
        }
        Credential::Post { id, secret } => {
            secret::client_secret(state, id, secret, AuthMethod::ClientSecretPost).await?
        }
        Credential::Certificate { .. } if req.kind == Endpoint::Api => {
            return Err(invalid_client(
                "client certificates authenticate only at the token and backchannel authentication endpoints",
                false,
                false,
            ));
        }
        Credential::Certificate { id } => match req.cert {
            Some(cert) => certificate::tls_client(state, id, cert).await?,
            None => {
                return Err(invalid_client(
                    "client authentication is required",
                    false,
                    false,
                ))
            }
        },
    };
    // A FAPI client proves itself with its own method where tokens are granted and
    // authentications started: a stolen access token is not enough there.
    let by_token = matches!(auth.method, Method::AccessToken | Method::ExternalToken);
    if by_token && req.kind == Endpoint::Grant && auth.client.is_fapi() {
        return Err(invalid_client(
            "a fapi-ciba client authenticates here with its registered method",
            auth.via_bearer,
            false,
        ));
    }
    let mut auth = auth;
    auth.bound_to = req.cert.map(|c| c.thumbprint.clone());
    if let Some(form) = req.form {
        if form
            .get("client_id")?
            .is_some_and(|id| id != auth.client.id)
        {
            return Err(invalid_client(
                "client_id does not match the authenticated client",
                auth.via_bearer,
                false,
            ));
        }
    }
    Ok(auth)
}

/// Record the id `jti` of a JWT that `issuer` (a client or device id) signed for `scope` as
/// used until `expires_at`; false if it was used before (single use, across replicas).
pub async fn use_jti(
    state: &AppState,
    scope: &str,
    issuer: &str,
    jti: &str,
    expires_at: i64,
) -> ApiResult<bool> {
    let key = jti_key(scope, issuer, jti);
    state
        .db_write_one(move |c| ciba_store::jtis::record(c, &key, expires_at))
        .await
}

/// How the id `jti` of a JWT that `issuer` signed for `scope` is kept (never the id itself).
pub fn jti_key(scope: &str, issuer: &str, jti: &str) -> String {
    ciba_domain::secret::sha256_b64url(format!("{scope}\0{issuer}\0{jti}").as_bytes())
}

/// [`use_jti`] for verified `claims` (with `jti` and `exp`, checked before): the id is kept
/// until the JWT could no longer be accepted.
pub async fn use_claims_jti(
    state: &AppState,
    scope: &str,
    issuer: &str,
    claims: &Value,
    now: i64,
) -> ApiResult<bool> {
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(now);
    use_jti(state, scope, issuer, jti, exp.saturating_add(jwt::LEEWAY)).await
}

/// The client a request claims to be, unverified (the audit trail names it in a failure):
/// a `client_id`, Basic's user, or an assertion's `iss`; at most an id's length.
fn claimed_client(req: &OfferedCredentials<'_>) -> Option<String> {
    let form_id = req.form.and_then(|f| f.get("client_id").ok().flatten());
    let basic = req.authorization.and_then(|h| {
        let (scheme, value) = h.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("basic")
            .then(|| secret::decode_basic(value).map(|(id, _)| id))
            .flatten()
    });
    let assertion = req
        .form
        .and_then(|f| f.get("client_assertion").ok().flatten())
        .and_then(peek_issuer);
    let id = form_id.map(str::to_owned).or(basic).or(assertion)?;
    Some(id.chars().take(MAX_ID_LEN).collect())
}

/// A refused client authentication in the audit trail (best effort: the refusal stands
/// whether or not it could be recorded).
async fn record_failure(state: &AppState, claimed: Option<String>, origin: Origin) {
    let at_ms = crate::state::now_ms();
    let write = state.db_write_one(move |c| {
        let by = ciba_store::audit::By {
            actor: Actor::Client(claimed.as_deref().unwrap_or("")),
            origin: &origin,
            at_ms,
        };
        ciba_store::audit::record(c, &by, action::CLIENT_AUTH_FAILED, None, Outcome::Refused)
    });
    if let Err(e) = write.await {
        tracing::warn!(error = ?e.error, "recording a failed client authentication failed");
    }
}

/// Verify `token` (algorithms `algs`) with `client`'s keys: the set it registered, or the
/// one it publishes at its `jwks_uri` (fetched and cached). Returns the claims, unchecked.
pub async fn verify_with_client_keys(
    state: &AppState,
    client: &Client,
    token: &str,
    algs: &[jsonwebtoken::Algorithm],
    now: i64,
) -> Result<Value, &'static str> {
    if let Some(jwks) = client.jwks.as_deref() {
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(jwks).map_err(|_| "the client's registered keys are unusable")?;
        return ciba_runtime::crypto::jwk_set::verify_with_set_using(token, &set, algs);
    }
    match client.jwks_uri.as_deref() {
        Some(url) => state.client_jwks.verify(url, token, algs, now).await,
        None => Err("the client has no keys"),
    }
}

/// The unverified `iss` of a JWT, used only to choose which verifier to run.
pub(crate) fn peek_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(str::to_owned)
}

/// An access token (ours or an external issuer's) presented as Bearer or as an assertion.
async fn token_auth(
    state: &AppState,
    token: &str,
    cert: Option<&ClientCert>,
    now: i64,
    bearer: bool,
) -> ApiResult<Authenticated> {
    let fail = |d: &'static str| invalid_client(d, bearer, false);
    let iss = peek_issuer(token).ok_or_else(|| fail("the token is not a JWT"))?;
    let (client_id, token_scopes, method) = if iss == state.config.issuer {
        let claims = verify_access_token(state, token, now).map_err(fail)?;
        check_binding(&claims, cert)?;
        let client_id = claims
            .get("client_id")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("token has no client_id"))?;
        // A client's own token names the client as its subject (a user's names the user).
        if claims.get("sub").and_then(Value::as_str) != Some(client_id) {
            return Err(fail("the token does not authenticate a client"));
        }
        let scope = claims.get("scope").and_then(Value::as_str).unwrap_or("");
        (
            client_id.to_owned(),
            ScopeSet::parse(scope).map_err(|_| fail("token scope is malformed"))?,
            Method::AccessToken,
        )
    } else {
        let claims = state
            .external
            .verify(&iss, token, &state.config.issuer, now)
            .await
            .map_err(fail)?;
        let client_id = ["client_id", "azp", "clientId"]
            .iter()
            .find_map(|c| claims.get(*c).and_then(Value::as_str))
            .ok_or_else(|| fail("external token names no client"))?;
        let scope = claims.get("scope").and_then(Value::as_str).unwrap_or("");
        (
            client_id.to_owned(),
            ScopeSet::parse(scope).map_err(|_| fail("token scope is malformed"))?,
            Method::ExternalToken,
        )
    };
    let client = load_client(state, &client_id)
        .await?
        .ok_or_else(|| fail("the token's client is not registered"))?;
    // A token never grants more than the client is registered for today.
    let scopes = token_scopes.intersect(&client.scopes);
    Ok(Authenticated {
        client,
        scopes,
        method,
        via_bearer: bearer,
        bound_to: None,
    })
}

/// A certificate-bound token (`cnf.x5t#S256`, RFC 8705 §3) is accepted only over the
/// certificate it was issued to: 401 `invalid_token` otherwise.
fn check_binding(claims: &Value, cert: Option<&ClientCert>) -> ApiResult<()> {
    let Some(bound) = claims.pointer("/cnf/x5t#S256") else {
        return Ok(());
    };
    if cert.is_some_and(|c| bound.as_str() == Some(c.thumbprint.as_str())) {
        return Ok(());
    }
    Err(ApiError::new(OAuthError::new(
        ErrorCode::InvalidToken,
        "the token is bound to a client certificate this request does not present",
    ))
    .with_challenge("Bearer realm=\"ciba\", error=\"invalid_token\"".to_owned()))
}

/// Verify an access token issued by this server: its signature once per
/// `CIBA_CLIENT_CACHE_TTL` (see [`crate::auth::remembered`]) and while its key is still in
/// the key ring (a revoked key's tokens stop at once), its claims (`iss`, `exp`, ...) at every
/// use.
pub fn verify_access_token(
    state: &AppState,
    token: &str,
    now: i64,
) -> Result<Arc<Value>, &'static str> {
    if let Some(claims) = state.verified_tokens.get(token, &state.keys, now) {
        jwt::check_own_claims(&claims, &state.config.issuer, now)?;
        return Ok(claims);
    }
    let (key, claims) = state
        .keys
        .verify_signed(token, Purpose::Oidc, TYP_CLIENT_TOKEN, now)?;
    jwt::check_own_claims(&claims, &state.config.issuer, now)?;
    let claims = Arc::new(claims);
    state.verified_tokens.put(token, claims.clone(), &key.kid);
    Ok(claims)
}

/// A client that exists and is enabled.
pub async fn load_client(state: &AppState, id: &str) -> ApiResult<Option<Client>> {
    let row = state.client_row(id).await?;
    match row {
        Some(row) if !row.disabled => Ok(Some(row.to_domain().map_err(ApiError::from)?)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod token_cache_tests;
