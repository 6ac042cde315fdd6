//! Permissions: what a merchant asks a user to approve (contract §4).

pub mod amount;
pub mod currency;
pub mod statement;

use crate::client::Client;
use crate::error::OAuthError;
use crate::nnin::Nnin;
use crate::scope;
use crate::secret::{sha256, sha256_b64url};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

pub const ACR_SUBSTANTIAL: &str = "http://eidas.europa.eu/LoA/substantial";
pub const ACR_HIGH: &str = "http://eidas.europa.eu/LoA/high";
pub const ACR_VALUES: [&str; 2] = [ACR_SUBSTANTIAL, ACR_HIGH];

/// How far in the past `iat` may be, and how far in the future (clock skew).
pub const MAX_IAT_AGE: i64 = 60;
pub const CLOCK_SKEW: i64 = 30;
pub const MAX_LIFETIME: i64 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionType {
    Payment,
    Text,
    Authentication,
}

impl PermissionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Payment => "payment.v1",
            Self::Text => "text.v1",
            Self::Authentication => "authentication.v1",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "payment.v1" => Some(Self::Payment),
            "text.v1" => Some(Self::Text),
            "authentication.v1" => Some(Self::Authentication),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loa {
    Substantial,
    High,
}

impl Loa {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Substantial => "sub",
            Self::High => "high",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sub" => Some(Self::Substantial),
            "high" => Some(Self::High),
            _ => None,
        }
    }

    pub fn acr(self) -> &'static str {
        match self {
            Self::Substantial => ACR_SUBSTANTIAL,
            Self::High => ACR_HIGH,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    App2App,
    Ciba,
}

impl Intent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::App2App => "app2app",
            Self::Ciba => "ciba",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "app2app" => Some(Self::App2App),
            "ciba" => Some(Self::Ciba),
            _ => None,
        }
    }

    pub fn required_scope(self) -> &'static str {
        match self {
            Self::App2App => scope::PERMISSIONS_APP2APP,
            Self::Ciba => scope::PERMISSIONS_CIBA,
        }
    }
}

/// A registration that passed every rule.
#[derive(Debug, Clone)]
pub struct NewPermission {
    pub kind: PermissionType,
    pub loa: Loa,
    pub iat: i64,
    pub exp: i64,
    /// The statement exactly as registered (base64url, no padding).
    pub statement: String,
    /// Unpadded base64url SHA-256 of the decoded statement bytes.
    pub digest: String,
    pub nonce: String,
    pub intents: Vec<Intent>,
    pub nnin: Nnin,
    pub app_callback_uri: Option<String>,
    pub acr_values: Vec<String>,
}

impl NewPermission {
    /// The `authentication.v1` permission of a plain `login_hint` authentication (CIBA), so
    /// that every request carries a statement and a digest the app signs: a fresh nonce,
    /// substantial assurance, valid until `exp`.
    pub fn login(nnin: Nnin, now: i64, exp: i64) -> Self {
        let nonce = crate::ids::random_id();
        let statement = serde_json::json!({ "nonce": nonce }).to_string();
        Self {
            kind: PermissionType::Authentication,
            loa: Loa::Substantial,
            iat: now,
            exp,
            digest: sha256_b64url(statement.as_bytes()),
            statement: URL_SAFE_NO_PAD.encode(statement),
            nonce,
            intents: vec![Intent::Ciba],
            nnin,
            app_callback_uri: None,
            acr_values: Vec::new(),
        }
    }
}

fn bad(field: &str, problem: &str) -> OAuthError {
    OAuthError::invalid_request(format!("{field}: {problem}"))
}

fn int(obj: &Map<String, Value>, field: &str) -> Result<i64, OAuthError> {
    obj.get(field)
        .ok_or_else(|| bad(field, "is required"))?
        .as_i64()
        .ok_or_else(|| bad(field, "must be an integer (UNIX seconds)"))
}

/// Decode unpadded base64url strictly (no padding, no other alphabet).
pub fn decode_b64url(field: &str, text: &str) -> Result<Vec<u8>, OAuthError> {
    if text.is_empty()
        || !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(bad(field, "must be unpadded base64url"));
    }
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| bad(field, "must be unpadded base64url"))
}

/// A login hint list: exactly one `{"scheme":"nnin","value":...}` with a valid NNIN.
pub fn parse_login_hint(field: &str, value: Option<&Value>) -> Result<Nnin, OAuthError> {
    let list = value
        .ok_or_else(|| bad(field, "is required"))?
        .as_array()
        .ok_or_else(|| bad(field, "must be an array"))?;
    if list.len() != 1 {
        return Err(bad(field, "must hold exactly one hint"));
    }
    let hint = list[0]
        .as_object()
        .ok_or_else(|| bad(field, "hints must be objects"))?;
    if hint.get("scheme").and_then(Value::as_str) != Some("nnin") {
        return Err(bad(&format!("{field}[0].scheme"), "must be \"nnin\""));
    }
    let raw = hint
        .get("value")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(&format!("{field}[0].value"), "must be a string"))?;
    Nnin::parse(raw).map_err(|e| {
        bad(
            &format!("{field}[0].value"),
            &format!("is not a valid NNIN ({e})"),
        )
    })
}

