//! A registered merchant client as the domain sees it.

use crate::scope::ScopeSet;

/// How a client learns that a CIBA request has finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryMode {
    Poll,
    Ping { notification_endpoint: String },
}

impl DeliveryMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Ping { .. } => "ping",
        }
    }
}

/// JWS algorithms this server signs ID tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    Es256,
    Rs256,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 2] = [SigningAlg::Es256, SigningAlg::Rs256];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ES256" => Some(Self::Es256),
            "RS256" => Some(Self::Rs256),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub scopes: ScopeSet,
    pub callback_uris: Vec<String>,
    pub sub_nnin: bool,
    /// JWK set (JSON) for `private_key_jwt`, if the client registered one.
    pub jwks: Option<String>,
    pub id_token_alg: SigningAlg,
    pub delivery: DeliveryMode,
    pub disabled: bool,
}

impl Client {
    pub fn has_callback(&self, uri: &str) -> bool {
        self.callback_uris.iter().any(|u| u == uri)
    }
}
