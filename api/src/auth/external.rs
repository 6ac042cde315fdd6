//! Trusted external issuers of access tokens, verified against their JWKS, which is cached
//! and re-fetched when it is stale or a token names an unknown key (at most every 30 s).

use super::remote_jwks::RemoteJwks;
use ciba_runtime::config::ExternalIssuer;
use ciba_runtime::crypto::jwk_set::ACCEPTED_ALGS;
use ciba_runtime::crypto::jwt::{self, Expect};
use serde_json::Value;

pub struct ExternalIssuers {
    issuers: Vec<ExternalIssuer>,
    keys: RemoteJwks,
}

impl ExternalIssuers {
    pub fn new(issuers: Vec<ExternalIssuer>, ttl: i64) -> Self {
        Self {
            issuers,
            keys: RemoteJwks::new(ttl),
        }
    }

    pub fn knows(&self, issuer: &str) -> bool {
        self.issuers.iter().any(|i| i.issuer == issuer)
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
        let claims = self
            .keys
            .verify(&cfg.jwks_uri, token, &ACCEPTED_ALGS, now)
            .await?;
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
