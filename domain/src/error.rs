//! OAuth 2.0 / CIBA error codes and the error type every layer above the store speaks.

use std::borrow::Cow;
use std::fmt;

/// Every error code the contract can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    InsufficientScope,
    InvalidToken,
    AuthorizationPending,
    SlowDown,
    ExpiredToken,
    AccessDenied,
    ExpiredLoginHintToken,
    UnknownUserId,
    DeviceMismatch,
    InvalidBindingMessage,
    RequestNotPending,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    TooManyRequests,
    TemporarilyUnavailable,
    ServerError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InsufficientScope => "insufficient_scope",
            Self::InvalidToken => "invalid_token",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::ExpiredToken => "expired_token",
            Self::AccessDenied => "access_denied",
            Self::ExpiredLoginHintToken => "expired_login_hint_token",
            Self::UnknownUserId => "unknown_user_id",
            Self::DeviceMismatch => "device_mismatch",
            Self::InvalidBindingMessage => "invalid_binding_message",
            Self::RequestNotPending => "request_not_pending",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "request_too_large",
            Self::TooManyRequests => "too_many_requests",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::ServerError => "server_error",
        }
    }

    /// The HTTP status this code is answered with unless a caller overrides it.
    pub fn default_status(self) -> u16 {
        match self {
            Self::InvalidClient | Self::InvalidToken => 401,
            Self::InsufficientScope => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::RequestNotPending => 409,
            Self::PayloadTooLarge => 413,
            Self::TooManyRequests => 429,
            Self::TemporarilyUnavailable => 503,
            Self::ServerError => 500,
            _ => 400,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answered to a caller: a code, a human description and, where the standard
/// wants it, an HTTP status other than the code's default.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
    pub status: Option<u16>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
            status: None,
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn status(&self) -> u16 {
        self.status.unwrap_or_else(|| self.code.default_status())
    }

    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    pub fn invalid_client(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, description)
    }

    pub fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }

    pub fn invalid_scope(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidScope, description)
    }

    pub fn not_found(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::NotFound, description)
    }

    pub fn unavailable() -> Self {
        Self::new(
            ErrorCode::TemporarilyUnavailable,
            "the service is briefly unavailable; retry later",
        )
    }

    pub fn server_error() -> Self {
        Self::new(ErrorCode::ServerError, "internal error")
    }
}

/// Error descriptions must be printable ASCII without CR, LF or TAB (RFC 6749 §5.2).
pub fn sanitize_description(text: &str) -> String {
    text.chars()
        .map(|c| {
            if (' '..='~').contains(&c) && c != '"' && c != '\\' {
                c
            } else {
                '?'
            }
        })
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_printable_ascii() {
        let s = sanitize_description("bad\r\nvalue\t\"x\" ø");
        assert_eq!(s, "bad??value??x? ?");
        assert!(s.chars().all(|c| (' '..='~').contains(&c)));
    }

    #[test]
    fn statuses_follow_the_contract() {
        assert_eq!(OAuthError::invalid_client("x").status(), 401);
        assert_eq!(OAuthError::invalid_grant("x").status(), 400);
        assert_eq!(OAuthError::unavailable().status(), 503);
        assert_eq!(
            OAuthError::new(ErrorCode::AccessDenied, "x")
                .with_status(403)
                .status(),
            403
        );
    }
}
