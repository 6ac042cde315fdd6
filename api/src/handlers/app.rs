//! The authenticating app's API (contract §7): enrollment, pending requests, one request,
//! and the signed decision.

use crate::auth::device::{
    authenticate_device_for_write, authenticate_device_reading, AuthenticatedDevice,
};
use crate::error::{private_reply, ApiError, ApiResult};
use crate::http::caller::Caller;
use crate::http::form::json_body;
use crate::http::reply::json_response;
use crate::service::device_app;
use crate::state::{now, AppState};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_domain::assurance::KeyProtection;
use ciba_domain::device::DeviceInfo;
use ciba_domain::error::OAuthError;
use ciba_domain::status::RequestStatus;
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
            let new = device_app::NewDevice {
                info,
                public_jwk,
                name,
                key_protection,
            };
            let device_id = device_app::enroll(&state, code, new, caller.origin(), now).await?;
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

pub async fn list(
    state: AppState,
    query: HashMap<String, String>,
    _: Caller,
    dev: AuthenticatedDevice,
) -> Response {
    let now = now();
    private_reply(
        async {
            if query.get("status").is_some_and(|s| s != RequestStatus::Pending.as_str()) {
                return Err(OAuthError::invalid_request("status: only pending is supported").into());
            }
            let mut out = Vec::new();
            for r in device_app::pending(&state, &dev, now).await? {
                out.push(json!({"ref": r.link_ref, "client_name": client_name(&state, &r.client_id).await?, "flow": r.flow,
                                "binding_message": r.binding_message, "expires_at": r.expires_at}));
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
            // The device and the request it views, read in one trip to the database.
            let auth = caller.authorization.as_deref();
            let (dev, jti, found) = authenticate_device_reading(&state, auth, now, move |c| {
                device_app::read_by_ref(c, &link_ref)
            })
            .await?;
            jti.spend(&state).await?;
            let (r, p) = device_app::visible(found, &dev)?;
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
    content_type: Option<String>,
    body: Bytes,
    caller: Caller,
) -> Response {
    let now = now();
    private_reply(
        async {
            // The device and the request it decides: as this process knows them, or else
            // read in one trip to the database. The decision's write checks what may have
            // changed since.
            let auth = caller.authorization.as_deref();
            let (at, known) = (
                link_ref.clone(),
                device_app::context_for(&state, &link_ref).map(Some),
            );
            let (dev, jti, found) =
                authenticate_device_for_write(&state, auth, now, known, move |c| {
                    device_app::read_by_ref(c, &at)
                })
                .await?;
            let checked = (|| {
                let body = json_body(content_type.as_deref(), &body)?;
                let signed = body.get("signed_decision").and_then(Value::as_str);
                let found = device_app::visible(found, &dev)?;
                device_app::check_decision(&dev, &link_ref, found, signed, now)
            })();
            let (decision, p) =
                device_app::record_decision(&state, &dev, jti, checked, caller.origin(), now)
                    .await?;
            Ok(json_response(
                200,
                &json!({"status": decision.status().as_str(), "redirect_uri": p.app_callback_uri}),
            ))
        }
        .await,
    )
}
