//! What a merchant backend does with the ID token of an approved request, as a relying party
//! that trusts nothing but the issuer's URL (the last step of `examples/walkthrough.sh`):
//!
//! ```sh
//! cargo run -q -p ciba-api --example merchant_verify -- --issuer URL --client-id ID \
//!     --id-token JWT --statement BASE64URL [--auth-req-id ID] [--permission-id ID]
//! ```
//!
//! 1. discovery (`/.well-known/openid-configuration`): its `issuer` must be the one given;
//! 2. the header: `alg` ES256, PS256 or RS256 (never `none` or HMAC) and one the issuer
//!    lists in `id_token_signing_alg_values_supported`, a `kid`, `typ` JWT if any;
//! 3. the key of that `kid` from `jwks_uri` (a signing key of the header's algorithm), and
//!    the signature, `iss`, `aud` (the client id), `exp`, `iat`, `azp`;
//! 4. `permission_digest` is the SHA-256 (unpadded base64url) of the statement the merchant
//!    registered: of its decoded bytes, the JSON the user was shown (what the server
//!    computes, `ciba_domain::permission`, and what the app signs), so the approval is for
//!    exactly those bytes; and `auth_req_id` / `permission_id` when given.
//!
//! Prints the verified claims as JSON; exits non-zero, saying why, on any failure.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use clap::Parser;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::process::ExitCode;
use std::time::Duration;

type Result<T> = std::result::Result<T, String>;

/// Seconds of clock difference tolerated on `exp` and `iat`.
const LEEWAY: u64 = 30;

#[derive(Parser)]
#[command(about = "Verify an ID token and its permission_digest as a merchant backend does")]
struct Cli {
    /// The issuer URL, exactly as discovery states it.
    #[arg(long, allow_hyphen_values = true)]
    issuer: String,
    /// The merchant's client id: the token's audience.
    #[arg(long, allow_hyphen_values = true)]
    client_id: String,
    /// The ID token from the CIBA grant.
    #[arg(long, allow_hyphen_values = true)]
    id_token: String,
    /// The base64url statement the merchant registered (the permission's `permission`).
    #[arg(long, allow_hyphen_values = true)]
    statement: String,
    /// The auth_req_id the merchant polled for.
    #[arg(long, allow_hyphen_values = true)]
    auth_req_id: Option<String>,
    /// The id of the permission the merchant registered.
    #[arg(long, allow_hyphen_values = true)]
    permission_id: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match verify(&cli).await {
        Ok(claims) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&claims).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("merchant_verify: REFUSED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn verify(cli: &Cli) -> Result<Value> {
    // reqwest is built with rustls and no crypto provider of its own: name one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;

    let issuer = cli.issuer.trim_end_matches('/');
    let discovery_url = format!("{issuer}/.well-known/openid-configuration");
    let discovery = get_json(&http, &discovery_url).await?;
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    if text(&discovery, "issuer").as_deref() != Some(cli.issuer.as_str()) {
        return Err(format!(
            "discovery at {discovery_url} names issuer {}, not {}",
            discovery["issuer"], cli.issuer
        ));
    }
    let jwks_uri = text(&discovery, "jwks_uri").ok_or("discovery has no jwks_uri")?;

    let (alg, kid) = header(&cli.id_token)?;
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

    let jwks = get_json(&http, &jwks_uri).await?;
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
    validation.set_issuer(&[cli.issuer.as_str()]);
    validation.set_audience(&[cli.client_id.as_str()]);
    validation.set_required_spec_claims(&["iss", "aud", "sub", "exp"]);
    validation.leeway = LEEWAY;
    let claims = jsonwebtoken::decode::<Value>(&cli.id_token, &key, &validation)
        .map_err(|e| format!("the ID token does not verify: {}", why(&e, &kid)))?
        .claims;
    eprintln!(
        "merchant_verify: signature ({}, key {kid} of {jwks_uri}), iss, aud and exp verified",
        alg_name(alg)
    );

    check_claims(cli, &claims)?;
    eprintln!("merchant_verify: permission_digest is the SHA-256 of the registered statement");
    Ok(claims)
}

/// The claims jsonwebtoken does not check: `iat`, `azp`, the request and the permission.
fn check_claims(cli: &Cli, claims: &Value) -> Result<()> {
    let text = |k: &str| claims.get(k).and_then(Value::as_str);
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or("the ID token has no iat")?;
    if iat > now() + LEEWAY as i64 {
        return Err(format!("iat {iat} is in the future"));
    }
    if text("azp").is_some_and(|azp| azp != cli.client_id) {
        return Err(format!("azp {} is not the client id", claims["azp"]));
    }
    if let Some(id) = &cli.auth_req_id {
        let claim = text("urn:openid:params:jwt:claim:auth_req_id");
        if claim != Some(id.as_str()) {
            return Err(format!(
                "auth_req_id is {}, not {id}",
                claims["urn:openid:params:jwt:claim:auth_req_id"]
            ));
        }
    }
    if let Some(id) = &cli.permission_id {
        if text("permission_id") != Some(id.as_str()) {
            return Err(format!(
                "permission_id is {}, not {id}",
                claims["permission_id"]
            ));
        }
    }
    let expected = statement_digest(&cli.statement)?;
    match text("permission_digest") {
        Some(digest) if digest == expected => Ok(()),
        Some(digest) => Err(format!(
            "permission_digest {digest} is not the SHA-256 of the registered statement ({expected})"
        )),
        None => Err("the ID token has no permission_digest".into()),
    }
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
fn statement_digest(statement: &str) -> Result<String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(statement.trim())
        .map_err(|e| format!("--statement is not unpadded base64url: {e}"))?;
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

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value> {
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

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
