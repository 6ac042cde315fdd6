//! Client secrets: stored as argon2id hashes, compared in constant time.
//!
//! Verifying argon2 on every poll would make the token endpoint CPU-bound, so a successful
//! verification is remembered as the SHA-256 of the secret, keyed by the client and the exact
//! stored hash (a changed secret invalidates it). Later requests compare SHA-256 digests in
//! constant time. Failed attempts are never cached. argon2 runs on its own bounded pool
//! ([`HashPool`]), never on the threads that serve database work.

use crate::crypto::hash_pool::{Busy, HashPool};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use ciba_domain::secret::{constant_time_eq, sha256};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use tokio::sync::watch;

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

/// A hash to verify against when the client does not exist, so an unknown client id costs
/// the same time as a wrong secret (made once, on a hashing thread).
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_secret("dummy-secret-for-timing").unwrap_or_default())
}

/// A verification: the client, the stored hash it is checked against (empty: the dummy),
/// and the secret's digest.
type FlightKey = (String, String, [u8; 32]);

pub struct SecretVerifier {
    /// Verified secrets by (client, stored hash): during a secret rotation's grace the old
    /// and the new secret are both remembered.
    verified: Mutex<HashMap<(String, String), [u8; 32]>>,
    /// Verifications running now, by client and secret digest: a burst of one secret (a
    /// merchant's connections right after a restart, or one attacker's guess) costs one
    /// argon2 run; the others wait for its answer without taking a place in the queue.
    in_flight: Mutex<HashMap<FlightKey, watch::Receiver<Option<bool>>>>,
    pool: HashPool,
}

