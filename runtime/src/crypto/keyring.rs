//! The server's signing keys in memory, reloaded from the database so every replica agrees.
//!
//! Which key signs is a function of time: a key signs from `activates_at` until `retires_at`;
//! it is published from creation until `expires_at`. Rotation publishes the successor a lead
//! time before it signs and keeps the predecessor published until what it signed has expired.

use super::kek::Kek;
pub use super::key::{LoadedKey, Purpose};
use super::keygen::{self, KeyError};
use ciba_domain::audit::{action, Outcome};
use ciba_domain::client::SigningAlg;
use ciba_store::audit::{self, By};
use ciba_store::keys::{self as key_store, SigningKeyRow};
use ciba_store::{Store, StoreError};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Every (purpose, algorithm) pair the server must always be able to sign with.
pub const REQUIRED_KEYS: [(Purpose, SigningAlg); 4] = [
    (Purpose::Oidc, SigningAlg::Es256),
    (Purpose::Oidc, SigningAlg::Ps256),
    (Purpose::Oidc, SigningAlg::Rs256),
    (Purpose::Grants, SigningAlg::Es256),
];

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing key {kid}: {message}")]
    Key { kid: String, message: String },
}

pub struct KeyRing {
    kek: Kek,
    keys: RwLock<Arc<Vec<Arc<LoadedKey>>>>,
}

impl KeyRing {
    pub fn new(kek: Kek) -> Self {
        Self {
            kek,
            keys: RwLock::new(Arc::new(Vec::new())),
        }
    }

    fn snapshot(&self) -> Arc<Vec<Arc<LoadedKey>>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replace the in-memory keys with `rows`, decrypting only keys not already loaded. A row
    /// that cannot be loaded is left out (and reported) rather than keeping the old set, so a
    /// revoked or expired key leaves memory whatever else is wrong with the table.
    pub fn install(&self, rows: &[SigningKeyRow]) -> Result<(), KeyringError> {
        let old: HashMap<String, Arc<LoadedKey>> = self
            .snapshot()
            .iter()
            .map(|k| (k.kid.clone(), k.clone()))
            .collect();
        let mut next = Vec::with_capacity(rows.len());
        let mut failed = None;
        for row in rows {
            match self.load(row, old.get(&row.kid)) {
                Ok(key) => next.push(key),
                Err(e) => {
                    tracing::error!(kid = %row.kid, error = %e, "a signing key cannot be loaded");
                    failed.get_or_insert(e);
                }
            }
        }
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        failed.map_or(Ok(()), Err)
    }

    fn load(
        &self,
        row: &SigningKeyRow,
        loaded: Option<&Arc<LoadedKey>>,
    ) -> Result<Arc<LoadedKey>, KeyringError> {
        let bad = |message: String| KeyringError::Key {
            kid: row.kid.clone(),
            message,
        };
        let purpose = Purpose::parse(&row.purpose).ok_or_else(|| bad("unknown purpose".into()))?;
        let alg = SigningAlg::parse(&row.alg).ok_or_else(|| bad("unknown alg".into()))?;
        let (encoding, decoding, jwk) = match loaded {
            Some(k) => (k.encoding.clone(), k.decoding.clone(), k.jwk.clone()),
            None => {
                let der = self
                    .kek
                    .open(&row.private_key, &row.kid, &row.kek_id)
                    .map_err(|e| bad(e.to_string()))?;
                let (enc, dec) =
                    keygen::load(alg, &der).map_err(|e: KeyError| bad(e.to_string()))?;
                let jwk: Value =
                    serde_json::from_str(&row.public_jwk).map_err(|e| bad(e.to_string()))?;
                (enc, dec, jwk)
            }
        };
        Ok(Arc::new(LoadedKey {
            kid: row.kid.clone(),
            purpose,
            alg,
            encoding,
            decoding,
            jwk,
            activates_at: row.activates_at,
            retires_at: row.retires_at,
            expires_at: row.expires_at,
        }))
    }

