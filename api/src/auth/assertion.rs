//! RFC 7523 `private_key_jwt`: signed by a key the client registered, `iss` = `sub` =
//! client_id, `aud` naming this server, short-lived, `jti` used once.

use super::{invalid_client, load_client, Authenticated, Method};
use crate::error::ApiResult;
use crate::state::AppState;
use ciba_domain::client::AuthMethod;
use ciba_runtime::crypto::jwk_set::{ACCEPTED_ALGS, FAPI_ALGS};
use ciba_runtime::crypto::jwt::{self, Expect};
use jsonwebtoken::Algorithm;
use serde_json::Value;

/// The longest an assertion may live (`exp - iat`).
pub const MAX_ASSERTION_LIFETIME: i64 = 300;

pub async fn private_key_jwt(
    state: &AppState,
    token: &str,
    endpoint: &str,
    now: i64,
) -> ApiResult<Authenticated> {
    let fail = |d: &'static str| invalid_client(d, false, false);
    let unverified =
        super::peek_issuer(token).ok_or_else(|| fail("client_assertion is not a JWT"))?;
    // Unknown client, no registered keys, unusable keys or a signature none of them verifies:
    // one answer, so the caller learns nothing about which clients exist or have keys.
    const FAILED: &str = "client authentication failed";
    let client = load_client(state, &unverified)
        .await?
        .ok_or_else(|| fail(FAILED))?;
    // Only a client registered for private_key_jwt may authenticate with one (contract §11).
    if client.auth_method != AuthMethod::PrivateKeyJwt {
        return Err(fail(FAILED));
    }
    let algs: &[Algorithm] = if client.is_fapi() {
        &FAPI_ALGS
    } else {
        &ACCEPTED_ALGS
    };
    let claims = super::verify_with_client_keys(state, &client, token, algs, now)
        .await
        .map_err(|_| fail(FAILED))?;
    if claims.get("sub").and_then(Value::as_str) != Some(client.id.as_str()) {
        return Err(fail("sub must equal iss (the client_id)"));
    }
    let token_endpoint = state.config.endpoint("/oidc/v1/token");
    let issuer = state.config.issuer.as_str();
    jwt::check_claims(
        &claims,
        &Expect {
            issuer: Some(client.id.as_str()),
            audiences: &[issuer, endpoint, token_endpoint.as_str()],
            now,
            max_lifetime: Some(MAX_ASSERTION_LIFETIME),
            require_jti: true,
        },
    )
    .map_err(fail)?;
    if !super::use_claims_jti(state, "pkjwt", &client.id, &claims, now).await? {
        return Err(fail("the assertion's jti was already used"));
    }
    Ok(Authenticated {
        scopes: client.scopes.clone(),
        client,
        method: Method::PrivateKeyJwt,
        via_bearer: false,
        bound_to: None,
    })
}
