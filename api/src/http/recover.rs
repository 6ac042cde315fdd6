//! warp's own rejections (no route, wrong method, body too large, bad header) in the
//! contract's error format.

use crate::error::ApiError;
use crate::state::AppState;
use ciba_domain::error::{ErrorCode, OAuthError};
use std::convert::Infallible;
use warp::reject::{
    InvalidHeader, InvalidQuery, LengthRequired, MethodNotAllowed, MissingHeader, PayloadTooLarge,
    UnsupportedMediaType,
};
use warp::reply::Response;
use warp::Rejection;

/// A request body over 64 KiB.
#[derive(Debug)]
pub struct BodyTooLarge;
impl warp::reject::Reject for BodyTooLarge {}

/// A request body that could not be read to its end.
#[derive(Debug)]
pub struct BodyUnreadable;
impl warp::reject::Reject for BodyUnreadable {}

pub async fn handle(state: AppState, r: Rejection) -> Result<Response, Infallible> {
    let err = if r.find::<PayloadTooLarge>().is_some() || r.find::<BodyTooLarge>().is_some() {
        OAuthError::new(
            ErrorCode::PayloadTooLarge,
            "request body is larger than 64 KiB",
        )
    } else if r.find::<BodyUnreadable>().is_some() {
        OAuthError::invalid_request("the request body could not be read")
    } else if r.find::<MethodNotAllowed>().is_some() {
        OAuthError::new(ErrorCode::MethodNotAllowed, "method not allowed")
    } else if r.find::<LengthRequired>().is_some() {
        OAuthError::invalid_request("Content-Length is required").with_status(411)
    } else if r.find::<UnsupportedMediaType>().is_some() {
        OAuthError::invalid_request("unsupported content type")
    } else if r.find::<InvalidHeader>().is_some() || r.find::<MissingHeader>().is_some() {
        OAuthError::invalid_request("a request header is missing or malformed")
    } else if r.find::<InvalidQuery>().is_some() {
        OAuthError::invalid_request("the query string is malformed")
    } else if r.is_not_found() {
        OAuthError::not_found("no such resource")
    } else {
        tracing::error!(rejection = ?r, "unhandled rejection");
        OAuthError::server_error()
    };
    let resp = ApiError::new(err).into_response();
    state
        .metrics
        .observe("unmatched", "-", resp.status().as_u16(), 0.0);
    Ok(resp)
}
