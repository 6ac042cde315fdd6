//! Signatures of our own tokens that need not be checked again: kept by the token's SHA-256
//! (never the token), with its claims and the id of the key that signed it. An entry counts
//! only while that key is in the key ring, so a revoked key's tokens stop at once; the
//! caller still checks the claims at every use.

use crate::cache::{CacheSize, TtlCache};
use ciba_domain::secret::sha256_b64url;
use ciba_runtime::crypto::keyring::{KeyRing, Purpose};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
struct Entry {
    claims: Arc<Value>,
    kid: String,
    /// About how much memory the entry holds.
    size: usize,
}

/// One kind of token's remembered signatures (a cache per kind, so one kind never passes
/// for another).
pub struct Remembered(TtlCache<Entry>);

impl Remembered {
    pub fn new(ttl: Duration, max_entries: usize, max_bytes: usize) -> Self {
        Self(TtlCache::new(ttl, max_entries, max_bytes, 64, |e| e.size))
    }

    /// Remember that `token`, with `claims`, was signed by key `kid` (verified or made here).
    pub fn put(&self, token: &str, claims: Arc<Value>, kid: &str) {
        let entry = Entry {
            claims,
            kid: kid.to_owned(),
            size: token.len() * 2,
        };
        self.0.put(&sha256_b64url(token.as_bytes()), entry);
    }

    /// The claims of `token` if its signature is remembered and its key still in `keys`.
    pub fn get(&self, token: &str, keys: &KeyRing, now: i64) -> Option<Arc<Value>> {
        let entry = self.0.get(&sha256_b64url(token.as_bytes()))?;
        signed(entry, keys, now)
    }

    /// [`Remembered::get`], the entry removed (a token used once).
    pub fn take(&self, token: &str, keys: &KeyRing, now: i64) -> Option<Arc<Value>> {
        let entry = self.0.take(&sha256_b64url(token.as_bytes()))?;
        signed(entry, keys, now)
    }

    pub fn size(&self) -> CacheSize {
        self.0.size()
    }
}

fn signed(entry: Entry, keys: &KeyRing, now: i64) -> Option<Arc<Value>> {
    keys.find(Purpose::Oidc, &entry.kid, now)
        .is_some()
        .then_some(entry.claims)
}
