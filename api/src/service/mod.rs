//! The API's use cases, one module per area: each reads through the store, asks the domain,
//! writes, and returns typed results; the handlers in `crate::handlers` authenticate, parse
//! and render. (What the worker shares — a request's decision and expiry — is in the
//! `ciba-service` crate.)

pub mod authorize;
pub mod ciba;
pub mod device_app;
pub mod permissions;
pub mod signed_request;

#[cfg(test)]
mod issued_token_tests;

use crate::error::ApiError;
use ciba_domain::error::OAuthError;

/// A failure that is ours, not the caller's: logged with its detail, answered generically.
pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "{what}");
    OAuthError::server_error().into()
}
