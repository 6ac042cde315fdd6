//! JWK sets fetched from a URL (a trusted issuer's, a client's `jwks_uri`): cached for a
//! TTL, fetched again when stale or when a token is signed by a key the cached set lacks (at
//! most every 30 s, so a stream of bad tokens cannot make us hammer the URL).

use ciba_runtime::crypto::jwk_set::verify_with_set_using;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

const MIN_REFETCH: i64 = 30;
/// The most URLs kept (one per client with a `jwks_uri` and trusted issuer).
const MAX_CACHED: usize = 10_000;

struct Cached {
    set: JwkSet,
    fetched_at: i64,
}

pub struct RemoteJwks {
    ttl: i64,
    cache: Mutex<HashMap<String, Cached>>,
    /// Made on the first fetch: most deployments have no trusted issuer nor `jwks_uri`.
    http: std::sync::OnceLock<Option<reqwest::Client>>,
}

impl RemoteJwks {
    pub fn new(ttl: i64) -> Self {
        Self {
            ttl,
            cache: Mutex::new(HashMap::new()),
            http: std::sync::OnceLock::new(),
        }
    }

    fn cached(&self, url: &str) -> Option<(JwkSet, i64)> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(url).map(|c| (c.set.clone(), c.fetched_at))
    }

    async fn fetch(&self, url: &str, now: i64) -> Result<JwkSet, &'static str> {
        let http = self
            .http
            .get_or_init(|| {
                ciba_runtime::outbound::client(Duration::from_secs(3), Duration::from_secs(5)).ok()
            })
            .as_ref()
            .ok_or("no HTTP client")?;
        let resp = http.get(url).send().await.map_err(|e| {
            tracing::warn!(error = %e, "fetching a JWKS failed");
            "the keys are unavailable"
        })?;
        if !resp.status().is_success() {
            tracing::warn!(status = %resp.status(), "a JWKS URL answered with an error");
            return Err("the keys are unavailable");
        }
        let set: JwkSet = resp.json().await.map_err(|_| "the JWKS is malformed")?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(
            url.to_owned(),
            Cached {
                set: set.clone(),
                fetched_at: now,
            },
        );
        Ok(set)
    }

    /// Verify `token` with the keys at `url` (algorithms `algs`); returns its claims,
    /// unchecked.
    pub async fn verify(
        &self,
        url: &str,
        token: &str,
        algs: &[Algorithm],
        now: i64,
    ) -> Result<Value, &'static str> {
        match self.cached(url) {
            Some((set, fetched_at)) if now - fetched_at < self.ttl => {
                match verify_with_set_using(token, &set, algs) {
                    Ok(c) => Ok(c),
                    Err(_) if now - fetched_at >= MIN_REFETCH => {
                        verify_with_set_using(token, &self.fetch(url, now).await?, algs)
                    }
                    Err(e) => Err(e),
                }
            }
            _ => verify_with_set_using(token, &self.fetch(url, now).await?, algs),
        }
    }
}
