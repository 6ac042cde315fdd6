//! The authenticating app (contract §7): enrollment with a one-time code, the requests a
//! device may see, and the device-signed approval or decline of one request, checked against
//! the request, its permission and the device's assurance, recorded once. The handlers in
//! `crate::handlers::app` parse and render and authenticate: the list through the `device`
//! filter; the view with `authenticate_device_reading`, which reads the request
//! ([`read_by_ref`]) with the device; the decision with `authenticate_device_for_write`,
//! which reads neither when this process started the request ([`context_for`]) and read the
//! device lately, and leaves its device JWT's jti to [`record_decision`].

use crate::auth::device::{replayed, AuthenticatedDevice, UnspentJti};
use crate::auth::jti_key;
use crate::error::{ApiError, ApiResult};
use crate::state::{AppState, StartedHere};
use ciba_domain::assurance::{decision_amr, KeyProtection};
use ciba_domain::audit::{action, Actor, Origin, Outcome};
use ciba_domain::auth_request::{validate_amr, Decision};
use ciba_domain::device::DeviceInfo;
use ciba_domain::error::{ErrorCode, OAuthError};
use ciba_domain::ids::random_id;
use ciba_domain::permission::ACR_SUBSTANTIAL;
use ciba_domain::secret::sha256_b64url;
use ciba_domain::status::DeviceStatus;
use ciba_domain::status::RequestStatus;
use ciba_runtime::crypto::jwt::{self, LEEWAY};
use ciba_service::requests::{self as lifecycle, DecisionJtis, Recorded};
use ciba_store::audit;
use ciba_store::auth_requests::{self as requests, AuthRequestRow, WithContext};
use ciba_store::permissions::PermissionRow;
use ciba_store::users::{self, DeviceRow};
use ciba_store::{DbConnection, StoreResult};
use jsonwebtoken::Algorithm;
use serde_json::Value;

/// How old a signed decision may be.
const MAX_DECISION_AGE: i64 = 120;

/// The request behind `link_ref` and its permission, if `dev`'s user may see it.
pub async fn request_for(
    state: &AppState,
    dev: &AuthenticatedDevice,
    link_ref: String,
) -> ApiResult<(AuthRequestRow, PermissionRow)> {
    let found = state.db(move |c| read_by_ref(c, &link_ref)).await?;
    visible(found, dev)
}

/// The request behind `link_ref` with its context, as [`visible`] takes it (`None` for a
/// reference no request could have, without a read).
pub fn read_by_ref(c: &mut DbConnection, link_ref: &str) -> StoreResult<Option<WithContext>> {
    if !ciba_domain::ids::is_well_formed_id(link_ref) {
        return Ok(None);
    }
    requests::find_by_ref_with_context(c, link_ref)
}

/// The request behind `link_ref` as it started through this process, with its permission,
/// in the shape [`read_by_ref`] reads it: for the decision only, whose write checks what may
/// have changed since (the request still pending and unexpired, the device still active).
pub fn context_for(state: &AppState, link_ref: &str) -> Option<WithContext> {
    let started = state.started_here.get(link_ref)?;
    let (r, p) = StartedHere::clone(&started);
    Some((r, Some(p), None))
}

/// The request read by [`read_by_ref`] and its permission, if `dev`'s user may see it: 404
/// when there is none, 403 when it is another user's.
pub fn visible(
    found: Option<WithContext>,
    dev: &AuthenticatedDevice,
) -> ApiResult<(AuthRequestRow, PermissionRow)> {
    let found = found
        .and_then(|(r, p, _)| Some((r, p?)))
        .ok_or_else(|| ApiError::from(OAuthError::not_found("no such request")))?;
    // Contract §7: a device of another user may not see or decide it (403, like a phone of
    // the same user that did not match at app-authorize).
    if found.0.user_sub != dev.device.user_sub {
        return Err(OAuthError::new(
            ErrorCode::AccessDenied,
            "this request is for another user's device",
        )
        .with_status(403)
        .into());
    }
    Ok(found)
}

/// A signed decision that passed every check, ready to record.
pub struct CheckedDecision {
    request: AuthRequestRow,
    permission: PermissionRow,
    decision: Decision,
    /// RFC 8176 methods, a JSON array.
    amr: String,
    /// The decision's jti key and how long it is kept.
    jti: (String, i64),
}

