//! Response helpers.

use serde::Serialize;
use warp::http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use warp::http::StatusCode;
use warp::reply::Response;

pub fn json_response(status: u16, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(bytes.into());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub fn text_response(status: u16, content_type: &'static str, body: String) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Token responses must not be cached (RFC 6749 §5.1).
pub fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// Public documents (discovery, JWKS) may be cached briefly.
pub fn cache_public(mut resp: Response, seconds: u32) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={seconds}")) {
        resp.headers_mut().insert(CACHE_CONTROL, v);
    }
    resp
}

/// An HTML page of this server: its Content-Security-Policy, never framed (its buttons and
/// links cannot be clickjacked), no Referer sent from it (a URL may carry a `ref`), its type
/// not sniffed.
pub fn html_page(status: u16, csp: &'static str, body: String) -> Response {
    let mut resp = text_response(status, "text/html; charset=utf-8", body);
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(csp));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}
