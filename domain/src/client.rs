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
    /// RSASSA-PSS (FAPI's RSA algorithm), on an RSA key of its own.
    Ps256,
    Rs256,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 3] = [SigningAlg::Es256, SigningAlg::Ps256, SigningAlg::Rs256];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Ps256 => "PS256",
            Self::Rs256 => "RS256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ES256" => Some(Self::Es256),
            "PS256" => Some(Self::Ps256),
            "RS256" => Some(Self::Rs256),
            _ => None,
        }
    }
}

/// How a client authenticates at the token and backchannel endpoints
/// (`token_endpoint_auth_method`, fixed at registration; contract §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    /// A certificate from a trusted CA with the registered subject DN (RFC 8705 §2.1).
    TlsClientAuth,
    /// A certificate whose key is in the client's JWK set (RFC 8705 §2.2).
    SelfSignedTlsClientAuth,
}

impl AuthMethod {
    /// Every method this server implements, as discovery lists them.
    pub const ALL: [AuthMethod; 5] = [
        AuthMethod::ClientSecretBasic,
        AuthMethod::ClientSecretPost,
        AuthMethod::PrivateKeyJwt,
        AuthMethod::TlsClientAuth,
        AuthMethod::SelfSignedTlsClientAuth,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::TlsClientAuth => "tls_client_auth",
            Self::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Whether clients of this method are issued a secret.
    pub fn has_secret(self) -> bool {
        matches!(self, Self::ClientSecretBasic | Self::ClientSecretPost)
    }

    /// Whether the client proves itself with a TLS client certificate.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::TlsClientAuth | Self::SelfSignedTlsClientAuth)
    }
}

/// A security profile a client is registered under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// OpenID FAPI-CIBA: key-based client authentication with PS256 or ES256, signed
    /// authentication requests (contract §11).
    FapiCiba,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FapiCiba => "fapi-ciba",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        (s == "fapi-ciba").then_some(Self::FapiCiba)
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
    /// Or where the client publishes it (fetched and cached).
    pub jwks_uri: Option<String>,
    pub auth_method: AuthMethod,
    pub profile: Option<Profile>,
    /// The subject DN (RFC 4514) of a `tls_client_auth` client's certificate.
    pub tls_subject_dn: Option<String>,
    pub id_token_alg: SigningAlg,
    pub delivery: DeliveryMode,
    pub disabled: bool,
}

impl Client {
    pub fn is_fapi(&self) -> bool {
        self.profile == Some(Profile::FapiCiba)
    }

    pub fn has_callback(&self, uri: &str) -> bool {
        self.callback_uris.iter().any(|u| u == uri)
    }
}
