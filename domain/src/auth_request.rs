//! Authentication requests: their states, how long they live, and what a decision carries.

use crate::error::{ErrorCode, OAuthError};

pub const PENDING: &str = "pending";
pub const APPROVED: &str = "approved";
pub const DECLINED: &str = "declined";
pub const EXPIRED: &str = "expired";

/// RFC 8176 values an authenticating app may report.
pub const AMR_ALLOWED: &[&str] = &[
    "hwk", "bio", "face", "fpt", "iris", "pin", "user", "mfa", "swk", "pop",
];

/// A stored status read at `now`: pending past its expiry is expired.
pub fn status_at(stored: &str, expires_at: i64, now: i64) -> &str {
    if stored == PENDING && now >= expires_at {
        EXPIRED
    } else {
        stored
    }
}

/// Whether a poll at `now_ms` keeps the interval: the last poll is at least `interval_secs`
/// ago, less `grace_ms` for clock and network jitter (so a well-behaved client is never told
/// to slow down). The database applies the same rule in the polling statements.
pub fn well_paced(
    last_poll_ms: Option<i64>,
    interval_secs: i64,
    now_ms: i64,
    grace_ms: i64,
) -> bool {
    last_poll_ms.is_none_or(|last| last <= now_ms + grace_ms - interval_secs * 1000)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Decline,
}

impl Decision {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "approve" => Some(Self::Approve),
            "decline" => Some(Self::Decline),
            _ => None,
        }
    }

    /// The request status this decision leads to.
    pub fn status(self) -> &'static str {
        match self {
            Self::Approve => APPROVED,
            Self::Decline => DECLINED,
        }
    }
}

/// Parse `requested_expiry` (CIBA §7.1): a positive whole number of seconds.
pub fn parse_requested_expiry(raw: Option<&str>) -> Result<Option<i64>, OAuthError> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.is_empty() || raw.len() > 9 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(OAuthError::invalid_request(
            "requested_expiry must be a positive whole number of seconds",
        ));
    }
    let v: i64 = raw
        .parse()
        .map_err(|_| OAuthError::invalid_request("requested_expiry is malformed"))?;
    if v == 0 {
        return Err(OAuthError::invalid_request(
            "requested_expiry must be positive",
        ));
    }
    Ok(Some(v))
}

/// When a request started at `now` expires: what was asked (or the default), never beyond
/// the server maximum nor the permission's own `exp`.
pub fn expiry(
    now: i64,
    requested: Option<i64>,
    default_ttl: i64,
    max_ttl: i64,
    permission_exp: i64,
) -> i64 {
    let ttl = requested.unwrap_or(default_ttl).min(max_ttl);
    (now + ttl).min(permission_exp)
}

/// `client_notification_token` (CIBA §7.1): a bearer token of at most 1024 characters.
pub fn validate_notification_token(token: &str) -> Result<(), OAuthError> {
    let ok =
        !token.is_empty() && token.len() <= 1024 && token.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(
            "client_notification_token must be 1 to 1024 printable ASCII characters",
        ))
    }
}

/// `binding_message` (CIBA §7.1): short, plain text the user can compare on both screens.
pub fn validate_binding_message(text: &str) -> Result<(), OAuthError> {
    let n = text.chars().count();
    if n == 0 || n > 64 {
        return Err(OAuthError::new(
            ErrorCode::InvalidBindingMessage,
            "binding_message must be 1 to 64 characters of plain text",
        ));
    }
    if let Some(hidden) = crate::text::first_hidden(text, &[]) {
        return Err(OAuthError::new(
            ErrorCode::InvalidBindingMessage,
            format!("binding_message must not contain {hidden}"),
        ));
    }
    Ok(())
}

/// The `amr` a decision reports: a subset of [`AMR_ALLOWED`]; `None` when it says nothing
/// (then [`crate::assurance::decision_amr`] uses what the server knows).
pub fn validate_amr(amr: Option<&serde_json::Value>) -> Result<Option<Vec<String>>, OAuthError> {
    let Some(v) = amr else {
        return Ok(None);
    };
    let list = v
        .as_array()
        .ok_or_else(|| OAuthError::invalid_request("amr must be an array"))?;
    let mut out = Vec::new();
    for a in list {
        let a = a
            .as_str()
            .filter(|a| AMR_ALLOWED.contains(a))
            .ok_or_else(|| OAuthError::invalid_request("amr holds an unknown value"))?;
        if !out.iter().any(|x| x == a) {
            out.push(a.to_owned());
        }
    }
    if out.is_empty() {
        return Err(OAuthError::invalid_request("amr must not be empty"));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pacing_allows_the_interval_less_the_grace() {
        assert!(well_paced(None, 5, 1_000, 500), "a first poll");
        assert!(well_paced(Some(0), 5, 5_000, 500));
        assert!(well_paced(Some(0), 5, 4_500, 500), "within the grace");
        assert!(!well_paced(Some(0), 5, 4_499, 500), "too early");
        assert!(
            !well_paced(Some(10_000), 1, 10_000, 500),
            "the same instant"
        );
    }

    #[test]
    fn expiry_is_clamped() {
        assert_eq!(expiry(1000, None, 300, 600, 5000), 1300);
        assert_eq!(expiry(1000, Some(10_000), 300, 600, 5000), 1600);
        assert_eq!(
            expiry(1000, Some(120), 300, 600, 1100),
            1100,
            "never beyond the permission"
        );
    }

    #[test]
    fn status_follows_the_clock() {
        assert_eq!(status_at(PENDING, 100, 99), PENDING);
        assert_eq!(status_at(PENDING, 100, 100), EXPIRED);
        assert_eq!(status_at(APPROVED, 100, 500), APPROVED);
    }

    #[test]
    fn parses_inputs() {
        assert_eq!(parse_requested_expiry(Some("300")).unwrap(), Some(300));
        for bad in ["0", "-5", "1.5", "abc", "9999999999"] {
            assert!(parse_requested_expiry(Some(bad)).is_err(), "{bad}");
        }
        assert!(validate_notification_token("abc-123").is_ok());
        assert!(validate_notification_token("has space").is_err());
        assert!(validate_notification_token(&"x".repeat(1025)).is_err());
        assert!(validate_binding_message("K7Q-4MX").is_ok());
        assert_eq!(
            validate_binding_message(&"x".repeat(65)).unwrap_err().code,
            ErrorCode::InvalidBindingMessage
        );
        assert_eq!(validate_amr(None).unwrap(), None);
        assert_eq!(
            validate_amr(Some(&json!(["face", "hwk", "face"]))).unwrap(),
            Some(vec!["face".to_owned(), "hwk".to_owned()])
        );
        assert!(validate_amr(Some(&json!(["magic"]))).is_err());
        assert!(validate_amr(Some(&json!([]))).is_err());
    }
}