    /// Load the published keys from the database.
    pub fn reload(&self, store: &Store, now: i64) -> Result<(), KeyringError> {
        let rows = store.read(|c| key_store::published(c, now))?;
        self.install(&rows)
    }

    /// The key that signs for (`purpose`, `alg`) at `now`: the most recently activated one.
    pub fn signer(&self, purpose: Purpose, alg: SigningAlg, now: i64) -> Option<Arc<LoadedKey>> {
        self.snapshot()
            .iter()
            .filter(|k| k.purpose == purpose && k.alg == alg && k.signs_at(now))
            .max_by_key(|k| k.activates_at)
            .cloned()
    }

    /// A published key of `purpose` by key id.
    pub fn find(&self, purpose: Purpose, kid: &str, now: i64) -> Option<Arc<LoadedKey>> {
        self.snapshot()
            .iter()
            .find(|k| k.purpose == purpose && k.kid == kid && k.published_at(now))
            .cloned()
    }

    /// Verify a JWT this server signed with a published key of `purpose` and whose header
    /// `typ` is `typ`; the algorithm is pinned to the key's. Returns the claims, unchecked.
    pub fn verify(
        &self,
        token: &str,
        purpose: Purpose,
        typ: &str,
        now: i64,
    ) -> Result<Value, &'static str> {
        self.verify_signed(token, purpose, typ, now)
            .map(|(_, claims)| claims)
    }

    /// [`KeyRing::verify`], with the key that signed the token.
    pub fn verify_signed(
        &self,
        token: &str,
        purpose: Purpose,
        typ: &str,
        now: i64,
    ) -> Result<(Arc<LoadedKey>, Value), &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed token header")?;
        if header.typ.as_deref() != Some(typ) {
            return Err("not a token of the expected type");
        }
        let kid = header.kid.as_deref().ok_or("token has no kid")?;
        let key = self.find(purpose, kid, now).ok_or("unknown signing key")?;
        let (_, claims) =
            super::jwt::verify_signature(token, &key.decoding, super::jwt::alg_of(&key))?;
        Ok((key, claims))
    }

    /// The public JWK set of `purpose` at `now`.
    pub fn jwks(&self, purpose: Purpose, now: i64) -> Value {
        let snapshot = self.snapshot();
        let keys: Vec<&Value> = snapshot
            .iter()
            .filter(|k| k.purpose == purpose && k.published_at(now))
            .map(|k| &k.jwk)
            .collect();
        json!({ "keys": keys })
    }
}

fn new_row(
    kek: &Kek,
    purpose: Purpose,
    alg: SigningAlg,
    now: i64,
    activates_at: i64,
) -> Result<SigningKeyRow, KeyringError> {
    let k = keygen::generate(alg, "sig").map_err(|e| KeyringError::Key {
        kid: "(new)".into(),
        message: e.0,
    })?;
    Ok(SigningKeyRow {
        private_key: kek.seal(&k.private_der, &k.kid),
        kid: k.kid,
        purpose: purpose.as_str().into(),
        alg: alg.as_str().into(),
        public_jwk: k.public_jwk.to_string(),
        kek_id: kek.id().into(),
        created_at: now,
        activates_at,
        retires_at: None,
        expires_at: None,
    })
}

/// On first start (or after keys were lost), make every required key that has no signer.
/// Returns the kids created. Nothing has been signed yet, so new keys sign at once.
pub fn ensure_keys(store: &Store, kek: &Kek, now: i64) -> Result<Vec<String>, KeyringError> {
    store
        .write(|c| {
            let rows = key_store::published(c, now)?;
            let mut created = Vec::new();
            for (purpose, alg) in REQUIRED_KEYS {
                // A key that goes on signing; keys that all retire leave no signer after.
                let has = rows.iter().any(|r| {
                    r.purpose == purpose.as_str() && r.alg == alg.as_str() && r.retires_at.is_none()
                });
                if !has {
                    let row = new_row(kek, purpose, alg, now, now)
                        .map_err(|e| StoreError::Other(e.to_string()))?;
                    key_store::insert(c, &row)?;
                    created.push(row.kid);
                }
            }
            Ok(created)
        })
        .map_err(KeyringError::from)
}

