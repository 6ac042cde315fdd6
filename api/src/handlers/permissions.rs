//! The permissions API (contract §4): register, inspect, prove; and user-exists.
//! Bearer access tokens with scope `permissions/client`.

use crate::auth::{self, AuthRequest, Authenticated};
use crate::error::{ApiError, ApiResult};
use crate::http::caller::Caller;
use crate::http::form::json_body;
use crate::http::reply::{json_response, no_store};
use crate::limits::{self, Limit};
use crate::state::{now, AppState};
use ciba_domain::claims;
use ciba_domain::client::SigningAlg;
use ciba_domain::error::OAuthError;
use ciba_domain::ids::random_id;
use ciba_domain::permission::{self, binding_message, Loa};
use ciba_domain::scope::PERMISSIONS_CLIENT;
use ciba_domain::secret::sha256_b64url;
use ciba_domain::status::{PermissionStatus, RequestStatus};
use ciba_runtime::crypto::jwt::{self, TYP_PERMISSION_TOKEN};
use ciba_runtime::crypto::keyring::Purpose;
use ciba_store::permissions::{self as perms, Insert, PermissionRow};
use ciba_store::{auth_requests, users};
use serde_json::{json, Value};
use warp::hyper::body::Bytes;
use warp::reply::Response;

/// Every answer here may carry a token (`permissionToken`, a grant) or personal data: never
/// stored by a cache (RFC 6749 §5.1).
fn respond(result: ApiResult<Response>) -> Response {
    no_store(result.unwrap_or_else(ApiError::into_response))
}

async fn merchant(state: &AppState, caller: &Caller, now: i64) -> ApiResult<Authenticated> {
    let endpoint = state.config.endpoint("/permissions/v1/");
    let req = AuthRequest {
        authorization: caller.authorization.as_deref(),
        form: None,
        endpoint: &endpoint,
        allow_secret: false,
        source: caller.source,
    };
    let client = auth::authenticate(state, req, now).await?;
    client.require_scope(PERMISSIONS_CLIENT)?;
    Ok(client)
}

fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "{what}");
    OAuthError::server_error().into()
}

pub async fn register(
    state: AppState,
    caller: Caller,
    content_type: Option<String>,
    body: Bytes,
) -> Response {
    let now = now();
    respond(
        async {
            let client = merchant(&state, &caller, now).await?;
            limits::check(&state, Limit::ClientRegistrations, &client.client.id, "POST /permissions/v1/", now).await?;
            let body = json_body(content_type.as_deref(), &body)?;
            let p = permission::validate_registration(&body, &client.client, now)?;
            let id = random_id();
            let key = state.keys.signer(Purpose::Oidc, SigningAlg::Es256, now).ok_or_else(|| internal("signing", "no key"))?;
            let jti = random_id();
            let at = claims::Issue { issuer: &state.config.issuer, now, jti: &jti };
            let token_claims = claims::permission_token(at, &client.client.id, &id, p.exp);
            let token = jwt::sign(&key, TYP_PERMISSION_TOKEN, &token_claims).map_err(|e| internal("signing", e))?;
            let nnin = p.nnin.as_str().to_owned();
            let mut row = PermissionRow {
                id: id.clone(),
                client_id: client.client.id.clone(),
                kind: p.kind.as_str().into(),
                loa: p.loa.as_str().into(),
                iat: p.iat,
                exp: p.exp,
                statement: p.statement,
                digest: p.digest,
                intents: p.intents.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(" "),
                user_sub: None,
                login_hint: nnin,
                app_callback_uri: p.app_callback_uri,
                acr_values: (!p.acr_values.is_empty()).then(|| p.acr_values.join(" ")),
                status: PermissionStatus::Pending.as_str().into(),
                token_used_at: None,
                auth_req_id: None,
                grant_jws: None,
                decided_at: None,
                created_at: now,
            };
            let nonce_hash = sha256_b64url(p.nonce.as_bytes());
            let outcome = state
                .db_write(move |c| {
                    row.user_sub = users::find_by_nnin(c, &row.login_hint)?.map(|u| u.sub);
                    perms::insert_with_nonce(c, &row, &nonce_hash)
                })
                .await?;
            if outcome == Insert::NonceReused {
                return Err(OAuthError::invalid_request("permission.nonce: was already used by this client").into());
            }
            Ok(json_response(201, &json!({"id": id, "permissionToken": token, "bindingMessage": binding_message(&id)})))
        }
        .await,
    )
}

