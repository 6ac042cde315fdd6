//! The merchant's check of an ID token, as a relying party that trusts nothing but the
//! issuer's URL (the reference document's step 11). Shared by the `merchant` and
//! `merchant_verify` examples and by the e2e suite (`tests/e2e/s12_merchant.rs`):
//!
//! 1. discovery (`/.well-known/openid-configuration`): its `issuer` must be the one given;
//! 2. the header: `alg` ES256, PS256 or RS256 (never `none` or HMAC) and one the issuer
//!    lists in `id_token_signing_alg_values_supported`, a `kid`, `typ` JWT if any;
//! 3. the key of that `kid` from `jwks_uri` (a signing key of the header's algorithm), and
//!    the signature; `iss` the issuer, `aud` the client id, `exp` not passed, `iat` not in
//!    the future (30 s leeway both), `azp` the client id if present;
//! 4. what the merchant expects besides, when it knows it: the `acr` of the level it asked
//!    for, its `auth_req_id` and `permission_id`, and `permission_digest` the SHA-256
//!    (unpadded base64url) of the statement it registered (of its decoded bytes, the JSON the
//!    user was shown), so the approval is for exactly those bytes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub type Result<T> = std::result::Result<T, String>;

/// Seconds of clock difference tolerated on `exp` and `iat`.
pub const LEEWAY: u64 = 30;

/// What the token must say, beyond a valid signature by the issuer.
#[derive(Default, Clone, Copy)]
pub struct Expected<'a> {
    /// The issuer URL, exactly as discovery states it.
    pub issuer: &'a str,
    /// The merchant's client id: the token's audience.
    pub client_id: &'a str,
    /// The `acr` of the level the merchant asked for.
    pub acr: Option<&'a str>,
    pub auth_req_id: Option<&'a str>,
    pub permission_id: Option<&'a str>,
    /// The base64url statement the merchant registered.
    pub statement: Option<&'a str>,
}

/// Fetch discovery and the JWKS from the issuer and check `id_token` against them.
pub async fn id_token(
    http: &reqwest::Client,
    want: &Expected<'_>,
    id_token: &str,
) -> Result<Value> {
    let discovery_url = format!(
        "{}/.well-known/openid-configuration",
        want.issuer.trim_end_matches('/')
    );
    let discovery = get_json(http, &discovery_url).await?;
    let jwks_uri = text(&discovery, "jwks_uri").ok_or("discovery has no jwks_uri")?;
    let jwks = get_json(http, &jwks_uri).await?;
    check(&discovery, &jwks, want, id_token, now())
}

/// The check itself, on documents already fetched, at `now` (UNIX seconds).
pub fn check(
    discovery: &Value,
    jwks: &Value,
    want: &Expected<'_>,
    id_token: &str,
    now: i64,
) -> Result<Value> {
    if text(discovery, "issuer").as_deref() != Some(want.issuer) {
        return Err(format!(
            "discovery names issuer {}, not {}",
            discovery["issuer"], want.issuer
        ));
    }
    let jwks_uri = text(discovery, "jwks_uri").unwrap_or_default();
    let (alg, kid) = header(id_token)?;
    let listed = discovery
        .get("id_token_signing_alg_values_supported")
        .and_then(Value::as_array)
        .is_some_and(|algs| algs.iter().any(|a| a.as_str() == Some(alg_name(alg))));
    if !listed {
        return Err(format!(
            "alg {} is not in the issuer's id_token_signing_alg_values_supported",
            alg_name(alg)
        ));
    }
    let raw = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{jwks_uri} is not a JWK set"))?
        .iter()
        .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid.as_str()))
        .ok_or_else(|| format!("kid {kid} is not in {jwks_uri}"))?;
    let kty_ok = match alg {
        Algorithm::ES256 => text(raw, "kty").as_deref() == Some("EC"),
        _ => text(raw, "kty").as_deref() == Some("RSA"),
    };
    if !kty_ok
        || text(raw, "use").is_some_and(|u| u != "sig")
        || text(raw, "alg").is_some_and(|a| a != alg_name(alg))
    {
        return Err(format!(
            "key {kid} is not a signing key for {}",
            alg_name(alg)
        ));
    }
    let jwk: Jwk = serde_json::from_value(raw.clone()).map_err(|e| format!("key {kid}: {e}"))?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("key {kid}: {e}"))?;

    let mut validation = Validation::new(alg);
    validation.set_issuer(&[want.issuer]);
    validation.set_audience(&[want.client_id]);
    validation.set_required_spec_claims(&["iss", "aud", "sub", "exp"]);
    validation.leeway = LEEWAY;
    let claims = jsonwebtoken::decode::<Value>(id_token, &key, &validation)
        .map_err(|e| format!("the ID token does not verify: {}", why(&e, &kid)))?
        .claims;
    // jsonwebtoken checks exp against the wall clock; check it against `now` too.
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if exp + (LEEWAY as i64) < now {
        return Err("the ID token does not verify: exp has passed".into());
    }
    expected_claims(want, &claims, now)?;
    Ok(claims)
}