/// Removes a flight from the table however its leader ends (answered, refused, cancelled).
struct Flight<'a> {
    table: &'a Mutex<HashMap<FlightKey, watch::Receiver<Option<bool>>>>,
    key: FlightKey,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        lock(self.table).remove(&self.key);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SecretVerifier {
    pub fn new(pool: HashPool) -> Self {
        Self {
            verified: Mutex::default(),
            in_flight: Mutex::default(),
            pool,
        }
    }

    fn cached(&self, client_id: &str, stored: &str, digest: &[u8; 32]) -> Option<bool> {
        lock(&self.verified)
            .get(&(client_id.to_owned(), stored.to_owned()))
            .map(|known| constant_time_eq(known, digest))
    }

    /// The answer from the cache of verified secrets, if it has one (no argon2: cheap enough
    /// for an async thread). `None` means [`Self::verify`] must run.
    pub fn verify_cached(&self, client_id: &str, stored: &str, secret: &str) -> Option<bool> {
        self.cached(client_id, stored, &sha256(secret.as_bytes()))
    }

    /// A verification for a client that does not exist would be refused now: such dummy
    /// work may use at most half the hashing pool, so made-up client ids cannot crowd out a
    /// registered client whose secret is not verified yet (after a restart or a rotation).
    pub fn unknown_budget_full(&self) -> bool {
        self.pool.half_full()
    }

    /// Lead the verification of `key`, or follow the one already running.
    #[allow(clippy::type_complexity)]
    fn join_or_lead(
        &self,
        key: FlightKey,
    ) -> Result<(watch::Sender<Option<bool>>, Flight<'_>), watch::Receiver<Option<bool>>> {
        let mut table = lock(&self.in_flight);
        if let Some(rx) = table.get(&key) {
            return Err(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        table.insert(key.clone(), rx);
        Ok((
            tx,
            Flight {
                table: &self.in_flight,
                key,
            },
        ))
    }

    /// Does `secret` match `stored` (the argon2 hash of `client_id`'s secret; `None` for a
    /// client without one, verified against a dummy hash at the same cost)? `exists`: the
    /// client is registered (one without a secret is refused like a wrong secret, under the
    /// budget of registered clients, so neither the answer nor the refusal tells it apart).
    /// argon2 runs on the hashing pool; [`Busy`] when it is full.
    pub async fn verify(
        &self,
        client_id: &str,
        stored: Option<&str>,
        exists: bool,
        secret: &str,
    ) -> Result<bool, Busy> {
        let digest = sha256(secret.as_bytes());
        if let Some(known) = stored.and_then(|h| self.cached(client_id, h, &digest)) {
            return Ok(known);
        }
        if !exists && self.unknown_budget_full() {
            return Err(Busy);
        }
        let key = (
            client_id.to_owned(),
            stored.unwrap_or_default().to_owned(),
            digest,
        );
        // Follow a verification already running; if its leader goes away without an answer
        // (its client hung up, or the pool refused it), try once to lead instead.
        let mut tries = 0;
        let (tx, flight) = loop {
            tries += 1;
            match self.join_or_lead(key.clone()) {
                Ok(lead) => break lead,
                Err(mut follower) => match follower.wait_for(Option::is_some).await {
                    Ok(answer) => return Ok(answer.unwrap_or(false)),
                    Err(_) if tries < 2 => continue,
                    Err(_) => return Err(Busy),
                },
            }
        };
        let (secret, hash) = (secret.to_owned(), stored.map(str::to_owned));
        let ok = self
            .pool
            .run(move || match hash {
                Some(hash) => verify_slow(&secret, &hash),
                None => {
                    verify_slow(&secret, dummy_hash());
                    false
                }
            })
            .await?;
        if ok {
            if let Some(hash) = stored {
                let mut cache = lock(&self.verified);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
                cache.insert((client_id.to_owned(), hash.to_owned()), digest);
            }
        }
        let _ = tx.send(Some(ok));
        drop(flight);
        Ok(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_and_caches_only_success() {
        let stored = hash_secret("s3cret").unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"),
            "{stored}"
        );
        let v = SecretVerifier::new(HashPool::start(1, 4).unwrap());
        let s = Some(stored.as_str());
        assert_eq!(v.verify("c", s, true, "wrong").await, Ok(false));
        assert_eq!(v.verify("c", s, true, "s3cret").await, Ok(true));
        // served from the cache now, still exact
        assert_eq!(v.verify_cached("c", &stored, "s3cret"), Some(true));
        assert_eq!(v.verify_cached("c", &stored, "s3cre"), Some(false));
        assert_eq!(v.verify_cached("d", &stored, "s3cret"), None);
        assert_eq!(v.verify("c", s, true, "s3cre").await, Ok(false));
        // a new stored hash (secret rotated) is not satisfied by the cached digest
        let rotated = hash_secret("other").unwrap();
        assert_eq!(
            v.verify("c", Some(&rotated), true, "s3cret").await,
            Ok(false)
        );
        assert_eq!(v.verify("c", Some(&rotated), true, "other").await, Ok(true));
        // an unknown client never verifies, whatever it sends
        assert_eq!(v.verify("nobody", None, false, "s3cret").await, Ok(false));
        assert!(v.in_flight.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_old_and_the_new_secret_of_a_rotation_are_both_remembered() {
        let (old, new) = (hash_secret("old").unwrap(), hash_secret("new").unwrap());
        let v = SecretVerifier::new(HashPool::start(1, 4).unwrap());
        assert_eq!(v.verify("c", Some(&old), true, "old").await, Ok(true));
        assert_eq!(v.verify("c", Some(&new), true, "new").await, Ok(true));
        assert_eq!(v.verify_cached("c", &old, "old"), Some(true));
        assert_eq!(v.verify_cached("c", &new, "new"), Some(true));
        assert_eq!(v.verify_cached("c", &new, "old"), Some(false));
    }

    #[tokio::test]
    async fn a_follower_takes_over_when_its_leader_goes_away() {
        let stored = hash_secret("s3cret").unwrap();
        let v = std::sync::Arc::new(SecretVerifier::new(HashPool::start(1, 1).unwrap()));
        // A leader whose request is dropped before its answer (its client hung up).
        let key = ("c".into(), stored.clone(), sha256(b"s3cret"));
        let (tx, flight) = v.join_or_lead(key).unwrap();
        let (v2, stored2) = (v.clone(), stored.clone());
        let follower =
            tokio::spawn(async move { v2.verify("c", Some(&stored2), true, "s3cret").await });
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        drop(tx);
        drop(flight);
        assert_eq!(follower.await.unwrap(), Ok(true));
    }

    #[tokio::test]
    async fn a_burst_of_one_secret_shares_one_verification() {
        let stored = hash_secret("s3cret").unwrap();
        // One thread and one queue slot: without sharing, most of these would be refused.
        let v = std::sync::Arc::new(SecretVerifier::new(HashPool::start(1, 1).unwrap()));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (v, stored) = (v.clone(), stored.clone());
            tasks.push(tokio::spawn(async move {
                v.verify("c", Some(&stored), true, "s3cret").await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            if t.await.unwrap() == Ok(true) {
                ok += 1;
            }
        }
        // Those that arrived after the first answer was cached were served from the cache.
        assert_eq!(ok, 8);
        // A different guess while the pool is idle runs; none is left in flight.
        assert_eq!(v.verify("c", Some(&stored), true, "guess").await, Ok(false));
        assert!(v.in_flight.lock().unwrap().is_empty());
    }
}
