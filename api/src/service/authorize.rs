//! Starting an authentication (App2App and CIBA): the permission behind a token, its single
//! use, the hinted user and their devices, and the request stored with the permission's use.
//! The handlers in `crate::handlers::authorize` parse, check limits and order these steps.

use crate::auth::Authenticated;
use crate::error::{oauth_error, ApiError, ApiResult};
use crate::state::AppState;
use ciba_domain::assurance::KeyProtection;
use ciba_domain::audit::{action, Actor, Origin, Outcome};
use ciba_domain::auth_request::expiry;
use ciba_domain::client::Client;
use ciba_domain::error::{ErrorCode, OAuthError};
use ciba_domain::ids::random_id;
use ciba_domain::nnin::Nnin;
use ciba_domain::permission::{binding_message, Intent, NewPermission};
use ciba_domain::scope::ScopeSet;
use ciba_domain::secret::sha256_b64url;
use ciba_domain::status::{PermissionStatus, RequestStatus};
use ciba_runtime::crypto::jwt::{self, LEEWAY, TYP_PERMISSION_TOKEN};
use ciba_runtime::crypto::keyring::Purpose;
use ciba_store::audit;
use ciba_store::auth_requests::{self as requests, AuthRequestRow};
use ciba_store::permissions::{self as perms, Insert, PermissionRow};
use ciba_store::users::{self, DeviceRow};
use serde_json::Value;
use std::sync::Arc;

/// Verify a permission token of ours and return its permission id.
pub(crate) fn verify_permission_token(
    state: &AppState,
    token: &str,
    client: &Client,
    now: i64,
) -> ApiResult<String> {
    let invalid = || {
        oauth_error(
            ErrorCode::InvalidRequest,
            "login_hint_token is not a valid permission token",
        )
    };
    // A token signed here and not seen back yet needs no signature check; a revoked key's
    // tokens stop at once all the same.
    let issued = state.issued_permission_tokens.take(token, &state.keys, now);
    let claims = match issued {
        Some(claims) => Arc::unwrap_or_clone(claims),
        None => state
            .keys
            .verify(token, Purpose::Oidc, TYP_PERMISSION_TOKEN, now)
            .map_err(|_| invalid())?,
    };
    if claims
        .get("exp")
        .and_then(Value::as_i64)
        .is_some_and(|exp| exp + LEEWAY <= now)
    {
        return Err(oauth_error(
            ErrorCode::ExpiredLoginHintToken,
            "the permission token has expired",
        ));
    }
    jwt::check_own_claims(&claims, &state.config.issuer, now).map_err(|_| invalid())?;
    if claims.get("client_id").and_then(Value::as_str) != Some(client.id.as_str()) {
        return Err(oauth_error(
            ErrorCode::InvalidRequest,
            "login_hint_token was issued to another client",
        ));
    }
    claims
        .get("permission_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(invalid)
}

/// Contract §5: the permission behind a token (owned, with `intent`, pending, unexpired,
/// unused), and its token used up, in one conditional statement: it fails if the token was
/// used or the permission moved meanwhile, and what else it checks (owner, intents, `exp`)
/// never changes. A request that got past client authentication and token verification
/// uses the token up whatever its answer: it is claimed before anything about the user or
/// their phones is looked at, so parallel calls with one token cannot each learn something
/// (one phone model per call): exactly one of them gets past this point. Only a refused
/// claim reads the permission, to say why.
pub(crate) async fn claim_permission(
    state: &AppState,
    id: String,
    client: &Client,
    intent: Intent,
    now: i64,
) -> ApiResult<PermissionRow> {
    let client_id = client.id.clone();
    state
        .db_write_one(move |c| {
            if let Some(p) = perms::claim_token(c, (&id, &client_id), intent.as_str(), now)? {
                return Ok(Ok(p));
            }
            Ok(Err(refusal(c, (&id, &client_id), intent, now)?))
        })
        .await?
}

/// [`claim_permission`] and then [`hinted_user`], in one step: one statement on PostgreSQL.
pub(crate) async fn claim_permission_for_user(
    state: &AppState,
    id: String,
    client: &Client,
    intent: Intent,
    now: i64,
) -> ApiResult<(PermissionRow, (String, Vec<DeviceRow>))> {
    let client_id = client.id.clone();
    let (permission, user) = state
        .db_write_one(move |c| {
            if let Some(claimed) =
                perms::claim_for_user(c, (&id, &client_id), intent.as_str(), now)?
            {
                return Ok(Ok(claimed));
            }
            Ok(Err(refusal(c, (&id, &client_id), intent, now)?))
        })
        .await??;
    Ok((permission, with_a_device(user)?))
}

/// Why a token's claim was refused, read once the claim changed nothing.
fn refusal(
    c: &mut ciba_store::DbConnection,
    (id, client_id): (&str, &str),
    intent: Intent,
    now: i64,
) -> ciba_store::StoreResult<ApiError> {
    Ok(claimable(c, (id, client_id), intent, now)?
        .err()
        .unwrap_or_else(already_used))
}

/// Whether the token of permission `id` may start a request of `client_id` with `intent`
/// now, as the stored row says, and if not why.
fn claimable(
    c: &mut ciba_store::DbConnection,
    (id, client_id): (&str, &str),
    intent: Intent,
    now: i64,
) -> ciba_store::StoreResult<ApiResult<()>> {
    let Some(p) = perms::find_owned(c, id, client_id)? else {
        return Ok(Err(oauth_error(
            ErrorCode::InvalidRequest,
            "login_hint_token names no permission of this client",
        )));
    };
    Ok(usable(&p, intent, now))
}

/// Whether a permission read for a token may start a request with `intent` at `now`.
pub(crate) fn usable(p: &PermissionRow, intent: Intent, now: i64) -> ApiResult<()> {
    if !p.intents.split(' ').any(|i| i == intent.as_str()) {
        return Err(OAuthError::invalid_request(format!(
            "the permission does not have intent {}",
            intent.as_str()
        ))
        .into());
    }
    if p.status_at(now) == PermissionStatus::Expired {
        return Err(oauth_error(
            ErrorCode::ExpiredLoginHintToken,
            "the permission has expired",
        ));
    }
    if p.status != PermissionStatus::Pending.as_str() || p.token_used_at.is_some() {
        return Err(already_used());
    }
    Ok(())
}

fn already_used() -> ApiError {
    oauth_error(
        ErrorCode::InvalidRequest,
        "login_hint_token was already used",
    )
}

/// The user behind a permission, who must have at least one active device.
pub(crate) async fn hinted_user(
    state: &AppState,
    p: &PermissionRow,
) -> ApiResult<(String, Vec<ciba_store::users::DeviceRow>)> {
    let (known, nnin) = (p.user_sub.clone(), p.login_hint.clone());
    let found = state
        .db(move |c| {
            let who = match &known {
                Some(sub) => users::UserKey::Sub(sub),
                None => users::UserKey::Nnin(&nnin),
            };
            users::with_active_devices(c, who)
        })
        .await?;
    with_a_device(found)
}

/// The hinted user found with their active devices, if they have at least one.
fn with_a_device(found: Option<(String, Vec<DeviceRow>)>) -> ApiResult<(String, Vec<DeviceRow>)> {
    match found {
        Some((sub, devices)) if !devices.is_empty() => Ok((sub, devices)),
        _ => Err(oauth_error(
            ErrorCode::UnknownUserId,
            "the hinted user has no active enrolled device",
        )),
    }
}

pub(crate) fn key_protections<'a>(
    devices: impl Iterator<Item = &'a DeviceRow>,
) -> Vec<KeyProtection> {
    devices
        .map(|d| KeyProtection::parse(&d.key_protection).unwrap_or(KeyProtection::Software))
        .collect()
}