/// Validate a registration body (contract §4) for `client` at `now`.
pub fn validate_registration(
    body: &Value,
    client: &Client,
    now: i64,
) -> Result<NewPermission, OAuthError> {
    let obj = body
        .as_object()
        .ok_or_else(|| OAuthError::invalid_request("the body must be a JSON object"))?;
    let kind_raw = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("type", "is required"))?;
    let kind = PermissionType::parse(kind_raw)
        .ok_or_else(|| bad("type", "must be payment.v1, text.v1 or authentication.v1"))?;
    if kind == PermissionType::Text && !client.scopes.contains(scope::PERMISSIONS_TEXT) {
        return Err(OAuthError::new(
            crate::error::ErrorCode::UnauthorizedClient,
            "type text.v1 needs scope permissions/text",
        )
        .with_status(403));
    }
    let loa = match obj.get("loa") {
        None | Some(Value::Null) => Loa::Substantial,
        Some(v) => v
            .as_str()
            .and_then(Loa::parse)
            .ok_or_else(|| bad("loa", "must be \"sub\" or \"high\""))?,
    };

    let (iat, exp) = (int(obj, "iat")?, int(obj, "exp")?);
    if iat < now - MAX_IAT_AGE {
        return Err(bad("iat", "is more than 60 seconds in the past"));
    }
    if iat > now + CLOCK_SKEW {
        return Err(bad("iat", "is in the future"));
    }
    if exp <= iat {
        return Err(bad("exp", "must be after iat"));
    }
    if exp > iat + MAX_LIFETIME {
        return Err(bad("exp", "must be at most 3600 seconds after iat"));
    }
    if exp <= now {
        return Err(bad("exp", "is in the past"));
    }

    let statement = obj
        .get("permission")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("permission", "is required"))?;
    let bytes = decode_b64url("permission", statement)?;
    let decoded: Value = crate::json::parse(&bytes).map_err(|e| match e {
        crate::json::JsonError::Syntax => bad("permission", "must encode JSON"),
        other => OAuthError::invalid_request(format!("permission: the statement {other}")),
    })?;
    let nonce = statement::validate(kind, &decoded)?;

    let intents_raw = obj
        .get("intents")
        .ok_or_else(|| bad("intents", "is required"))?
        .as_array()
        .ok_or_else(|| bad("intents", "must be an array"))?;
    let mut intents: Vec<Intent> = Vec::new();
    for v in intents_raw {
        let intent = v
            .as_str()
            .and_then(Intent::parse)
            .ok_or_else(|| bad("intents", "members must be \"app2app\" or \"ciba\""))?;
        if intents.contains(&intent) {
            return Err(bad("intents", "must not repeat a member"));
        }
        if !client.scopes.contains(intent.required_scope()) {
            return Err(OAuthError::new(
                crate::error::ErrorCode::UnauthorizedClient,
                format!(
                    "intent {} needs scope {}",
                    intent.as_str(),
                    intent.required_scope()
                ),
            )
            .with_status(403));
        }
        intents.push(intent);
    }
    if intents.is_empty() {
        return Err(bad("intents", "must name at least one intent"));
    }

    let nnin = parse_login_hint("loginHint", obj.get("loginHint"))?;

    let app_callback_uri = match obj.get("app_callback_uri") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let uri = v
                .as_str()
                .ok_or_else(|| bad("app_callback_uri", "must be a string"))?;
            if !uri.starts_with("https://") {
                return Err(bad("app_callback_uri", "must be an https URI"));
            }
            if !client.has_callback(uri) {
                return Err(bad("app_callback_uri", "is not registered for this client"));
            }
            Some(uri.to_owned())
        }
    };
    if intents.contains(&Intent::App2App) && app_callback_uri.is_none() {
        return Err(bad("app_callback_uri", "is required for intent app2app"));
    }

    let acr_values = match obj.get("acr_values") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => {
            let list = v
                .as_array()
                .ok_or_else(|| bad("acr_values", "must be an array"))?;
            let mut out = Vec::new();
            for a in list {
                let a = a
                    .as_str()
                    .filter(|a| ACR_VALUES.contains(a))
                    .ok_or_else(|| bad("acr_values", "members must be supported acr values"))?;
                out.push(a.to_owned());
            }
            out
        }
    };

    Ok(NewPermission {
        kind,
        loa,
        iat,
        exp,
        statement: statement.to_owned(),
        digest: sha256_b64url(&bytes),
        nonce,
        intents,
        nnin,
        app_callback_uri,
        acr_values,
    })
}

/// A short code both screens can show to bind them: `XXX-XXX` from an unambiguous alphabet.
pub fn binding_message(permission_id: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let h = sha256(permission_id.as_bytes());
    let c: Vec<char> = h
        .iter()
        .take(6)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    format!("{}{}{}-{}{}{}", c[0], c[1], c[2], c[3], c[4], c[5])
}

#[cfg(test)]
mod tests;