/// What an emergency revocation did.
#[derive(Debug)]
pub struct Revoked {
    pub kid: String,
    /// The key that signs in its place from now on, when none other did.
    pub successor: Option<String>,
}

/// Revoke `kid` at once (a leaked key): it leaves the JWKS and is no longer accepted or used
/// by any process from its next key reload; when no other key of its purpose and algorithm
/// signs now, a successor that signs at once is made in the same transaction. `None`: no
/// such published key.
pub fn revoke(
    store: &Store,
    kek: &Kek,
    kid: &str,
    by: &By<'_>,
    now: i64,
) -> Result<Option<Revoked>, KeyringError> {
    let Some(row) = store.read(|c| key_store::find(c, kid))? else {
        return Ok(None);
    };
    let (purpose, alg) = match (Purpose::parse(&row.purpose), SigningAlg::parse(&row.alg)) {
        (Some(p), Some(a)) => (p, a),
        _ => {
            return Err(KeyringError::Key {
                kid: kid.to_owned(),
                message: "unknown purpose or algorithm".into(),
            })
        }
    };
    let successor = new_row(kek, purpose, alg, now, now)?;
    store
        .write(|c| {
            if !key_store::revoke(c, kid, now)? {
                return Ok(None);
            }
            audit::record(c, by, action::KEY_REVOKED, Some(kid), Outcome::Ok)?;
            // Another key that goes on signing (one retiring does not count: it would leave
            // the pair without a signer when it retires, e.g. after a revoked successor).
            let keeps_signing = |r: &SigningKeyRow| {
                r.purpose == row.purpose && r.alg == row.alg && r.retires_at.is_none()
            };
            if key_store::published(c, now)?.iter().any(keeps_signing) {
                return Ok(Some(Revoked {
                    kid: kid.to_owned(),
                    successor: None,
                }));
            }
            key_store::insert(c, &successor)?;
            Ok(Some(Revoked {
                kid: kid.to_owned(),
                successor: Some(successor.kid.clone()),
            }))
        })
        .map_err(KeyringError::from)
}

/// Re-encrypt every stored private key sealed under the previous key-encryption key under
/// the current one, in one transaction (`admin kek rotate`). Refused, changing nothing, when
/// no previous key is given or a key is sealed under neither. Returns how many were resealed.
pub fn reencrypt(store: &Store, kek: &Kek, by: &By<'_>) -> Result<usize, KeyringError> {
    let Some(previous) = kek.previous_id().map(str::to_owned) else {
        return Err(KeyringError::Key {
            kid: "-".into(),
            message: "set CIBA_KEY_ENCRYPTION_KEY_PREVIOUS to the key being replaced".into(),
        });
    };
    store
        .write(|c| {
            // Not while a scheduled rotation inserts keys (PostgreSQL; SQLite has one writer).
            if !ciba_store::db::try_advisory_xact_lock(c, ciba_store::db::LOCK_KEY_ROTATION)? {
                return Err(StoreError::Other(
                    "a key rotation is running; try again in a moment".into(),
                ));
            }
            let mut resealed = 0;
            for row in key_store::all(c)? {
                let what = format!("signing key {}", row.kid);
                let sealed = resealed_under(
                    kek,
                    &previous,
                    &what,
                    &row.private_key,
                    &row.kid,
                    &row.kek_id,
                )?;
                if let Some(sealed) = sealed {
                    key_store::reseal(c, &row.kid, &sealed, kek.id())?;
                    resealed += 1;
                }
            }
            // Sandbox test users' simulated-app keys are sealed the same way.
            for (sb, _) in ciba_store::sandbox::list(c)? {
                let what = format!("simulated app key {}", sb.device_id);
                let sealed = resealed_under(
                    kek,
                    &previous,
                    &what,
                    &sb.private_key,
                    &sb.device_id,
                    &sb.kek_id,
                )?;
                if let Some(sealed) = sealed {
                    ciba_store::sandbox::reseal(c, &sb.user_sub, &sealed, kek.id())?;
                    resealed += 1;
                }
            }
            audit::record(c, by, action::KEK_ROTATED, Some(kek.id()), Outcome::Ok)?;
            Ok(resealed)
        })
        .map_err(KeyringError::from)
}