pub(crate) struct Start<'a> {
    pub(crate) client: &'a Authenticated,
    /// What the request must reach (contract §3, [`ciba_domain::assurance`]).
    pub(crate) acr: &'static str,
    pub(crate) permission: PermissionRow,
    pub(crate) user_sub: String,
    pub(crate) scope: ScopeSet,
    pub(crate) flow: Intent,
    pub(crate) allowed_devices: Option<Vec<String>>,
    pub(crate) requested_expiry: Option<i64>,
    pub(crate) notification_token: Option<String>,
    pub(crate) binding_message: Option<String>,
    /// A permission made for a plain `login_hint`, stored with the request.
    pub(crate) new_permission: Option<String>,
    /// Where the start came from (the audit trail).
    pub(crate) origin: Origin,
}

pub(crate) async fn start(state: &AppState, s: Start<'_>, now: i64) -> ApiResult<AuthRequestRow> {
    stored(state, s, None, now).await?.ok_or_else(already_used)
}

/// [`start`] with the token's claim in the same step (instead of [`claim_permission_for_user`]
/// first), from what registration through this process read of the user: `active`, all
/// their active devices then, from which the request's devices and acr were worked out.
/// `None`, and nothing written, when the token was used or the permission moved, or the
/// user's active devices are no longer those: then the caller claims the token.
pub(crate) async fn start_known(
    state: &AppState,
    s: Start<'_>,
    active: &[DeviceRow],
    now: i64,
) -> ApiResult<Option<AuthRequestRow>> {
    let ids = active.iter().map(|d| d.id.clone()).collect();
    stored(state, s, Some(ids), now).await
}

