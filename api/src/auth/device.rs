//! Authenticating-app requests: `Authorization: Bearer <device JWT>`, ES256, signed by the
//! key of an active enrolled device (`kid` = `sub` = device id), `aud` = issuer, at most
//! 120 s between `iat` and `exp`, `jti` used once.

use super::use_jti;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use ciba_domain::error::{ErrorCode, OAuthError};
use ciba_domain::status::DeviceStatus;
use ciba_runtime::crypto::jwt::{self, Expect, LEEWAY};
use ciba_store::users::{self, DeviceRow};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

pub const MAX_DEVICE_JWT_LIFETIME: i64 = 120;

pub struct AuthenticatedDevice {
    pub device: DeviceRow,
    pub key: DecodingKey,
}

const DEVICE_AUTH_FAILED: &str = "device authentication failed";

fn unauthorized(text: &'static str) -> ApiError {
    ApiError::new(OAuthError::new(ErrorCode::InvalidToken, text))
        .with_challenge("Bearer realm=\"ciba-app\", error=\"invalid_token\"")
}

/// The verifying key of a stored device JWK.
pub fn device_key(device: &DeviceRow) -> Option<DecodingKey> {
    let jwk: Jwk = serde_json::from_str(&device.public_jwk).ok()?;
    DecodingKey::from_jwk(&jwk).ok()
}

pub async fn authenticate_device(
    state: &AppState,
    authorization: Option<&str>,
    now: i64,
) -> ApiResult<AuthenticatedDevice> {
    let token = authorization
        .and_then(|h| {
            h.split_once(' ')
                .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("a device JWT is required"))?;
    let header =
        jsonwebtoken::decode_header(token).map_err(|_| unauthorized("malformed device JWT"))?;
    if header.alg != Algorithm::ES256 {
        return Err(unauthorized("device JWTs must be ES256"));
    }
    let kid = header
        .kid
        .ok_or_else(|| unauthorized("device JWT has no kid"))?;
    if !ciba_domain::ids::is_well_formed_id(&kid) {
        return Err(unauthorized(DEVICE_AUTH_FAILED));
    }
    let id = kid.clone();
    let device = state
        .db(move |c| users::find_device(c, &id))
        .await?
        .ok_or_else(|| unauthorized(DEVICE_AUTH_FAILED))?;
    // Unknown, revoked, unusable or not this device's signature: one answer, so the caller
    // learns nothing about which devices exist or were revoked.
    if device.status != DeviceStatus::Active.as_str() {
        return Err(unauthorized(DEVICE_AUTH_FAILED));
    }
    let key = device_key(&device).ok_or_else(|| unauthorized(DEVICE_AUTH_FAILED))?;
    let (_, claims) =
        jwt::verify_signature(token, &key, Algorithm::ES256).map_err(|e| match e {
            jwt::REPEATED_CLAIM => ApiError::from(OAuthError::invalid_request(
                "the device JWT repeats a claim",
            )),
            _ => unauthorized(DEVICE_AUTH_FAILED),
        })?;
    if claims.get("sub").and_then(Value::as_str) != Some(device.id.as_str())
        || claims.get("iat").is_none()
    {
        return Err(unauthorized(
            "sub must be the device id and iat is required",
        ));
    }
    let issuer = state.config.issuer.as_str();
    jwt::check_claims(
        &claims,
        &Expect {
            issuer: None,
            audiences: &[issuer],
            now,
            max_lifetime: Some(MAX_DEVICE_JWT_LIFETIME),
            require_jti: true,
        },
    )
    .map_err(unauthorized)?;
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(now);
    if !use_jti(state, "device-jwt", &device.id, jti, exp + LEEWAY).await? {
        return Err(unauthorized("the device JWT was already used"));
    }
    Ok(AuthenticatedDevice { device, key })
}