/// A private key (`what`, for errors) sealed with associated data `aad` under `kek_id`, sealed
/// anew under the current key; `None` when it already is; refused when sealed under neither
/// the current nor the `previous` key.
fn resealed_under(
    kek: &Kek,
    previous: &str,
    what: &str,
    sealed: &str,
    aad: &str,
    kek_id: &str,
) -> Result<Option<String>, StoreError> {
    if kek_id == kek.id() {
        return Ok(None);
    }
    if kek_id != previous {
        return Err(StoreError::Other(format!(
            "{what} is sealed under neither key (kek id {kek_id})"
        )));
    }
    let der = kek
        .open(sealed, aad, kek_id)
        .map_err(|e| StoreError::Other(format!("{what}: {e}")))?;
    Ok(Some(kek.seal(&der, aad)))
}

/// Rotate every required key: each successor is published now and signs after `lead`
/// seconds; each predecessor stops signing then and leaves the JWKS `max_lifetime` later.
pub fn rotate(
    store: &Store,
    kek: &Kek,
    by: &By<'_>,
    now: i64,
    lead: i64,
    max_lifetime: i64,
) -> Result<Vec<String>, KeyringError> {
    rotate_when(store, kek, by, now, lead, max_lifetime, None)
}

/// The worker's scheduled rotation: rotate when the newest key is `period` seconds old.
/// Several workers may call it at once; one rotates (PostgreSQL advisory lock, and the age
/// is checked again under it). Returns the new kids, empty when nothing was due.
pub fn rotate_if_due(
    store: &Store,
    kek: &Kek,
    by: &By<'_>,
    now: i64,
    period: i64,
    lead: i64,
    max_lifetime: i64,
) -> Result<Vec<String>, KeyringError> {
    let due = |c: &mut ciba_store::DbConnection| -> ciba_store::StoreResult<bool> {
        let newest = key_store::all(c)?.iter().map(|k| k.created_at).max();
        Ok(newest.is_none_or(|t| now - t >= period))
    };
    if !store.read(due)? {
        return Ok(Vec::new());
    }
    rotate_when(store, kek, by, now, lead, max_lifetime, Some(&due))
}

type DueCheck<'a> = &'a dyn Fn(&mut ciba_store::DbConnection) -> ciba_store::StoreResult<bool>;

fn rotate_when(
    store: &Store,
    kek: &Kek,
    by: &By<'_>,
    now: i64,
    lead: i64,
    max_lifetime: i64,
    due: Option<DueCheck<'_>>,
) -> Result<Vec<String>, KeyringError> {
    let mut rows = Vec::new();
    for (purpose, alg) in REQUIRED_KEYS {
        rows.push(new_row(kek, purpose, alg, now, now + lead)?);
    }
    store
        .write(|c| {
            if let Some(due) = due {
                if !ciba_store::db::try_advisory_xact_lock(c, ciba_store::db::LOCK_KEY_ROTATION)?
                    || !due(c)?
                {
                    return Ok(Vec::new());
                }
            }
            for row in &rows {
                key_store::insert(c, row)?;
                key_store::schedule_retirement(
                    c,
                    &row.purpose,
                    &row.alg,
                    &row.kid,
                    now + lead,
                    now + lead + max_lifetime,
                )?;
                audit::record(c, by, action::KEY_ROTATED, Some(&row.kid), Outcome::Ok)?;
            }
            Ok(rows.iter().map(|r| r.kid.clone()).collect())
        })
        .map_err(KeyringError::from)
}