/// The request `s` asks for, stored; with the token's claim when `claimed_with` gives the
/// user's active devices ([`start_known`]). `None` when it was not stored.
async fn stored(
    state: &AppState,
    s: Start<'_>,
    claimed_with: Option<Vec<String>>,
    now: i64,
) -> ApiResult<Option<AuthRequestRow>> {
    let row = request_row(state, &s, now);
    let (stored, permission) = (row.clone(), s.permission);
    let (nonce, origin, at_ms) = (s.new_permission, s.origin, crate::state::now_ms());
    let by = audit::By {
        actor: Actor::Client(&stored.client_id),
        origin: &origin,
        at_ms,
    };
    let event = audit::row(&by, action::REQUEST_STARTED, Some(&stored.id), Outcome::Ok);
    let started = match (nonce, claimed_with) {
        // From a registered permission (the common case): one statement on PostgreSQL.
        (None, None) => {
            let permission_id = permission.id.clone();
            state
                .db_write_one(move |c| {
                    requests::start_recorded(c, &stored, &permission_id, now, &event)
                })
                .await?
        }
        (None, Some(active)) => {
            let (permission_id, intent, user) =
                (permission.id.clone(), s.flow, stored.user_sub.clone());
            state
                .db_write_one(move |c| {
                    let known = requests::KnownDevices {
                        user_sub: &user,
                        active: &active,
                    };
                    let claim = (permission_id.as_str(), intent.as_str());
                    if requests::claim_and_start(c, &stored, claim, &known, now, &event)? {
                        return Ok(Ok(true));
                    }
                    // Nothing written. A token that can no longer be used is refused here,
                    // in this trip, as a refused claim is: the answer takes as long whatever
                    // the phones were. Else the user's phones changed: false.
                    let owned = (permission_id.as_str(), stored.client_id.as_str());
                    Ok(claimable(c, owned, intent, now)?.map(|()| false))
                })
                .await??
        }
        (Some(nonce_hash), _) => {
            let permission = permission.clone();
            let id = Some(permission.id.as_str());
            let registered = audit::row(&by, action::PERMISSION_REGISTERED, id, Outcome::Ok);
            state
                .db_write(move |c| {
                    if perms::insert_with_nonce(c, &permission, &nonce_hash)? == Insert::NonceReused
                    {
                        return Ok(false);
                    }
                    audit::insert(c, &registered)?;
                    if !requests::start(c, &stored, &permission.id, now)? {
                        return Ok(false);
                    }
                    audit::insert(c, &event)?;
                    Ok(true)
                })
                .await?
        }
    };
    if !started {
        return Ok(None);
    }
    state.metrics.flow(&row.flow, "started");
    // The app decides it next, most likely through this process (of no use when the device
    // is read afresh every time: CIBA_CLIENT_CACHE_TTL=0).
    if state.config.client_cache_ttl > 0 {
        state
            .started_here
            .put(&row.link_ref, Arc::new((row.clone(), permission)));
    }
    Ok(Some(row))
}

/// The row of the request `s` asks for, as it is stored.
fn request_row(state: &AppState, s: &Start<'_>, now: i64) -> AuthRequestRow {
    let cfg = &state.config;
    let expires_at = expiry(
        now,
        s.requested_expiry,
        cfg.auth_request_ttl,
        cfg.auth_request_max_ttl,
        s.permission.exp,
    );
    AuthRequestRow {
        id: random_id(),
        link_ref: random_id(),
        client_id: s.client.client.id.clone(),
        permission_id: Some(s.permission.id.clone()),
        user_sub: s.user_sub.clone(),
        flow: s.flow.as_str().into(),
        scope: s.scope.to_string(),
        acr: s.acr.into(),
        binding_message: Some(
            s.binding_message
                .clone()
                .unwrap_or_else(|| binding_message(&s.permission.id)),
        ),
        client_notification_token: s.notification_token.clone(),
        allowed_devices: s
            .allowed_devices
            .as_ref()
            .map(|d| serde_json::to_string(d).unwrap_or_default()),
        status: RequestStatus::Pending.as_str().into(),
        interval_secs: cfg.poll_interval,
        last_poll_ms: None,
        slowed_down_ms: None,
        created_at: now,
        expires_at,
        decided_at: None,
        device_id: None,
        amr: None,
        redeemed_at: None,
    }
}

/// A plain `login_hint` authentication gets its own `authentication.v1` permission, so every
/// request carries a statement and a digest the app signs.
pub(crate) fn login_permission(
    state: &AppState,
    client: &Client,
    nnin: &Nnin,
    now: i64,
) -> (PermissionRow, String) {
    let exp = now + state.config.auth_request_max_ttl;
    let p = NewPermission::login(nnin.clone(), now, exp);
    let nonce_hash = sha256_b64url(p.nonce.as_bytes());
    (
        PermissionRow::pending(random_id(), &client.id, p, now),
        nonce_hash,
    )
}
