//! Discovery (OpenID Connect Discovery 1.0 / RFC 8414) and the public key sets.

use crate::http::reply::{cache_public, json_response, text_response};
use crate::state::{now, AppState};
use ciba_domain::client::{AuthMethod, SigningAlg};
use ciba_domain::permission::ACR_VALUES;
use ciba_domain::scope;
use ciba_runtime::crypto::keyring::Purpose;
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
    let methods: Vec<&str> = AuthMethod::ALL.iter().map(|m| m.as_str()).collect();
    // Client certificates reach the server when it terminates TLS or a proxy passes them.
    let certificates = c.server.tls.is_some() || c.server.client_cert_header.is_some();
    let mut body = json!({
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
        "token_endpoint_auth_methods_supported": methods,
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "PS256", "RS256"],
        "backchannel_authentication_request_signing_alg_values_supported": ["ES256", "PS256"],
        "tls_client_certificate_bound_access_tokens": certificates,
        "id_token_signing_alg_values_supported": algs,
        "scopes_supported": scope::all_supported(),
        "claims_supported": CLAIMS_SUPPORTED,
        "subject_types_supported": ["public"],
        // No front-channel authorization endpoint: authentication is decoupled (CIBA, App2App).
        "response_types_supported": ["none"],
        "acr_values_supported": ACR_VALUES,
    });
    if c.server.tls.is_some() {
        // TLS is terminated here, on the same listener: the aliases are the endpoints.
        body["mtls_endpoint_aliases"] = json!({
            "token_endpoint": c.endpoint("/oidc/v1/token"),
            "backchannel_authentication_endpoint": c.endpoint("/oidc/v1/bc-authorize"),
        });
    }
    cache_public(json_response(200, &body), 300)
}

pub fn jwks(state: AppState, purpose: Purpose) -> Response {
    cache_public(json_response(200, &state.keys.jwks(purpose, now())), 60)
}

/// The OpenAPI document at the repository root, compiled into the binary.
pub const OPENAPI_YAML: &str = include_str!("../../../openapi.yaml");

pub fn openapi() -> Response {
    cache_public(
        text_response(200, "application/yaml", OPENAPI_YAML.to_owned()),
        300,
    )
}

#[cfg(test)]
mod tests {
    use super::OPENAPI_YAML;
    use std::collections::BTreeSet;

    /// `METHOD /path` for every operation in openapi.yaml.
    fn documented() -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut path = None;
        for line in OPENAPI_YAML.lines() {
            if line.starts_with("components:") {
                break;
            }
            if let Some(p) = line.strip_prefix("  /").and_then(|l| l.strip_suffix(':')) {
                path = Some(format!("/{p}"));
            } else if let (Some(p), Some(m)) = (&path, line.strip_prefix("    ")) {
                if let Some(method) = m.strip_suffix(':').filter(|m| ["get", "post"].contains(m)) {
                    out.insert(format!("{} {p}", method.to_uppercase()));
                }
            }
        }
        out
    }

    /// `METHOD /path` for every route the server instruments (their templates).
    fn routed() -> BTreeSet<String> {
        let source = include_str!("../http/routes.rs");
        source
            .split('"')
            .filter(|s| s.starts_with("GET /") || s.starts_with("POST /"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_route_is_documented_and_every_documented_path_is_routed() {
        let (doc, code) = (documented(), routed());
        assert!(code.len() >= 18, "{code:?}");
        let undocumented: Vec<_> = code.difference(&doc).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from openapi.yaml: {undocumented:?}"
        );
        // Served by filters outside the instrumented table (an alias and the metrics route).
        let extra = [
            "GET /.well-known/oauth-authorization-server",
            "GET /metrics",
        ];
        let unrouted: Vec<_> = doc
            .difference(&code)
            .filter(|r| !extra.contains(&r.as_str()))
            .collect();
        assert!(
            unrouted.is_empty(),
            "documented but not routed: {unrouted:?}"
        );
    }
}