/// The claims jsonwebtoken does not check: `iat`, `azp`, and what the merchant expects.
fn expected_claims(want: &Expected<'_>, claims: &Value, now: i64) -> Result<()> {
    let text = |k: &str| claims.get(k).and_then(Value::as_str);
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or("the ID token has no iat")?;
    if iat > now + LEEWAY as i64 {
        return Err(format!("iat {iat} is in the future"));
    }
    if text("azp").is_some_and(|azp| azp != want.client_id) {
        return Err(format!("azp {} is not the client id", claims["azp"]));
    }
    let equal = |claim: &str, expected: Option<&str>| match expected {
        Some(e) if text(claim) != Some(e) => Err(format!("{claim} is {}, not {e}", claims[claim])),
        _ => Ok(()),
    };
    equal("acr", want.acr)?;
    equal("urn:openid:params:jwt:claim:auth_req_id", want.auth_req_id)?;
    equal("permission_id", want.permission_id)?;
    if let Some(statement) = want.statement {
        let expected = statement_digest(statement)?;
        match text("permission_digest") {
            Some(digest) if digest == expected => {}
            Some(digest) => {
                return Err(format!(
                    "permission_digest {digest} is not the SHA-256 of the registered statement ({expected})"
                ))
            }
            None => return Err("the ID token has no permission_digest".into()),
        }
    }
    Ok(())
}

/// What a failed verification means, in the token's terms.
fn why(e: &jsonwebtoken::errors::Error, kid: &str) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => format!("the signature is not by key {kid}"),
        ErrorKind::ExpiredSignature => "exp has passed".into(),
        ErrorKind::InvalidIssuer => "iss is not the issuer".into(),
        ErrorKind::InvalidAudience => "aud is not the client id".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("it has no {claim}"),
        _ => e.to_string(),
    }
}

/// Unpadded base64url SHA-256 of the statement's decoded bytes.
pub fn statement_digest(statement: &str) -> Result<String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(statement.trim())
        .map_err(|e| format!("the statement is not unpadded base64url: {e}"))?;
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(bytes)))
}

/// The header's algorithm (asymmetric only) and key id, read before any key is chosen.
fn header(token: &str) -> Result<(Algorithm, String)> {
    let bad = |what: &str| format!("the ID token is not a JWS: {what}");
    let first = token.split('.').next().unwrap_or_default();
    if token.split('.').count() != 3 {
        return Err(bad("it does not have three parts"));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(first)
        .map_err(|_| bad("its header is not base64url"))?;
    let header: Value =
        serde_json::from_slice(&bytes).map_err(|_| bad("its header is not JSON"))?;
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some("ES256") => Algorithm::ES256,
        Some("PS256") => Algorithm::PS256,
        Some("RS256") => Algorithm::RS256,
        Some(other) => {
            return Err(format!(
                "alg {other} is refused (only ES256, PS256, RS256: never none or HMAC)"
            ))
        }
        None => return Err(bad("its header has no alg")),
    };
    if let Some(typ) = header.get("typ") {
        if typ.as_str() != Some("JWT") {
            return Err(format!("typ {typ} is not an ID token's (JWT)"));
        }
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("its header has no kid"))?;
    Ok((alg, kid.to_owned()))
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES256 => "ES256",
        Algorithm::PS256 => "PS256",
        _ => "RS256",
    }
}

fn text(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

/// GET `url` as JSON; an error names the URL and the server's answer.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value> {
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: no answer: {e}"))?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .map_err(|e| format!("GET {url}: HTTP {status}, unreadable body: {e}"))?;
    if !status.is_success() {
        return Err(format!("GET {url}: HTTP {status}: {}", body.trim()));
    }
    serde_json::from_str(&body).map_err(|e| format!("GET {url}: not JSON ({e})"))
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
