//! Verifying a JWT with someone else's keys: a client's registered JWK set
//! (`private_key_jwt`) or a trusted external issuer's. Asymmetric algorithms only.

use super::jwt;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// Algorithms we accept for client assertions and external tokens: asymmetric only.
pub const ACCEPTED_ALGS: [Algorithm; 3] = [Algorithm::ES256, Algorithm::RS256, Algorithm::PS256];

/// Algorithms of the FAPI-CIBA profile (client assertions and request objects), and of
/// every signed authentication request.
pub const FAPI_ALGS: [Algorithm; 2] = [Algorithm::ES256, Algorithm::PS256];

/// The smallest RSA modulus we verify with (FAPI 1.0 Advanced §8.6, NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;

/// The size in bits of an RSA JWK's modulus (`None` when `n` is not base64url).
pub fn rsa_bits(n: &str) -> Option<usize> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(n.trim_end_matches('='))
        .ok()?;
    let first = bytes.iter().position(|b| *b != 0)?;
    Some((bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize)
}

/// Is `jwk` a key we accept at all: EC P-256, or RSA of at least [`MIN_RSA_BITS`]?
pub fn jwk_acceptable(jwk: &Jwk) -> Result<(), &'static str> {
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec)
            if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
        {
            Ok(())
        }
        AlgorithmParameters::RSA(rsa) if rsa_bits(&rsa.n).is_some_and(|b| b >= MIN_RSA_BITS) => {
            Ok(())
        }
        AlgorithmParameters::RSA(_) => Err("RSA keys must have at least 2048 bits"),
        _ => Err("only EC P-256 and RSA keys are supported"),
    }
}

/// Does `jwk` fit `alg` (right key type, and the JWK's own `alg` if it names one)?
pub fn jwk_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    let kty_ok = jwk_acceptable(jwk).is_ok()
        && matches!(
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
    verify_with_set_using(token, set, &ACCEPTED_ALGS)
}

/// [`verify_with_set`], accepting only the algorithms `algs` (a subset of [`ACCEPTED_ALGS`]).
pub fn verify_with_set_using(
    token: &str,
    set: &JwkSet,
    algs: &[Algorithm],
) -> Result<Value, &'static str> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed JWT header")?;
    if !ACCEPTED_ALGS.contains(&header.alg) || !algs.contains(&header.alg) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn modulus(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn counts_the_bits_of_a_modulus() {
        let mut n = vec![0x80u8];
        n.extend([0u8; 255]);
        assert_eq!(rsa_bits(&modulus(&n)), Some(2048));
        // A leading zero byte (as some encoders write) does not count; a small top byte does.
        let mut short = vec![0u8, 0x7f];
        short.extend([0xffu8; 255]);
        assert_eq!(rsa_bits(&modulus(&short)), Some(2047));
        assert_eq!(rsa_bits("!"), None);
    }

    #[test]
    fn small_rsa_keys_are_refused() {
        let key = |n: &[u8]| -> Jwk {
            serde_json::from_value(serde_json::json!({"kty": "RSA", "n": modulus(n), "e": "AQAB"}))
                .unwrap()
        };
        let mut n1024 = vec![0xc0u8];
        n1024.extend([1u8; 127]);
        assert!(jwk_acceptable(&key(&n1024)).is_err());
        assert!(!jwk_fits(&key(&n1024), Algorithm::PS256));
        let mut n2048 = vec![0xc0u8];
        n2048.extend([1u8; 255]);
        assert!(jwk_acceptable(&key(&n2048)).is_ok());
        assert!(jwk_fits(&key(&n2048), Algorithm::PS256));
    }
}
