//! Discovery (OpenID Connect Discovery 1.0 / RFC 8414) and the public key sets.

use crate::crypto::keyring::Purpose;
use crate::http::reply::{cache_public, json_response};
use crate::state::{now, AppState};
use ciba_domain::client::SigningAlg;
use ciba_domain::permission::ACR_VALUES;
use ciba_domain::scope;
use serde_json::json;
use warp::reply::Response;

pub const CLAIMS_SUPPORTED: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "azp",
    "exp",
    "iat",
    "auth_time",
    "acr",
    "amr",
    "name",
    "given_name",
    "family_name",
    "birthdate",
    "updated_at",
    "sub_nnin",
    "sub_bankid",
    "permission_id",
    "permission_digest",
    "urn:openid:params:jwt:claim:auth_req_id",
];

pub fn metadata(state: AppState) -> Response {
    let c = &state.config;
    let algs: Vec<&str> = SigningAlg::ALL.iter().map(|a| a.as_str()).collect();
    let body = json!({
        "issuer": c.issuer,
        "token_endpoint": c.endpoint("/oidc/v1/token"),
        "app_authentication_endpoint": c.endpoint("/oidc/v1/app-authorize"),
        "backchannel_authentication_endpoint": c.endpoint("/oidc/v1/bc-authorize"),
        "permissions_endpoint": c.endpoint("/permissions/v1/"),
        "jwks_uri": c.endpoint("/oidc/v1/jwks"),
        "jwks_uri_grants": c.endpoint("/permissions/v1/jwks"),
        "grant_types_supported": ["client_credentials", "urn:openid:params:grant-type:ciba"],
        "backchannel_token_delivery_modes_supported": ["poll", "ping"],
        "backchannel_user_code_parameter_supported": false,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256", "PS256"],
        "id_token_signing_alg_values_supported": algs,
        "scopes_supported": scope::all_supported(),
        "claims_supported": CLAIMS_SUPPORTED,
        "subject_types_supported": ["public"],
        // No front-channel authorization endpoint: authentication is decoupled (CIBA, App2App).
        "response_types_supported": ["none"],
        "acr_values_supported": ACR_VALUES,
    });
    cache_public(json_response(200, &body), 300)
}

pub fn jwks(state: AppState, purpose: Purpose) -> Response {
    cache_public(json_response(200, &state.keys.jwks(purpose, now())), 60)
}
