//! Authenticating-app requests: `Authorization: Bearer <device JWT>`, ES256, signed by the
//! key of an active enrolled device (`kid` = `sub` = device id), `aud` = issuer, at most
//! 120 s between `iat` and `exp`, `jti` used once: spent as the JWT is accepted, or, on a
//! route that writes anyway (the decision), with that route's write ([`UnspentJti`]).

use super::jti_key;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use ciba_domain::error::{ErrorCode, OAuthError};
use ciba_domain::status::DeviceStatus;
use ciba_runtime::crypto::jwt::{self, Expect, LEEWAY};
use ciba_store::users::{self, DeviceRow};
use ciba_store::{DbConnection, StoreResult};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use std::sync::Arc;

pub const MAX_DEVICE_JWT_LIFETIME: i64 = 120;

#[derive(Clone)]
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

/// A verified device JWT's jti, not spent yet: the route spends it with its own write, or
/// with [`UnspentJti::spend`] when it answers without writing. Either way it is spent
/// before the route answers, and a JWT used before is refused as [`replayed`].
pub struct UnspentJti {
    /// As kept in `used_jtis` ([`jti_key`]).
    pub key: String,
    pub expires_at: i64,
}

impl UnspentJti {
    /// A new jti for `device_id`, as if a device JWT had come with one: the sandbox's
    /// simulated app, which the server drives without a JWT, takes the decision route too.
    pub fn fresh(device_id: &str, now: i64) -> Self {
        Self {
            key: jti_key(DEVICE_JWT, device_id, &ciba_domain::ids::random_id()),
            expires_at: now + MAX_DEVICE_JWT_LIFETIME + LEEWAY,
        }
    }

    /// Spend it now: `Err(replayed())` if it was used before.
    pub async fn spend(&self, state: &AppState) -> ApiResult<()> {
        let (key, expires_at) = (self.key.clone(), self.expires_at);
        let fresh = state
            .db_write_one(move |c| ciba_store::jtis::record(c, &key, expires_at))
            .await?;
        if fresh {
            Ok(())
        } else {
            Err(replayed())
        }
    }
}

/// The answer to a device JWT presented again.
pub fn replayed() -> ApiError {
    unauthorized("the device JWT was already used")
}

/// Authenticate the app, its device JWT's jti spent here.
pub async fn authenticate_device(
    state: &AppState,
    authorization: Option<&str>,
    now: i64,
) -> ApiResult<AuthenticatedDevice> {
    let (dev, jti, ()) = authenticate_device_reading(state, authorization, now, |_| Ok(())).await?;
    jti.spend(state).await?;
    Ok(dev)
}

/// Authenticate the app, its device JWT's jti left for the route to spend; with what the
/// route reads next (`also`) read in the same trip to the database as the device (the view
/// and the decision read their request): one hand-off to a database thread where there
/// would be two. `also` is read whatever the authentication's outcome, and its answer is
/// dropped when that fails.
pub async fn authenticate_device_reading<T: Send + 'static>(
    state: &AppState,
    authorization: Option<&str>,
    now: i64,
    also: impl FnOnce(&mut DbConnection) -> StoreResult<T> + Send + 'static,
) -> ApiResult<(AuthenticatedDevice, UnspentJti, T)> {
    let (token, kid) = bearer_kid(authorization)?;
    let id = kid.clone();
    let (device, also) = state
        .db(move |c| Ok((users::find_device(c, &id)?, also(c)?)))
        .await?;
    // Unknown, revoked, unusable or not this device's signature: one answer, so the caller
    // learns nothing about which devices exist or were revoked.
    let Some(device) = device.filter(|d| d.status == DeviceStatus::Active.as_str()) else {
        state.devices_read.take(&kid);
        return Err(unauthorized(DEVICE_AUTH_FAILED));
    };
    let key = device_key(&device).ok_or_else(|| unauthorized(DEVICE_AUTH_FAILED))?;
    let dev = AuthenticatedDevice { device, key };
    let jti = verify_device_jwt(state, token, &dev, now)?;
    // Kept only once its holder proved the key.
    state.devices_read.put(&kid, Arc::new(dev.clone()));
    Ok((dev, jti, also))
}

/// [`authenticate_device_reading`] for a route whose one write re-checks, in the same
/// statement, that the device is still active (the decision): when this process read the
/// device lately (`CIBA_CLIENT_CACHE_TTL`) and `known` is what `also` would read, neither is
/// read again. The device's row may be that old, so a device revoked meanwhile passes here
/// and is refused by the write; no other route may take this path.
pub async fn authenticate_device_for_write<T: Send + 'static>(
    state: &AppState,
    authorization: Option<&str>,
    now: i64,
    known: Option<T>,
    also: impl FnOnce(&mut DbConnection) -> StoreResult<T> + Send + 'static,
) -> ApiResult<(AuthenticatedDevice, UnspentJti, T)> {
    let (token, kid) = bearer_kid(authorization)?;
    match (known, state.devices_read.get(&kid)) {
        (Some(known), Some(dev)) => {
            let jti = verify_device_jwt(state, token, &dev, now)?;
            Ok((AuthenticatedDevice::clone(&dev), jti, known))
        }
        _ => authenticate_device_reading(state, authorization, now, also).await,
    }
}

/// The device JWT in `authorization` and its `kid` (the device id), checked for form only.
fn bearer_kid(authorization: Option<&str>) -> ApiResult<(&str, String)> {
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
    Ok((token, kid))
}

/// The device JWT `token` checked against the active device `dev`: its signature, `sub`,
/// `aud`, lifetime and `jti` (returned unspent).
fn verify_device_jwt(
    state: &AppState,
    token: &str,
    dev: &AuthenticatedDevice,
    now: i64,
) -> ApiResult<UnspentJti> {
    let device = &dev.device;
    let (_, claims) =
        jwt::verify_signature(token, &dev.key, Algorithm::ES256).map_err(|e| match e {
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
    Ok(UnspentJti {
        key: jti_key(DEVICE_JWT, &device.id, jti),
        expires_at: exp + LEEWAY,
    })
}

/// The answer to a device that was revoked after it was authenticated (its write refused).
pub fn no_longer_active() -> ApiError {
    unauthorized(DEVICE_AUTH_FAILED)
}

/// The scope of device JWTs' jtis ([`jti_key`]).
const DEVICE_JWT: &str = "device-jwt";
