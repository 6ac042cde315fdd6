//! A signing key as loaded in memory, and what it is for. (The keyring holds them; JWT
//! signing takes one.)

use ciba_domain::client::SigningAlg;
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// ID tokens, access tokens, permission tokens: `/oidc/v1/jwks`.
    Oidc,
    /// Permission grants: `/permissions/v1/jwks`.
    Grants,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Oidc => "oidc",
            Purpose::Grants => "grants",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "oidc" => Some(Purpose::Oidc),
            "grants" => Some(Purpose::Grants),
            _ => None,
        }
    }
}

pub struct LoadedKey {
    pub kid: String,
    pub purpose: Purpose,
    pub alg: SigningAlg,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    pub jwk: Value,
    pub activates_at: i64,
    pub retires_at: Option<i64>,
    pub expires_at: Option<i64>,
}

impl LoadedKey {
    pub(crate) fn published_at(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }

    pub(crate) fn signs_at(&self, now: i64) -> bool {
        self.activates_at <= now && self.retires_at.is_none_or(|r| r > now)
    }
}