async fn owned(state: &AppState, client: &Authenticated, id: String) -> ApiResult<PermissionRow> {
    if !ciba_domain::ids::is_well_formed_id(&id) {
        return Err(OAuthError::not_found("no such permission").into());
    }
    let client_id = client.client.id.clone();
    state
        .db(move |c| perms::find_owned(c, &id, &client_id))
        .await?
        .ok_or_else(|| OAuthError::not_found("no such permission").into())
}

pub async fn get(state: AppState, id: String, caller: Caller) -> Response {
    let now = now();
    respond(
        async {
            let client = merchant(&state, &caller, now).await?;
            let p = owned(&state, &client, id).await?;
            let mut status = p.status_at(now);
            // A pending permission whose authentication request ran out is expired with it.
            if status == PermissionStatus::Pending {
                if let Some(req_id) = p.auth_req_id.clone() {
                    let r = state.db(move |c| auth_requests::find(c, &req_id)).await?;
                    if r.is_some_and(|r| {
                        RequestStatus::at(&r.status, r.expires_at, now) == RequestStatus::Expired
                    }) {
                        status = PermissionStatus::Expired;
                    }
                }
            }
            let intents: Vec<&str> = p.intents.split(' ').collect();
            Ok(json_response(
                200,
                &json!({"id": p.id, "type": p.kind, "status": status.as_str(), "iat": p.iat, "exp": p.exp, "intents": intents}),
            ))
        }
        .await,
    )
}

pub async fn grant(state: AppState, id: String, caller: Caller) -> Response {
    let now = now();
    respond(
        async {
            let client = merchant(&state, &caller, now).await?;
            let p = owned(&state, &client, id).await?;
            if p.status != PermissionStatus::Granted.as_str() {
                return Err(OAuthError::not_found("the permission is not granted").into());
            }
            if let Some(jws) = p.grant_jws {
                return Ok(json_response(200, &json!({"grant": jws})));
            }
            let jws = sign_grant(&state, &p, now).await?;
            let (pid, stored) = (p.id.clone(), jws.clone());
            let won = state
                .db_write_one(move |c| perms::store_grant_once(c, &pid, &stored))
                .await?;
            let jws = if won {
                jws
            } else {
                let pid = p.id.clone();
                state
                    .db(move |c| perms::find(c, &pid))
                    .await?
                    .and_then(|r| r.grant_jws)
                    .unwrap_or(jws)
            };
            Ok(json_response(200, &json!({"grant": jws})))
        }
        .await,
    )
}

/// The proof of a granted permission: who approved which statement, how, and when.
async fn sign_grant(state: &AppState, p: &PermissionRow, now: i64) -> ApiResult<String> {
    let sub = p
        .user_sub
        .clone()
        .ok_or_else(|| internal("grant", "granted permission without a user"))?;
    let amr: Value = match p.auth_req_id.clone() {
        Some(req) => {
            let raw = state.db(move |c| auth_requests::amr_of(c, &req)).await?;
            raw.and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_else(|| json!([]))
        }
        None => json!([]),
    };
    let acr = Loa::parse(&p.loa).unwrap_or(Loa::Substantial).acr();
    let claims = claims::Grant {
        issuer: &state.config.issuer,
        permission_id: &p.id,
        digest: &p.digest,
        user_sub: &sub,
        acr,
        amr: &amr,
        decided_at: p.decided_at.unwrap_or(now),
    }
    .claims();
    let key = state
        .keys
        .signer(Purpose::Grants, SigningAlg::Es256, now)
        .ok_or_else(|| internal("grant", "no grants key"))?;
    jwt::sign(&key, "JWT", &claims).map_err(|e| internal("grant", e))
}

pub async fn user_exists(
    state: AppState,
    caller: Caller,
    content_type: Option<String>,
    body: Bytes,
) -> Response {
    let now = now();
    respond(
        async {
            let client = merchant(&state, &caller, now).await?;
            limits::check(
                &state,
                Limit::ClientUserExists,
                &client.client.id,
                "POST /permissions/v1/user-exists",
                now,
            )
            .await?;
            let body = json_body(content_type.as_deref(), &body)?;
            let nnin = permission::parse_login_hint("loginHint", body.get("loginHint"))?;
            let nnin = nnin.as_str().to_owned();
            let exists = state
                .db(move |c| match users::find_by_nnin(c, &nnin)? {
                    Some(u) => Ok(!users::active_devices_of(c, &u.sub)?.is_empty()),
                    None => Ok(false),
                })
                .await?;
            Ok(json_response(200, &json!({"exists": exists})))
        }
        .await,
    )
}
