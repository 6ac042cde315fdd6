//! Client secrets: stored as argon2id hashes, compared in constant time.
//!
//! Verifying argon2 on every poll would make the token endpoint CPU-bound, so a successful
//! verification is remembered as the SHA-256 of the secret, keyed by the client and the exact
//! stored hash (a changed secret invalidates it). Later requests compare SHA-256 digests in
//! constant time. Failed attempts are never cached.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use ciba_domain::secret::{constant_time_eq, sha256};
use std::collections::HashMap;
use std::sync::Mutex;

const MAX_CACHED: usize = 10_000;

/// argon2id with 7 MiB and 5 passes: one of OWASP's equivalent settings, chosen for its
/// small memory. Verification reads the parameters from the stored hash.
fn argon2() -> Argon2<'static> {
    let params = argon2::Params::new(7 * 1024, 5, 1, None).unwrap_or_default();
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

pub fn hash_secret(secret: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand_core::OsRng);
    argon2()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn verify_slow(secret: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| argon2().verify_password(secret.as_bytes(), &h).is_ok())
}

#[derive(Default)]
pub struct SecretVerifier {
    verified: Mutex<HashMap<String, (String, [u8; 32])>>,
    /// One argon2 verification at a time: bounds memory and CPU under a burst of new or
    /// wrong secrets, while clients already verified never wait here.
    slow_lane: Mutex<()>,
}

impl SecretVerifier {
    fn cached(&self, client_id: &str, stored: &str, digest: &[u8; 32]) -> Option<bool> {
        let cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(client_id)
            .filter(|(hash, _)| hash == stored)
            .map(|(_, known)| constant_time_eq(known, digest))
    }

    /// The answer from the cache of verified secrets, if it has one (no argon2: cheap enough
    /// for an async thread). `None` means [`Self::verify`] must run.
    pub fn verify_cached(&self, client_id: &str, stored: &str, secret: &str) -> Option<bool> {
        self.cached(client_id, stored, &sha256(secret.as_bytes()))
    }

    /// Does `secret` match `stored` (the argon2 hash of `client_id`'s secret)?
    /// Blocking (argon2 on a cache miss): call from a blocking context.
    pub fn verify(&self, client_id: &str, stored: &str, secret: &str) -> bool {
        let digest = sha256(secret.as_bytes());
        if let Some(known) = self.cached(client_id, stored, &digest) {
            return known;
        }
        let _slow = self.slow_lane.lock().unwrap_or_else(|p| p.into_inner());
        // another request may have verified the same secret while this one waited
        if let Some(known) = self.cached(client_id, stored, &digest) {
            return known;
        }
        if !verify_slow(secret, stored) {
            return false;
        }
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(client_id.to_owned(), (stored.to_owned(), digest));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_and_caches_only_success() {
        let stored = hash_secret("s3cret").unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"),
            "{stored}"
        );
        let v = SecretVerifier::default();
        assert!(!v.verify("c", &stored, "wrong"));
        assert!(v.verify("c", &stored, "s3cret"));
        // served from the cache now, still exact
        assert_eq!(v.verify_cached("c", &stored, "s3cret"), Some(true));
        assert_eq!(v.verify_cached("c", &stored, "s3cre"), Some(false));
        assert_eq!(v.verify_cached("d", &stored, "s3cret"), None);
        assert!(v.verify("c", &stored, "s3cret"));
        assert!(!v.verify("c", &stored, "s3cre"));
        // a new stored hash (secret rotated) is not satisfied by the cached digest
        let rotated = hash_secret("other").unwrap();
        assert!(!v.verify("c", &rotated, "s3cret"));
        assert!(v.verify("c", &rotated, "other"));
    }
}
