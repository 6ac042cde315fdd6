//! Trusted external issuers of access tokens, verified against their JWKS, which is cached
//! and re-fetched when it is stale or a token names an unknown key (at most every 30 s).

use ciba_runtime::config::ExternalIssuer;
use ciba_runtime::crypto::jwk_set::verify_with_set;
use ciba_runtime::crypto::jwt::{self, Expect};
use jsonwebtoken::jwk::JwkSet;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

const MIN_REFETCH: i64 = 30;

struct Cached {
    set: JwkSet,
    fetched_at: i64,
}

pub struct ExternalIssuers {
    issuers: Vec<ExternalIssuer>,
    ttl: i64,
    cache: Mutex<HashMap<String, Cached>>,
    http: Option<reqwest::Client>,
}

impl ExternalIssuers {
    pub fn new(issuers: Vec<ExternalIssuer>, ttl: i64) -> Self {
        let http = if issuers.is_empty() {
            None
        } else {
            ciba_runtime::outbound::client(Duration::from_secs(3), Duration::from_secs(5)).ok()
        };
        Self {
            issuers,
            ttl,
            cache: Mutex::new(HashMap::new()),
            http,
        }
    }

    pub fn knows(&self, issuer: &str) -> bool {
        self.issuers.iter().any(|i| i.issuer == issuer)
    }

    fn cached(&self, issuer: &str) -> Option<(JwkSet, i64)> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(issuer).map(|c| (c.set.clone(), c.fetched_at))
    }

    async fn fetch(&self, cfg: &ExternalIssuer, now: i64) -> Result<JwkSet, &'static str> {
        let http = self.http.as_ref().ok_or("no HTTP client")?;
        let resp = http.get(&cfg.jwks_uri).send().await.map_err(|e| {
            tracing::warn!(issuer = %cfg.issuer, error = %e, "fetching external JWKS failed");
            "the issuer's keys are unavailable"
        })?;
        if !resp.status().is_success() {
            tracing::warn!(issuer = %cfg.issuer, status = %resp.status(), "external JWKS answered with an error");
            return Err("the issuer's keys are unavailable");
        }
        let set: JwkSet = resp
            .json()
            .await
            .map_err(|_| "the issuer's JWKS is malformed")?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(
            cfg.issuer.clone(),
            Cached {
                set: set.clone(),
                fetched_at: now,
            },
        );
        Ok(set)
    }

    /// Verify a token claimed to come from `issuer`; returns its claims.
    pub async fn verify(
        &self,
        issuer: &str,
        token: &str,
        our_issuer: &str,
        now: i64,
    ) -> Result<Value, &'static str> {
        let cfg = self
            .issuers
            .iter()
            .find(|i| i.issuer == issuer)
            .ok_or("untrusted issuer")?;
        let claims = match self.cached(issuer) {
            Some((set, fetched_at)) if now - fetched_at < self.ttl => {
                match verify_with_set(token, &set) {
                    Ok(c) => c,
                    Err(_) if now - fetched_at >= MIN_REFETCH => {
                        verify_with_set(token, &self.fetch(cfg, now).await?)?
                    }
                    Err(e) => return Err(e),
                }
            }
            _ => verify_with_set(token, &self.fetch(cfg, now).await?)?,
        };
        let audience = cfg.audience.as_deref().unwrap_or(our_issuer);
        jwt::check_claims(
            &claims,
            &Expect {
                issuer: Some(cfg.issuer.as_str()),
                audiences: &[audience],
                now,
                max_lifetime: None,
                require_jti: false,
            },
        )?;
        Ok(claims)
    }
}
