//! Verifying a JWT with someone else's keys: a client's registered JWK set
//! (`private_key_jwt`) or a trusted external issuer's. Asymmetric algorithms only.

use super::jwt;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// Algorithms we accept for client assertions and external tokens: asymmetric only.
pub const ACCEPTED_ALGS: [Algorithm; 3] = [Algorithm::ES256, Algorithm::RS256, Algorithm::PS256];

/// Does `jwk` fit `alg` (right key type, and the JWK's own `alg` if it names one)?
pub fn jwk_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    let kty_ok = matches!(
        (&jwk.algorithm, alg),
        (AlgorithmParameters::EllipticCurve(_), Algorithm::ES256)
            | (
                AlgorithmParameters::RSA(_),
                Algorithm::RS256 | Algorithm::PS256
            )
    );
    let alg_ok = jwk
        .common
        .key_algorithm
        .is_none_or(|ka| ka.to_string() == format!("{alg:?}"));
    kty_ok && alg_ok
}

/// Verify `token` against the keys of `set` that fit its header (by `kid` when present).
pub fn verify_with_set(token: &str, set: &JwkSet) -> Result<Value, &'static str> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed JWT header")?;
    if !ACCEPTED_ALGS.contains(&header.alg) {
        return Err("algorithm not accepted");
    }
    let candidates = set
        .keys
        .iter()
        .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
        .filter(|k| jwk_fits(k, header.alg));
    for jwk in candidates {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        if let Ok((_, claims)) = jwt::verify_signature(token, &key, header.alg) {
            return Ok(claims);
        }
    }
    Err("no registered key verifies the signature")
}
