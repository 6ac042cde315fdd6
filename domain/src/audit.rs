//! The audit trail's vocabulary (contract §8): who did what to which object, with what
//! outcome, from where. An event never holds an NNIN, a secret or a token: objects are named
//! by the ids the server issued.

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor<'a> {
    /// A merchant client, by client id.
    Client(&'a str),
    /// An enrolled device, by device id.
    Device(&'a str),
    /// A person at the admin CLI (the operating-system user, when known).
    Operator(&'a str),
    /// The server or worker on its own (expiry, key rotation, retention).
    System,
}

impl Actor<'_> {
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Client(_) => "client",
            Actor::Device(_) => "device",
            Actor::Operator(_) => "operator",
            Actor::System => "system",
        }
    }

    pub fn id(&self) -> Option<&str> {
        match self {
            Actor::Client(id) | Actor::Device(id) | Actor::Operator(id) => Some(id),
            Actor::System => None,
        }
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Refused by a rule (bad credentials, a limit).
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
        }
    }
}

/// Where a request came from: the client's address and the HTTP request's id.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub source: Option<String>,
    pub request_id: Option<String>,
}

/// The actions recorded.
pub mod action {
    pub const CLIENT_AUTH_FAILED: &str = "client.authentication_failed";
    pub const TOKEN_ISSUED: &str = "token.issued";
    pub const PERMISSION_REGISTERED: &str = "permission.registered";
    pub const REQUEST_STARTED: &str = "request.started";
    pub const REQUEST_APPROVED: &str = "request.approved";
    pub const REQUEST_DECLINED: &str = "request.declined";
    pub const REQUEST_EXPIRED: &str = "request.expired";
    pub const REQUEST_REDEEMED: &str = "request.redeemed";
    pub const DEVICE_ENROLLED: &str = "device.enrolled";
    pub const KEY_ROTATED: &str = "key.rotated";
    pub const KEY_REVOKED: &str = "key.revoked";
    /// Every stored key resealed under a new key-encryption key (object: its id).
    pub const KEK_ROTATED: &str = "kek.rotated";
    /// A rate limit refused its first request of a window (object: what was limited).
    pub const RATE_LIMITED: &str = "rate_limit.exceeded";
}
