//! The cryptography behind jsonwebtoken: ES256 through `ring`, whose P-256 is constant-time
//! assembly, and every other algorithm through jsonwebtoken's own RustCrypto provider.
//! RustCrypto's P-256 field arithmetic was over 60% of the API's CPU in the full-flow
//! benchmark (five ES256 verifications and three signatures per flow). Only the primitive
//! changes: jsonwebtoken still checks the header's algorithm against the validation's, and
//! the key's family here against the algorithm, before any signature is looked at.

use jsonwebtoken::crypto::{rust_crypto, CryptoProvider, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{Error as SignatureError, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Make this the process's provider (before the first JWT is signed or verified; later
/// calls, and a provider installed first by someone else, leave things as they are).
pub fn install() {
    static PROVIDER: OnceLock<CryptoProvider> = OnceLock::new();
    let provider = PROVIDER.get_or_init(|| CryptoProvider {
        signer_factory,
        verifier_factory,
        key_utils: rust_crypto::DEFAULT_PROVIDER.key_utils.clone(),
    });
    let _ = provider.install_default();
}

fn signer_factory(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    if *alg != Algorithm::ES256 {
        return (rust_crypto::DEFAULT_PROVIDER.signer_factory)(alg, key);
    }
    if key.family() != AlgorithmFamily::Ec {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    Ok(Box::new(Es256Signer(parsed_pair(key.as_bytes())?)))
}

/// Parsed signing keys by their PKCS#8 bytes. jsonwebtoken asks for a signer at every
/// signature, and parsing a key checks its public half (a scalar multiplication, about as
/// dear as the signature itself), so each key is parsed once. The process signs with a
/// handful of keys (two per algorithm around a rotation); the cache starts afresh if it ever
/// holds more than [`PARSED_KEYS`], so keys rotated out are not kept for long.
const PARSED_KEYS: usize = 16;

fn parsed_pair(pkcs8: &[u8]) -> Result<Arc<EcdsaKeyPair>> {
    static PARSED: OnceLock<Mutex<HashMap<Vec<u8>, Arc<EcdsaKeyPair>>>> = OnceLock::new();
    let cache = PARSED.get_or_init(Mutex::default);
    let lock = || cache.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(pair) = lock().get(pkcs8) {
        return Ok(pair.clone());
    }
    let pair = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8,
        &SystemRandom::new(),
    )
    .map_err(|_| ErrorKind::InvalidEcdsaKey)?;
    let pair = Arc::new(pair);
    let mut parsed = lock();
    if parsed.len() >= PARSED_KEYS {
        parsed.clear();
    }
    parsed.insert(pkcs8.to_vec(), pair.clone());
    Ok(pair)
}

fn verifier_factory(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if *alg != Algorithm::ES256 {
        return (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(alg, key);
    }
    if key.family() != AlgorithmFamily::Ec {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let point = key.try_get_as_bytes()?;
    // ring takes uncompressed points only (what keys from JWKs and our own keys are)
    if point.len() != 65 || point[0] != 0x04 {
        return (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(alg, key);
    }
    Ok(Box::new(Es256Verifier(point.to_vec())))
}

struct Es256Signer(Arc<EcdsaKeyPair>);

impl Signer<Vec<u8>> for Es256Signer {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, SignatureError> {
        let sig = self
            .0
            .sign(&SystemRandom::new(), msg)
            .map_err(|_| SignatureError::new())?;
        Ok(sig.as_ref().to_vec())
    }
}

impl JwtSigner for Es256Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

/// An uncompressed P-256 point; ring checks it is on the curve as it verifies.
struct Es256Verifier(Vec<u8>);

impl Verifier<Vec<u8>> for Es256Verifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), SignatureError> {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.0)
            .verify(msg, signature)
            .map_err(|_| SignatureError::new())
    }
}

impl JwtVerifier for Es256Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keygen;
    use ciba_domain::client::SigningAlg;

    fn keys(alg: SigningAlg) -> (EncodingKey, DecodingKey) {
        let der = keygen::generate(alg, "sig").expect("key").private_der;
        keygen::load(alg, &der).expect("load")
    }

    fn sign(
        factory: fn(&Algorithm, &EncodingKey) -> Result<Box<dyn JwtSigner>>,
        alg: Algorithm,
        key: &EncodingKey,
        msg: &[u8],
    ) -> Vec<u8> {
        factory(&alg, key)
            .expect("signer")
            .try_sign(msg)
            .expect("sign")
    }

    fn verifies(
        factory: fn(&Algorithm, &DecodingKey) -> Result<Box<dyn JwtVerifier>>,
        alg: Algorithm,
        key: &DecodingKey,
        msg: &[u8],
        sig: &[u8],
    ) -> bool {
        factory(&alg, key)
            .expect("verifier")
            .verify(msg, &sig.to_vec())
            .is_ok()
    }

    #[test]
    fn a_signing_key_is_parsed_once_and_a_bad_one_is_refused() {
        let (a, _) = keys(SigningAlg::Es256);
        let (b, _) = keys(SigningAlg::Es256);
        let first = parsed_pair(a.as_bytes()).expect("a");
        assert!(Arc::ptr_eq(
            &first,
            &parsed_pair(a.as_bytes()).expect("a again")
        ));
        assert!(!Arc::ptr_eq(&first, &parsed_pair(b.as_bytes()).expect("b")));
        assert!(parsed_pair(b"not a key").is_err());
        // Past the bound the cache starts afresh; keys still parse.
        for _ in 0..PARSED_KEYS + 1 {
            let (k, _) = keys(SigningAlg::Es256);
            parsed_pair(k.as_bytes()).expect("fresh key");
        }
        assert!(parsed_pair(a.as_bytes()).is_ok());
    }

    #[test]
    fn es256_agrees_with_rustcrypto_both_ways() {
        let (enc, dec) = keys(SigningAlg::Es256);
        let rc = &rust_crypto::DEFAULT_PROVIDER;
        let msg = b"header.payload";
        let ours = sign(signer_factory, Algorithm::ES256, &enc, msg);
        assert_eq!(ours.len(), 64, "JWS ES256 is r || s");
        assert!(verifies(
            rc.verifier_factory,
            Algorithm::ES256,
            &dec,
            msg,
            &ours
        ));
        let theirs = sign(rc.signer_factory, Algorithm::ES256, &enc, msg);
        assert!(verifies(
            verifier_factory,
            Algorithm::ES256,
            &dec,
            msg,
            &theirs
        ));
        // a changed message or signature, or another key, does not verify
        assert!(!verifies(
            verifier_factory,
            Algorithm::ES256,
            &dec,
            b"header.payloaD",
            &ours
        ));
        let mut bent = ours.clone();
        bent[10] ^= 1;
        assert!(!verifies(
            verifier_factory,
            Algorithm::ES256,
            &dec,
            msg,
            &bent
        ));
        let (_, other) = keys(SigningAlg::Es256);
        assert!(!verifies(
            verifier_factory,
            Algorithm::ES256,
            &other,
            msg,
            &ours
        ));
        assert!(!verifies(
            verifier_factory,
            Algorithm::ES256,
            &dec,
            msg,
            &[0; 64]
        ));
        assert!(!verifies(
            verifier_factory,
            Algorithm::ES256,
            &dec,
            msg,
            &ours[..63]
        ));
    }

    #[test]
    fn keys_of_another_family_are_refused() {
        let secret = DecodingKey::from_secret(b"a shared secret that is not a key");
        assert!(verifier_factory(&Algorithm::ES256, &secret).is_err());
        assert!(signer_factory(&Algorithm::ES256, &EncodingKey::from_secret(b"s")).is_err());
        let (rsa_enc, rsa_dec) = keys(SigningAlg::Rs256);
        assert!(verifier_factory(&Algorithm::ES256, &rsa_dec).is_err());
        assert!(signer_factory(&Algorithm::ES256, &rsa_enc).is_err());
        // and an EC key is no HMAC secret
        let (enc, _) = keys(SigningAlg::Es256);
        assert!(signer_factory(&Algorithm::HS256, &enc).is_err());
    }

    #[test]
    fn other_algorithms_go_to_rustcrypto() {
        let (enc, dec) = keys(SigningAlg::Rs256);
        let sig = sign(signer_factory, Algorithm::RS256, &enc, b"m");
        assert!(verifies(
            verifier_factory,
            Algorithm::RS256,
            &dec,
            b"m",
            &sig
        ));
        assert!(!verifies(
            verifier_factory,
            Algorithm::RS256,
            &dec,
            b"n",
            &sig
        ));
    }

    #[test]
    fn a_point_not_on_the_curve_does_not_verify() {
        let (enc, _) = keys(SigningAlg::Es256);
        let sig = sign(signer_factory, Algorithm::ES256, &enc, b"m");
        let mut point = vec![0x04];
        point.extend([7u8; 64]);
        let bogus = DecodingKey::from_ec_der(&point);
        let verified = verifier_factory(&Algorithm::ES256, &bogus)
            .map(|v| v.verify(b"m", &sig).is_ok())
            .unwrap_or(false);
        assert!(!verified);
    }
}
