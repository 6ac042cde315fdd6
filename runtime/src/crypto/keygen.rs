//! Generating signing keys and describing them as JWKs (RFC 7517), with RFC 7638 thumbprints
//! as key ids.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_domain::client::SigningAlg;
use ciba_domain::secret::sha256_b64url;
use jsonwebtoken::{DecodingKey, EncodingKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand_core::OsRng;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

pub const RSA_BITS: usize = 2048;

/// A private key as stored (DER: PKCS#8 for EC, PKCS#1 for RSA) with its public JWK.
pub struct GeneratedKey {
    pub kid: String,
    pub private_der: Vec<u8>,
    pub public_jwk: Value,
}

#[derive(Debug, thiserror::Error)]
#[error("key error: {0}")]
pub struct KeyError(pub String);

pub fn generate(alg: SigningAlg, use_: &str) -> Result<GeneratedKey, KeyError> {
    let (private_der, members) = match alg {
        SigningAlg::Es256 => {
            let sk = p256::SecretKey::random(&mut OsRng);
            let der = sk
                .to_pkcs8_der()
                .map_err(|e| KeyError(e.to_string()))?
                .as_bytes()
                .to_vec();
            (der, ec_members(&sk.public_key()))
        }
        SigningAlg::Rs256 | SigningAlg::Ps256 => {
            let sk = rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS)
                .map_err(|e| KeyError(e.to_string()))?;
            let der = sk
                .to_pkcs1_der()
                .map_err(|e| KeyError(e.to_string()))?
                .as_bytes()
                .to_vec();
            (der, rsa_members(&sk.to_public_key()))
        }
    };
    let kid = thumbprint(&members);
    let mut jwk = members;
    jwk["kid"] = json!(kid);
    jwk["alg"] = json!(alg.as_str());
    jwk["use"] = json!(use_);
    Ok(GeneratedKey {
        kid,
        private_der,
        public_jwk: jwk,
    })
}

/// The required members of an EC P-256 public JWK, in RFC 7638 order.
fn ec_members(pk: &p256::PublicKey) -> Value {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let point = pk.to_encoded_point(false);
    let x = point
        .x()
        .map(|x| URL_SAFE_NO_PAD.encode(x))
        .unwrap_or_default();
    let y = point
        .y()
        .map(|y| URL_SAFE_NO_PAD.encode(y))
        .unwrap_or_default();
    json!({"crv": "P-256", "kty": "EC", "x": x, "y": y})
}

fn rsa_members(pk: &rsa::RsaPublicKey) -> Value {
    json!({
        "e": URL_SAFE_NO_PAD.encode(pk.e().to_bytes_be()),
        "kty": "RSA",
        "n": URL_SAFE_NO_PAD.encode(pk.n().to_bytes_be()),
    })
}

/// RFC 7638 JWK thumbprint over the required members (serde_json keeps keys sorted).
pub fn thumbprint(members: &Value) -> String {
    sha256_b64url(members.to_string().as_bytes())
}

/// The signing and verifying halves of a stored private key.
pub fn load(alg: SigningAlg, private_der: &[u8]) -> Result<(EncodingKey, DecodingKey), KeyError> {
    match alg {
        SigningAlg::Es256 => {
            use p256::elliptic_curve::sec1::ToEncodedPoint;
            let sk = p256::SecretKey::from_pkcs8_der(private_der)
                .map_err(|e| KeyError(e.to_string()))?;
            let point = sk.public_key().to_encoded_point(false);
            Ok((
                EncodingKey::from_ec_der(private_der),
                DecodingKey::from_ec_der(point.as_bytes()),
            ))
        }
        SigningAlg::Rs256 | SigningAlg::Ps256 => {
            let sk = rsa::RsaPrivateKey::from_pkcs1_der(private_der)
                .map_err(|e| KeyError(e.to_string()))?;
            let pk = sk.to_public_key();
            Ok((
                EncodingKey::from_rsa_der(private_der),
                DecodingKey::from_rsa_raw_components(&pk.n().to_bytes_be(), &pk.e().to_bytes_be()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 7638 §3.1 example key and thumbprint.
        let members = json!({
            "e": "AQAB",
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        });
        assert_eq!(
            thumbprint(&members),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn generated_keys_load_and_describe_themselves() {
        for alg in SigningAlg::ALL {
            let k = generate(alg, "sig").unwrap();
            assert_eq!(k.public_jwk["kid"], k.kid.as_str());
            assert_eq!(k.public_jwk["alg"], alg.as_str());
            assert!(
                k.public_jwk.get("d").is_none(),
                "no private members in a public JWK"
            );
            load(alg, &k.private_der).unwrap();
        }
    }
}
