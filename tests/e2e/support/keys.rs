//! Test-side keys and JWT helpers: a merchant's private_key_jwt key, JWKS verification.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use serde_json::{json, Value};

pub struct EcKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub public_jwk: Value,
    pub sec1: Vec<u8>,
    /// The scalar `d` (base64url), for handing the key to a relying-party library.
    pub d: String,
}

impl EcKey {
    pub fn generate(kid: &str) -> Self {
        let sk = p256::SecretKey::random(&mut rand_core::OsRng);
        let der = sk.to_pkcs8_der().unwrap();
        let point = sk.public_key().to_encoded_point(false);
        let public_jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        });
        Self {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            public_jwk,
            sec1: point.as_bytes().to_vec(),
            d: URL_SAFE_NO_PAD.encode(sk.to_bytes()),
        }
    }

    /// The private JWK (public members, `kid` and `d`).
    pub fn private_jwk(&self) -> Value {
        let mut jwk = self.public_jwk.clone();
        jwk["d"] = json!(self.d);
        jwk
    }

    pub fn jwks(&self) -> Value {
        json!({"keys": [self.public_jwk]})
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.encoding).unwrap()
    }
}

/// A merchant's RSA key (2048 bits), its public JWK naming no `alg` so it may sign PS256 or
/// RS256.
pub struct RsaKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub public_jwk: Value,
}

impl RsaKey {
    pub fn generate() -> Self {
        use ciba_domain::client::SigningAlg;
        let key = ciba_runtime::crypto::keygen::generate(SigningAlg::Ps256, "sig").unwrap();
        let mut public_jwk = key.public_jwk;
        public_jwk.as_object_mut().unwrap().remove("alg");
        Self {
            kid: key.kid,
            encoding: EncodingKey::from_rsa_der(&key.private_der),
            public_jwk,
        }
    }

    pub fn sign(&self, alg: Algorithm, claims: &Value) -> String {
        let mut h = Header::new(alg);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.encoding).unwrap()
    }
}

/// Build a JWT with an arbitrary header, unsigned (for `alg: none`) or HMAC-signed.
pub fn raw_jwt(header: &Value, claims: &Value, hmac_key: Option<&[u8]>) -> String {
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{h}.{c}");
    match hmac_key {
        None => format!("{input}."),
        Some(key) => {
            use hmac::Mac;
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
            mac.update(input.as_bytes());
            format!(
                "{input}.{}",
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            )
        }
    }
}

/// Verify a server-signed JWT against a JWK set exactly as a relying party would.
pub fn verify_with_jwks(token: &str, jwks: &Value, issuer: &str, audience: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let set: JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let jwk = set
        .find(header.kid.as_deref().unwrap())
        .expect("kid in JWKS");
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.leeway = 5;
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap()
        .claims
}
