//! The permissions use cases (contract §4): register a validated permission, read one as its
//! owner sees it, prove a granted one, and answer user-exists. The handlers authenticate,
//! parse and render; what is read, decided and written is here.

use super::internal;
use crate::error::ApiResult;
use crate::state::AppState;
use ciba_domain::audit::{action, Actor, Origin, Outcome};
use ciba_domain::claims;
use ciba_domain::client::SigningAlg;
use ciba_domain::error::OAuthError;
use ciba_domain::ids::{is_well_formed_id, random_id};
use ciba_domain::nnin::Nnin;
use ciba_domain::permission::{Loa, NewPermission};
use ciba_domain::secret::sha256_b64url;
use ciba_domain::status::{PermissionStatus, RequestStatus};
use ciba_runtime::crypto::jwt::{self, TYP_PERMISSION_TOKEN};
use ciba_runtime::crypto::keyring::Purpose;
use ciba_store::permissions::{self as perms, Insert, PermissionRow};
use ciba_store::{audit, auth_requests, users};
use serde_json::{json, Value};

/// A registered permission: its id and the merchant's single-use token for it.
pub struct Registered {
    pub id: String,
    pub token: String,
}

/// Store `p` for `client_id` with its nonce claimed (unique per client forever) and sign its
/// permission token.
pub async fn register(
    state: &AppState,
    client_id: &str,
    p: NewPermission,
    origin: Origin,
    now: i64,
) -> ApiResult<Registered> {
    let id = random_id();
    let key = state
        .keys
        .signer(Purpose::Oidc, SigningAlg::Es256, now)
        .ok_or_else(|| internal("signing", "no key"))?;
    let jti = random_id();
    let at = claims::Issue {
        issuer: &state.config.issuer,
        now,
        jti: &jti,
    };
    let token_claims = claims::permission_token(at, client_id, &id, p.exp);
    let token =
        jwt::sign(&key, TYP_PERMISSION_TOKEN, &token_claims).map_err(|e| internal("signing", e))?;
    let nonce_hash = sha256_b64url(p.nonce.as_bytes());
    let row = PermissionRow::pending(id.clone(), client_id, p, now);
    let by = audit::By {
        actor: Actor::Client(client_id),
        origin: &origin,
        at_ms: crate::state::now_ms(),
    };
    let event = audit::row(&by, action::PERMISSION_REGISTERED, Some(&id), Outcome::Ok);
    // Shared with the write (which may run twice, see `db_write_one`), then kept below; by
    // then the write has let go of it, so it is not copied.
    let row = std::sync::Arc::new(row);
    let written = row.clone();
    let (outcome, user) = state
        .db_write_one(move |c| perms::register_reading_user(c, &written, &nonce_hash, &event))
        .await?;
    let stored = std::sync::Arc::try_unwrap(row).unwrap_or_else(|row| (*row).clone());
    if outcome == Insert::NonceReused {
        return Err(OAuthError::invalid_request(
            "permission.nonce: was already used by this client",
        )
        .into());
    }
    state
        .issued_permission_tokens
        .put(&token, std::sync::Arc::new(token_claims), &key.kid);
    if let Some((sub, devices)) = user.filter(|(_, d)| !d.is_empty()) {
        // app-authorize comes next, most likely to this process.
        let mut stored = stored;
        stored.user_sub = Some(sub.clone());
        let known = crate::state::RegisteredHere {
            permission: stored,
            user_sub: sub,
            devices,
        };
        state.registered_here.put(&id, std::sync::Arc::new(known));
    }
    Ok(Registered { id, token })
}

/// The permission `id` if `client_id` owns it (another client's reads as absent).
async fn owned(state: &AppState, client_id: &str, id: String) -> ApiResult<PermissionRow> {
    if !is_well_formed_id(&id) {
        return Err(OAuthError::not_found("no such permission").into());
    }
    let client_id = client_id.to_owned();
    state
        .db(move |c| perms::find_owned(c, &id, &client_id))
        .await?
        .ok_or_else(|| OAuthError::not_found("no such permission").into())
}

/// The permission and its status at `now`: a pending one whose authentication request ran
/// out is expired with it.
pub async fn inspect(
    state: &AppState,
    client_id: &str,
    id: String,
    now: i64,
) -> ApiResult<(PermissionRow, PermissionStatus)> {
    let p = owned(state, client_id, id).await?;
    let mut status = p.status_at(now);
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
    Ok((p, status))
}

/// The grant JWS of a granted permission: signed once, stored, the same ever after.
pub async fn grant(state: &AppState, client_id: &str, id: String, now: i64) -> ApiResult<String> {
    let p = owned(state, client_id, id).await?;
    if p.status != PermissionStatus::Granted.as_str() {
        return Err(OAuthError::not_found("the permission is not granted").into());
    }
    if let Some(jws) = p.grant_jws {
        return Ok(jws);
    }
    let jws = sign_grant(state, &p, now).await?;
    let (pid, stored) = (p.id.clone(), jws.clone());
    let won = state
        .db_write_one(move |c| perms::store_grant_once(c, &pid, &stored))
        .await?;
    if won {
        return Ok(jws);
    }
    let pid = p.id.clone();
    Ok(state
        .db(move |c| perms::find(c, &pid))
        .await?
        .and_then(|r| r.grant_jws)
        .unwrap_or(jws))
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

/// Whether the user with this NNIN has at least one active enrolled device.
pub async fn user_exists(state: &AppState, nnin: &Nnin) -> ApiResult<bool> {
    let nnin = nnin.as_str().to_owned();
    state
        .db(move |c| match users::find_by_nnin(c, &nnin)? {
            Some(u) => Ok(!users::active_devices_of(c, &u.sub)?.is_empty()),
            None => Ok(false),
        })
        .await
}
