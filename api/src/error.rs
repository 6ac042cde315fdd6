//! The one place where errors become HTTP responses. 5xx bodies are generic; their detail
//! goes to the log. A database outage is 503 `temporarily_unavailable` with `Retry-After`.

use crate::http::reply::json_response;
use ciba_domain::error::{sanitize_description, ErrorCode, OAuthError};
use ciba_store::StoreError;
use serde_json::json;
use warp::http::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use warp::reply::Response;

#[derive(Debug)]
pub struct ApiError {
    pub error: OAuthError,
    pub www_authenticate: Option<String>,
}

impl ApiError {
    pub fn new(error: OAuthError) -> Self {
        Self {
            error,
            www_authenticate: None,
        }
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
        let headers = resp.headers_mut();
        if let Some(challenge) = self.www_authenticate {
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                headers.insert(WWW_AUTHENTICATE, v);
            }
        }
        if self.error.code == ErrorCode::TemporarilyUnavailable {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
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
