//! The authenticating app's API (contract §7): enrollment, pending requests, one request,
//! and the signed decision.

use crate::auth::device::authenticate_device;
use crate::error::{private_reply, ApiError, ApiResult};
use crate::http::caller::Caller;
use crate::http::form::json_body;
use crate::http::reply::json_response;
use crate::service::device_app;
use crate::state::{now, AppState};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_domain::assurance::KeyProtection;
use ciba_domain::audit::{action, Actor, Outcome};
use ciba_domain::device::DeviceInfo;
use ciba_domain::error::OAuthError;
use ciba_domain::ids::random_id;
use ciba_domain::secret::sha256_b64url;
use ciba_domain::status::{DeviceStatus, RequestStatus};
use ciba_store::audit;
use ciba_store::auth_requests::{self as requests};
use ciba_store::users::{self, DeviceRow};
use serde_json::{json, Value};
use std::collections::HashMap;
use warp::hyper::body::Bytes;
use warp::reply::Response;

/// A public EC P-256 JWK, canonicalised to `{kty, crv, x, y}`.
fn device_public_jwk(v: Option<&Value>) -> ApiResult<String> {
    let bad = || {
        ApiError::from(OAuthError::invalid_request(
            "public_jwk: must be a public EC P-256 JWK",
        ))
    };
    let obj = v.and_then(Value::as_object).ok_or_else(bad)?;
    if obj.get("kty").and_then(Value::as_str) != Some("EC")
        || obj.get("crv").and_then(Value::as_str) != Some("P-256")
        || obj.contains_key("d")
    {
        return Err(bad());
    }
    let coord = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .filter(|b| b.len() == 32)
    };
    let (x, y) = (coord("x").ok_or_else(bad)?, coord("y").ok_or_else(bad)?);
    let mut sec1 = vec![4u8];
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    p256::PublicKey::from_sec1_bytes(&sec1).map_err(|_| bad())?;
    Ok(json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)}).to_string())
}

pub async fn enroll(
    state: AppState,
    caller: Caller,
    content_type: Option<String>,
    body: Bytes,
) -> Response {
    let now = now();
    let (origin, at_ms) = (caller.origin(), crate::state::now_ms());
    private_reply(
        async {
            let body = json_body(content_type.as_deref(), &body)?;
            let code = body
                .get("enrollment_code")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty());
            let code =
                code.ok_or_else(|| OAuthError::invalid_request("enrollment_code: is required"))?;
            let info = DeviceInfo::from_json(
                "device_info",
                body.get("device_info").unwrap_or(&Value::Null),
            )?;
            let public_jwk = device_public_jwk(body.get("public_jwk"))?;
            // What the app says its key is (RFC 8176); nothing said is a software key.
            let key_protection = match body.get("key_protection") {
                None | Some(Value::Null) => KeyProtection::Software,
                Some(v) => v.as_str().and_then(KeyProtection::parse).ok_or_else(|| {
                    OAuthError::invalid_request("key_protection: must be hwk or swk")
                })?,
            };
            let name = match body.get("name") {
                None | Some(Value::Null) => None,
                Some(Value::String(n)) if !n.trim().is_empty() && n.chars().count() <= 100 => {
                    Some(n.trim().to_owned())
                }
                Some(_) => {
                    return Err(
                        OAuthError::invalid_request("name: must be 1 to 100 characters").into(),
                    )
                }
            };
            let device_id = random_id();
            let code_hash = sha256_b64url(code.as_bytes());
            let mut row = DeviceRow {
                id: device_id.clone(),
                user_sub: String::new(),
                platform: info.platform,
                manufacturer: info.manufacturer,
                model: info.model,
                public_jwk,
                name,
                status: DeviceStatus::Active.as_str().into(),
                created_at: now,
                revoked_at: None,
                key_protection: key_protection.as_str().into(),
            };
            let hwk = key_protection == KeyProtection::Hardware;
            let max_devices = state.config.max_devices_per_user;
            let enrolled = state
                .db_write(move |c| {
                    // A user at the device limit enrolls nothing (the code stays unused).
                    if let Some(user) = users::user_of_open_code(c, &code_hash, now)? {
                        users::lock_user(c, &user)?;
                        if users::active_devices_of(c, &user)?.len() as i64 >= max_devices {
                            return Ok(None);
                        }
                    }
                    match users::consume_enrollment_code(c, &code_hash, &row.id, hwk, now)? {
                        Some(user) => {
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
                        }
                        None => Ok(Some(false)),
                    }
                })
                .await?;
            match enrolled {
                Some(true) => {}
                Some(false) => {
                    return Err(OAuthError::invalid_grant(
                        "the enrollment code is invalid, expired or already used, or requires a hardware-bound key (hwk)",
                    )
                    .into())
                }
                None => {
                    return Err(OAuthError::invalid_grant(
                        "the user has as many devices as allowed: revoke one first",
                    )
                    .into())
                }
            }
            Ok(json_response(201, &json!({"device_id": device_id})))
        }
        .await,
    )
}

