//! The token endpoint `POST /oidc/v1/token`: `client_credentials` here; the CIBA grant lives
//! in its own module.

use crate::auth::{self, Endpoint, Method, OfferedCredentials};
use crate::error::{private_reply, ApiError, ApiResult};
use crate::http::caller::Caller;
use crate::http::form::Form;
use crate::http::reply::json_response;
use crate::state::{now_ms, AppState};
use ciba_domain::audit::{action, Actor, Outcome};
use ciba_domain::claims;
use ciba_domain::client::SigningAlg;
use ciba_domain::error::{ErrorCode, OAuthError};
use ciba_domain::ids::random_id;
use ciba_domain::scope::{ScopeSet, CLIENT_SCOPES};
use ciba_runtime::crypto::jwt::{self, TYP_CLIENT_TOKEN};
use ciba_runtime::crypto::keyring::Purpose;
use ciba_store::audit;
use serde_json::json;
use warp::hyper::body::Bytes;
use warp::reply::Response;

pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
pub const GRANT_CIBA: &str = "urn:openid:params:grant-type:ciba";

pub async fn token(
    state: AppState,
    content_type: Option<String>,
    caller: Caller,
    body: Bytes,
) -> Response {
    let now_ms = now_ms();
    let now = now_ms / 1000;
    let result = async {
        let form = Form::parse(content_type.as_deref(), &body)?;
        // An unknown grant is refused before any authentication; the grant's own parameters
        // are read only for an authenticated client.
        let grant = Grant::of(&form)?;
        let endpoint = state.config.endpoint("/oidc/v1/token");
        let req = OfferedCredentials::of(&caller, Some(&form), &endpoint, Endpoint::Grant);
        let client = sender_constrained(auth::authenticate(&state, req, now).await?)?;
        match TokenRequest::of(grant, &form)? {
            TokenRequest::ClientCredentials { scope } => {
                let (reply, jti) = client_credentials(&state, &client, scope, now)?;
                let (origin, id) = (caller.origin(), client.client.id.clone());
                let at_ms = crate::state::now_ms();
                state
                    .db_write_one(move |c| {
                        let by = audit::By {
                            actor: Actor::Client(&id),
                            origin: &origin,
                            at_ms,
                        };
                        audit::record(c, &by, action::TOKEN_ISSUED, Some(&jti), Outcome::Ok)
                    })
                    .await?;
                Ok(reply)
            }
            TokenRequest::Ciba { auth_req_id } => {
                let id = auth_req_id.to_owned();
                let granted = crate::service::ciba::grant(&state, &client, id, caller.origin(), now_ms).await;
                let outcome = granted.as_ref().map_or_else(|e| e.code().as_str(), |_| "issued");
                state.metrics.polls.with_label_values(&[outcome]).inc();
                let t = granted?;
                Ok(json_response(
                    200,
                    &json!({"access_token": t.access_token, "token_type": "Bearer", "expires_in": t.expires_in, "id_token": t.id_token}),
                ))
            }
        }
    }
    .await;
    private_reply(result)
}

/// The grants this server supports.
#[derive(Clone, Copy)]
enum Grant {
    ClientCredentials,
    Ciba,
}

impl Grant {
    fn of(form: &Form) -> ApiResult<Self> {
        match form.require("grant_type")? {
            GRANT_CLIENT_CREDENTIALS => Ok(Self::ClientCredentials),
            GRANT_CIBA => Ok(Self::Ciba),
            _ => Err(
                OAuthError::new(ErrorCode::UnsupportedGrantType, "unsupported grant_type").into(),
            ),
        }
    }
}

/// What a token request asks for: one variant per grant, with that grant's parameters.
enum TokenRequest<'a> {
    ClientCredentials { scope: Option<&'a str> },
    Ciba { auth_req_id: &'a str },
}

impl<'a> TokenRequest<'a> {
    fn of(grant: Grant, form: &'a Form) -> ApiResult<Self> {
        Ok(match grant {
            Grant::ClientCredentials => Self::ClientCredentials {
                scope: form.get("scope")?,
            },
            Grant::Ciba => Self::Ciba {
                auth_req_id: form.require("auth_req_id")?,
            },
        })
    }
}

/// FAPI-CIBA (through FAPI 1.0 Advanced §5.2.2): a `fapi-ciba` client's access tokens are
/// sender-constrained, bound to the TLS client certificate it presents (RFC 8705).
fn sender_constrained(client: auth::Authenticated) -> ApiResult<auth::Authenticated> {
    if client.client.is_fapi() && client.bound_to.is_none() {
        return Err(OAuthError::invalid_request(
            "a fapi-ciba client's tokens are bound to its TLS client certificate: present it",
        )
        .into());
    }
    Ok(client)
}

fn client_credentials(
    state: &AppState,
    auth: &auth::Authenticated,
    scope: Option<&str>,
    now: i64,
) -> ApiResult<(Response, String)> {
    // A token must not mint its own successor: require the client's own credentials.
    if !matches!(
        auth.method,
        Method::ClientSecret | Method::PrivateKeyJwt | Method::Certificate
    ) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "client_credentials needs the client's own credentials (secret, private_key_jwt or certificate)",
        )
        .into());
    }
    let api_scopes = ScopeSet::from_known(CLIENT_SCOPES);
    let scopes = match scope {
        Some(raw) => {
            let asked = ScopeSet::parse(raw)?;
            if let Some(bad) = asked
                .first_outside(&auth.client.scopes)
                .or_else(|| asked.first_outside(&api_scopes))
            {
                return Err(OAuthError::invalid_scope(format!(
                    "scope {bad} is not allowed for this client"
                ))
                .into());
            }
            asked
        }
        None => auth.client.scopes.intersect(&api_scopes),
    };
    let key = state
        .keys
        .signer(Purpose::Oidc, SigningAlg::Es256, now)
        .ok_or_else(|| {
            tracing::error!("no active signing key");
            ApiError::new(OAuthError::server_error())
        })?;
    let ttl = state.config.access_token_ttl;
    let jti = random_id();
    let at = claims::Issue {
        issuer: &state.config.issuer,
        now,
        jti: &jti,
    };
    let mut claims = claims::client_access_token(at, &auth.client.id, &scopes.to_string(), ttl);
    claims::bind_to_certificate(&mut claims, auth.bound_to.as_deref());
    let token = jwt::sign(&key, TYP_CLIENT_TOKEN, &claims).map_err(|e| {
        tracing::error!(error = %e, "signing failed");
        ApiError::new(OAuthError::server_error())
    })?;
    let reply = json_response(
        200,
        &json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": scopes.to_string()}),
    );
    Ok((reply, jti))
}
