//! Authentication requests: their states, how long they live, and what a decision carries.

use crate::error::{ErrorCode, OAuthError};
use crate::status::RequestStatus;

/// RFC 8176 values an authenticating app may report.
pub const AMR_ALLOWED: &[&str] = &[
    "hwk", "bio", "face", "fpt", "iris", "pin", "user", "mfa", "swk", "pop",
];

/// Whether a poll at `now_ms` keeps the interval: the last poll is at least `interval_secs`
/// ago, less `grace_ms` for clock and network jitter (so a well-behaved client is never told
/// to slow down). The last poll is the last well-paced one (answered
/// `authorization_pending`): a too-early poll only grows the interval. The database applies
/// the same rule in the polling statements.
pub fn well_paced(
    last_poll_ms: Option<i64>,
    interval_secs: i64,
    now_ms: i64,
    grace_ms: i64,
) -> bool {
    last_poll_ms.is_none_or(|last| last <= now_ms + grace_ms - interval_secs * 1000)
}

/// The interval never grows beyond this many seconds.
pub const MAX_INTERVAL_SECS: i64 = 60;

/// The interval after a poll that came too fast: 5 s longer (RFC 8628 §3.5), up to
/// [`MAX_INTERVAL_SECS`] (an interval configured longer stays as it is). The database applies
/// the same rule in the polling statements.
pub fn slowed_interval(interval_secs: i64) -> i64 {
    if interval_secs < MAX_INTERVAL_SECS {
        (interval_secs + 5).min(MAX_INTERVAL_SECS)
    } else {
        interval_secs
    }
}

/// What the token endpoint does with a poll of a request it has read (contract §3): the
/// CIBA grant as a state machine. The fast path (a well-paced poll of a pending request) is
/// settled in the database before this is asked; this is the careful path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollStep {
    /// Approved and unredeemed: issue the tokens, then redeem exactly once.
    Redeem,
    /// `invalid_grant`: the request was redeemed before.
    AlreadyRedeemed,
    /// `access_denied`.
    Declined,
    /// `expired_token`; `mark`: the stored row still says pending (record the expiry).
    Expired { mark: bool },
    /// Pending and well paced: record the poll (waiting for the row), then
    /// `authorization_pending`; if the row changed meanwhile, read it again.
    RecordPoll,
    /// Pending and too fast: `slow_down`, and the interval grows.
    SlowDown,
}

/// What a poll at `now_ms` leads to, for a request in `stored` status. `waited`: this poll
/// has already waited for the row once (it is not told to wait again but to slow down).
pub struct PolledRequest<'a> {
    pub stored: &'a str,
    pub expires_at: i64,
    pub redeemed: bool,
    pub last_poll_ms: Option<i64>,
    pub interval_secs: i64,
}

impl PolledRequest<'_> {
    pub fn step(&self, now_ms: i64, grace_ms: i64, waited: bool) -> PollStep {
        let now = now_ms.div_euclid(1000);
        if self.redeemed {
            return PollStep::AlreadyRedeemed;
        }
        match RequestStatus::at(self.stored, self.expires_at, now) {
            // Approved, but not redeemed in time: expired like any request.
            RequestStatus::Approved if now >= self.expires_at => PollStep::Expired { mark: false },
            RequestStatus::Approved => PollStep::Redeem,
            RequestStatus::Declined => PollStep::Declined,
            RequestStatus::Expired => PollStep::Expired {
                mark: self.stored == RequestStatus::Pending.as_str(),
            },
            RequestStatus::Pending
                if !waited
                    && well_paced(self.last_poll_ms, self.interval_secs, now_ms, grace_ms) =>
            {
                PollStep::RecordPoll
            }
            RequestStatus::Pending => PollStep::SlowDown,
        }
    }
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

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Decline => "decline",
        }
    }

    /// The request status this decision leads to.
    pub fn status(self) -> RequestStatus {
        match self {
            Self::Approve => RequestStatus::Approved,
            Self::Decline => RequestStatus::Declined,
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
        assert_eq!(slowed_interval(5), 10);
        assert_eq!(slowed_interval(55), 60);
        assert_eq!(slowed_interval(57), 60);
        assert_eq!(
            slowed_interval(90),
            90,
            "a longer configured interval stays"
        );
        assert_eq!(slowed_interval(60), 60, "never beyond the maximum");
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
    fn the_grant_follows_the_request() {
        let r = |stored, redeemed, last| PolledRequest {
            stored,
            expires_at: 100,
            redeemed,
            last_poll_ms: last,
            interval_secs: 5,
        };
        let at = 50_000;
        assert_eq!(
            r("approved", false, None).step(at, 500, false),
            PollStep::Redeem
        );
        assert_eq!(
            r("approved", true, None).step(at, 500, false),
            PollStep::AlreadyRedeemed
        );
        assert_eq!(
            r("approved", false, None).step(100_000, 500, false),
            PollStep::Expired { mark: false },
            "approved but not redeemed in time"
        );
        assert_eq!(
            r("declined", false, None).step(at, 500, false),
            PollStep::Declined
        );
        assert_eq!(
            r("pending", false, None).step(100_000, 500, false),
            PollStep::Expired { mark: true }
        );
        assert_eq!(
            r("expired", false, None).step(at, 500, false),
            PollStep::Expired { mark: false }
        );
        assert_eq!(
            r("pending", false, None).step(at, 500, false),
            PollStep::RecordPoll
        );
        assert_eq!(
            r("pending", false, None).step(at, 500, true),
            PollStep::SlowDown,
            "waited once already"
        );
        assert_eq!(
            r("pending", false, Some(at - 1_000)).step(at, 500, false),
            PollStep::SlowDown
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
