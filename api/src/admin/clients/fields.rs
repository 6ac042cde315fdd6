//! What `clients create` and `clients update` check of each field.

use ciba_domain::scope::{all_supported, ScopeSet};
use jsonwebtoken::jwk::JwkSet;
use serde_json::Value;

/// A client's display name: the app shows it beside what the user approves.
pub fn name(raw: &str) -> Result<String, String> {
    let name = raw.trim().to_owned();
    if name.is_empty() || name.len() > 200 {
        return Err("--name must be 1 to 200 characters".into());
    }
    if let Some(hidden) = ciba_domain::text::first_hidden(&name, &[]) {
        return Err(format!("--name must not contain {hidden}"));
    }
    Ok(name)
}

/// Known scopes only.
pub fn scopes(raw: &str) -> Result<ScopeSet, String> {
    let scopes = ScopeSet::parse(raw).map_err(|e| format!("--scope: {}", e.description))?;
    if let Some(bad) = scopes.iter().find(|s| !all_supported().contains(s)) {
        return Err(format!("--scope: unknown scope {bad}"));
    }
    Ok(scopes)
}

/// Exact https callback URIs, as the JSON list stored.
pub fn callback_uris(uris: &[String]) -> Result<String, String> {
    for uri in uris {
        validate_https_url(uri).map_err(|e| format!("--callback-uri {uri}: {e}"))?;
    }
    serde_json::to_string(uris).map_err(|e| e.to_string())
}

/// Where a client publishes its JWK set: a URL the server may fetch (https; the same
/// address rules as ping notifications, so it cannot point the server at internal hosts).
pub fn jwks_uri(
    url: &str,
    policy: &ciba_runtime::ping_target::TargetPolicy,
) -> Result<String, String> {
    policy
        .check_url(url)
        .map_err(|e| format!("--jwks-uri {url}: {e}"))?;
    Ok(url.to_owned())
}

/// The JWK set in `path`, checked.
pub fn jwks_file(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--jwks-file: {e}"))?;
    validate_client_jwks(&text).map_err(|e| format!("--jwks-file: {e}"))?;
    Ok(text)
}

/// An absolute https URL without fragment (callback URIs; notification endpoints follow
/// [`ciba_runtime::ping_target`]).
pub fn validate_https_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| e.to_string())?;
    if url.fragment().is_some() {
        return Err("must not have a fragment".into());
    }
    match url.scheme() {
        "https" if url.host_str().is_some() => Ok(()),
        _ => Err("must be an absolute https URL".into()),
    }
}

/// A client's JWK set: public EC P-256 or RSA keys only.
pub fn validate_client_jwks(text: &str) -> Result<(), String> {
    let raw: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let keys = raw
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("expected a JWK set {\"keys\": [...]}")?;
    if keys.is_empty() {
        return Err("the key set is empty".into());
    }
    if keys
        .iter()
        .any(|k| k.get("d").is_some() || k.get("p").is_some())
    {
        return Err("contains private key material; register public keys only".into());
    }
    let set: JwkSet =
        serde_json::from_value(raw.clone()).map_err(|e| format!("not a valid JWK set: {e}"))?;
    for k in &set.keys {
        ciba_runtime::crypto::jwk_set::jwk_acceptable(k)?;
    }
    Ok(())
}