/// Check the signed decision of `dev` on the request behind `link_ref` (`r`, `p`, as
/// [`visible`] gave them): its signature, its claims against the request and permission, the
/// device's assurance, and that the request is pending. Nothing is written.
pub fn check_decision(
    dev: &AuthenticatedDevice,
    link_ref: &str,
    (r, p): (AuthRequestRow, PermissionRow),
    signed: Option<&str>,
    now: i64,
) -> ApiResult<CheckedDecision> {
    let signed =
        signed.ok_or_else(|| OAuthError::invalid_request("signed_decision: is required"))?;
    let claims = verify_decision(signed, dev)?;
    if claims.get("ref").and_then(Value::as_str) != Some(link_ref) {
        return Err(
            OAuthError::invalid_request("signed_decision: ref does not name this request").into(),
        );
    }
    let decision = claims
        .get("decision")
        .and_then(Value::as_str)
        .and_then(Decision::parse);
    let decision = decision.ok_or_else(|| {
        OAuthError::invalid_request("signed_decision: decision must be approve or decline")
    })?;
    if claims.get("permission_digest").and_then(Value::as_str) != Some(p.digest.as_str()) {
        return Err(OAuthError::invalid_request(
            "signed_decision: permission_digest does not match the permission",
        )
        .into());
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(|| OAuthError::invalid_request("signed_decision: iat is required"))?;
    if iat > now + LEEWAY || iat < now - MAX_DECISION_AGE {
        return Err(OAuthError::invalid_request("signed_decision: iat is not recent").into());
    }
    // amr never claims more than the device was enrolled with; an approval must reach
    // the request's acr (a decline only has to be honest).
    let key = KeyProtection::parse(&dev.device.key_protection).unwrap_or(KeyProtection::Software);
    let needed = match decision {
        Decision::Approve => r.acr.as_str(),
        Decision::Decline => ACR_SUBSTANTIAL,
    };
    let amr = decision_amr(validate_amr(claims.get("amr"))?, key, needed)?;
    may_decide(&r, dev)?;
    if RequestStatus::at(&r.status, r.expires_at, now) != RequestStatus::Pending {
        return Err(not_pending());
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty() && j.len() <= ciba_domain::ids::MAX_ID_LEN);
    let jti = jti.ok_or_else(|| {
        OAuthError::invalid_request("signed_decision: jti is missing or too long")
    })?;
    Ok(CheckedDecision {
        amr: serde_json::to_string(&amr).unwrap_or_default(),
        jti: (
            jti_key("decision", &dev.device.id, jti),
            now + MAX_DECISION_AGE + LEEWAY,
        ),
        request: r,
        permission: p,
        decision,
    })
}

/// Record a `checked` decision of `dev` once, with its jti and the device JWT's (`device_jti`)
/// spent in the same write: one commit. A decision refused by its checks still spends the
/// device JWT, and a device JWT used before is refused as such whatever else was wrong.
/// Returns the decision and the permission (its `app_callback_uri` is where the app goes).
pub async fn record_decision(
    state: &AppState,
    dev: &AuthenticatedDevice,
    device_jti: UnspentJti,
    checked: ApiResult<CheckedDecision>,
    origin: Origin,
    now: i64,
) -> ApiResult<(Decision, PermissionRow)> {
    let checked = match checked {
        Ok(checked) => checked,
        Err(e) => return Err(spend_refused(state, dev, device_jti, e).await),
    };
    let CheckedDecision {
        request: r,
        permission: p,
        decision,
        amr: amr_json,
        jti: (jti_key, jti_expires),
    } = checked;
    let (id, device_id) = (r.id.clone(), dev.device.id.clone());
    let by = audit::By {
        actor: Actor::Device(&device_id),
        origin: &origin,
        at_ms: crate::state::now_ms(),
    };
    let what = match decision {
        Decision::Approve => action::REQUEST_APPROVED,
        Decision::Decline => action::REQUEST_DECLINED,
    };
    let event = audit::row(&by, what, Some(&id), Outcome::Ok);
    let ping = r.client_notification_token.is_some();
    let outcome = state
        .db_write_one(move |c| {
            let decided = lifecycle::Decision {
                status: decision.status(),
                device_id: &device_id,
                amr: &amr_json,
            };
            let spent = DecisionJtis {
                decision: (jti_key.as_str(), jti_expires),
                device: (device_jti.key.as_str(), device_jti.expires_at),
            };
            lifecycle::decide_signed(c, &spent, &id, &decided, (&event, ping), now)
        })
        .await?;
    match outcome {
        Recorded::Decided => {
            let event = match decision {
                Decision::Approve => "approved",
                Decision::Decline => "declined",
            };
            state.metrics.flow(&r.flow, event);
            state.decided_here.put(&r.id, ());
            state.started_here.take(&r.link_ref);
        }
        Recorded::NotPending => {
            state.started_here.take(&r.link_ref);
            return Err(not_pending());
        }
        Recorded::DeviceInactive => {
            state.devices_read.take(&dev.device.id);
            return Err(crate::auth::device::no_longer_active());
        }
        Recorded::JtiUsed => {
            return Err(OAuthError::invalid_request("signed_decision: jti was already used").into())
        }
        Recorded::DeviceJtiUsed => return Err(replayed()),
    }
    Ok((decision, p))
}

/// The answer to a decision refused by its checks (`refused`), its device JWT's jti spent:
/// replayed, or a device revoked since it was read (its row may come from memory), both 401
/// whatever else was wrong; else `refused`.
async fn spend_refused(
    state: &AppState,
    dev: &AuthenticatedDevice,
    device_jti: UnspentJti,
    refused: ApiError,
) -> ApiError {
    let device_id = dev.device.id.clone();
    let spent = state
        .db_write_one(move |c| {
            let fresh = ciba_store::jtis::record(c, &device_jti.key, device_jti.expires_at)?;
            Ok((fresh, users::device_is_active(c, &device_id)?))
        })
        .await;
    match spent {
        Err(e) => e,
        Ok((false, _)) => replayed(),
        Ok((true, false)) => {
            state.devices_read.take(&dev.device.id);
            crate::auth::device::no_longer_active()
        }
        Ok((true, true)) => refused,
    }
}

/// App2App: only the devices that matched at app-authorize may see or decide the request.
pub(crate) fn may_decide(r: &AuthRequestRow, dev: &AuthenticatedDevice) -> ApiResult<()> {
    if r.allowed_devices()
        .is_some_and(|ids| !ids.contains(&dev.device.id))
    {
        return Err(OAuthError::new(
            ErrorCode::AccessDenied,
            "only the device that matched at app-authorize may see or decide this request",
        )
        .with_status(403)
        .into());
    }
    Ok(())
}

pub(crate) fn not_pending() -> ApiError {
    OAuthError::new(
        ErrorCode::RequestNotPending,
        "the request is no longer pending",
    )
    .into()
}

/// The decision JWS must be signed by the authenticated device's own key.
pub(crate) fn verify_decision(signed: &str, dev: &AuthenticatedDevice) -> ApiResult<Value> {
    let bad = || {
        ApiError::from(OAuthError::invalid_request(
            "signed_decision: not signed by this device",
        ))
    };
    let header = jsonwebtoken::decode_header(signed).map_err(|_| bad())?;
    if header.kid.as_deref().is_some_and(|k| k != dev.device.id) {
        return Err(bad());
    }
    let (_, claims) = jwt::verify_signature(signed, &dev.key, Algorithm::ES256).map_err(|e| {
        if e == jwt::REPEATED_CLAIM {
            ApiError::from(OAuthError::invalid_request(format!("signed_decision: {e}")))
        } else {
            bad()
        }
    })?;
    Ok(claims)
}

/// What an app offers to enroll, checked by the handler.
pub struct NewDevice {
    pub info: DeviceInfo,
    /// The canonical public JWK.
    pub public_jwk: String,
    pub name: Option<String>,
    pub key_protection: KeyProtection,
}

/// Enroll a device with a one-time code: the code is consumed, the device inserted and the
/// event recorded in one transaction. A user at `CIBA_MAX_DEVICES_PER_USER` enrolls nothing
/// and keeps the code.
pub async fn enroll(
    state: &AppState,
    code: &str,
    new: NewDevice,
    origin: Origin,
    now: i64,
) -> ApiResult<String> {
    let device_id = random_id();
    let code_hash = sha256_b64url(code.as_bytes());
    let hwk = new.key_protection == KeyProtection::Hardware;
    let mut row = DeviceRow {
        id: device_id.clone(),
        user_sub: String::new(),
        platform: new.info.platform,
        manufacturer: new.info.manufacturer,
        model: new.info.model,
        public_jwk: new.public_jwk,
        name: new.name,
        status: DeviceStatus::Active.as_str().into(),
        created_at: now,
        revoked_at: None,
        key_protection: new.key_protection.as_str().into(),
    };
    let max_devices = state.config.max_devices_per_user;
    let at_ms = crate::state::now_ms();
    let enrolled = state
        .db_write(move |c| {
            if let Some(user) = users::user_of_open_code(c, &code_hash, now)? {
                users::lock_user(c, &user)?;
                if users::active_devices_of(c, &user)?.len() as i64 >= max_devices {
                    return Ok(None);
                }
            }
            let Some(user) = users::consume_enrollment_code(c, &code_hash, &row.id, hwk, now)?
            else {
                return Ok(Some(false));
            };
            row.user_sub = user;
            users::insert_device(c, &row)?;
            let by = audit::By {
                actor: Actor::Device(&row.id),
                origin: &origin,
                at_ms,
            };
            let id = Some(row.id.as_str());
            audit::record(c, &by, action::DEVICE_ENROLLED, id, Outcome::Ok)?;
            Ok(Some(true))
        })
        .await?;
    match enrolled {
        Some(true) => Ok(device_id),
        Some(false) => Err(OAuthError::invalid_grant(
            "the enrollment code is invalid, expired or already used, or requires a hardware-bound key (hwk)",
        )
        .into()),
        None => Err(OAuthError::invalid_grant(
            "the user has as many devices as allowed: revoke one first",
        )
        .into()),
    }
}

/// The pending requests `dev` may answer: its user's, unless a request names other devices.
pub async fn pending(
    state: &AppState,
    dev: &AuthenticatedDevice,
    now: i64,
) -> ApiResult<Vec<AuthRequestRow>> {
    let sub = dev.device.user_sub.clone();
    let rows = state
        .db(move |c| requests::pending_for_user(c, &sub, now))
        .await?;
    let id = &dev.device.id;
    Ok(rows
        .into_iter()
        .filter(|r| r.allowed_devices().is_none_or(|ids| ids.contains(id)))
        .collect())
}