/// A request the device may see: it belongs to the device's user.
async fn client_name(state: &AppState, id: &str) -> ApiResult<String> {
    Ok(state
        .client_row(id)
        .await?
        .map(|c| c.name)
        .unwrap_or_default())
}

pub async fn list(state: AppState, caller: Caller, query: HashMap<String, String>) -> Response {
    let now = now();
    private_reply(
        async {
            let dev = authenticate_device(&state, caller.authorization.as_deref(), now).await?;
            if query.get("status").is_some_and(|s| s != RequestStatus::Pending.as_str()) {
                return Err(OAuthError::invalid_request("status: only pending is supported").into());
            }
            let sub = dev.device.user_sub.clone();
            let rows = state.db(move |c| requests::pending_for_user(c, &sub, now)).await?;
            let mut out = Vec::new();
            for r in rows {
                let mine = r.allowed_devices().is_none_or(|ids| ids.contains(&dev.device.id));
                if mine {
                    out.push(json!({"ref": r.link_ref, "client_name": client_name(&state, &r.client_id).await?, "flow": r.flow,
                                    "binding_message": r.binding_message, "expires_at": r.expires_at}));
                }
            }
            Ok(json_response(200, &json!({"auth_requests": out})))
        }
        .await,
    )
}

pub async fn view(state: AppState, link_ref: String, caller: Caller) -> Response {
    let now = now();
    private_reply(
        async {
            let dev = authenticate_device(&state, caller.authorization.as_deref(), now).await?;
            let (r, p) = device_app::request_for(&state, &dev, link_ref).await?;
            // What the request asks is shown only to a device that may answer it.
            device_app::may_decide(&r, &dev)?;
            let statement: Value = URL_SAFE_NO_PAD
                .decode(&p.statement)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            Ok(json_response(
                200,
                &json!({
                    "ref": r.link_ref, "client_name": client_name(&state, &r.client_id).await?, "type": p.kind,
                    "statement": statement, "permission": p.statement, "permission_digest": p.digest,
                    "binding_message": r.binding_message, "scope": r.scope, "loa": p.loa,
                    "expires_at": r.expires_at, "status": RequestStatus::at(&r.status, r.expires_at, now).as_str(),
                }),
            ))
        }
        .await,
    )
}

pub async fn decide(
    state: AppState,
    link_ref: String,
    caller: Caller,
    content_type: Option<String>,
    body: Bytes,
) -> Response {
    let now = now();
    private_reply(
        async {
            let dev = authenticate_device(&state, caller.authorization.as_deref(), now).await?;
            let body = json_body(content_type.as_deref(), &body)?;
            let signed = body.get("signed_decision").and_then(Value::as_str);
            let (decision, p) =
                device_app::decide(&state, &dev, link_ref, signed, caller.origin(), now).await?;
            Ok(json_response(
                200,
                &json!({"status": decision.status().as_str(), "redirect_uri": p.app_callback_uri}),
            ))
        }
        .await,
    )
}
