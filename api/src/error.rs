//! The one place where errors become HTTP responses. 5xx bodies are generic; their detail
//! goes to the log. A database outage is 503 `temporarily_unavailable` with `Retry-After`.

use crate::http::reply::{json_response, no_store};
use ciba_domain::error::{sanitize_description, ErrorCode, OAuthError};
use ciba_store::StoreError;
use serde_json::json;
use warp::http::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use warp::reply::Response;

/// The one adapter of every endpoint whose answers may carry a token or personal data: the
/// result, or its error in the contract's format, never stored by a cache (RFC 6749 §5.1).
pub fn private_reply(result: ApiResult<Response>) -> Response {
    no_store(result.unwrap_or_else(ApiError::into_response))
}

/// An OAuth error with its code and a fixed description.
pub fn oauth_error(code: ErrorCode, text: &'static str) -> ApiError {
    OAuthError::new(code, text).into()
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub error: OAuthError,
    pub www_authenticate: Option<String>,
    /// Seconds for `Retry-After` (429; 503 defaults to 2).
    pub retry_after: Option<i64>,
}

impl ApiError {
    pub fn new(error: OAuthError) -> Self {
        Self {
            error,
            www_authenticate: None,
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, seconds: i64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn with_challenge(mut self, challenge: impl Into<String>) -> Self {
        self.www_authenticate = Some(challenge.into());
        self
    }

    pub fn code(&self) -> ErrorCode {
        self.error.code
    }

    pub fn into_response(self) -> Response {
        let status = self.error.status();
        let body = json!({
            "error": self.error.code.as_str(),
            "error_description": sanitize_description(&self.error.description),
        });
        let mut resp = json_response(status, &body);
        // For the request log line (`crate::http::routes`), which names the error code.
        resp.extensions_mut().insert(self.error.code);
        let headers = resp.headers_mut();
        if let Some(challenge) = self.www_authenticate {
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                headers.insert(WWW_AUTHENTICATE, v);
            }
        }
        let retry_after = match (self.retry_after, self.error.code) {
            (Some(s), _) => Some(s),
            (None, ErrorCode::TemporarilyUnavailable) => Some(2),
            _ => None,
        };
        if let Some(s) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

impl From<OAuthError> for ApiError {
    fn from(error: OAuthError) -> Self {
        Self::new(error)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "database unavailable");
                OAuthError::unavailable().into()
            }
            StoreError::NotFound => OAuthError::not_found("not found").into(),
            StoreError::Conflict(detail) | StoreError::Other(detail) => {
                tracing::error!(error = %detail, "database error");
                OAuthError::server_error().into()
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
