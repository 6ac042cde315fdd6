//! Liveness, readiness and metrics.

use crate::error::ApiError;
use crate::http::reply::{json_response, text_response};
use crate::state::AppState;
use ciba_domain::error::OAuthError;
use serde_json::json;
use warp::reply::Response;

pub fn healthz() -> Response {
    json_response(200, &json!({"status": "ok"}))
}

pub async fn readyz(state: AppState) -> Response {
    let ready = state.ready().await;
    state.metrics.ready.set(i64::from(ready));
    if ready {
        json_response(200, &json!({"status": "ready"}))
    } else {
        ApiError::new(OAuthError::unavailable()).into_response()
    }
}

pub fn metrics(state: AppState) -> Response {
    state.observe_caches();
    state.metrics.observe_pool(&state.store);
    state
        .metrics
        .observe_signing_keys(&state.keys, crate::state::now());
    text_response(200, "text/plain; version=0.0.4", state.metrics.render())
}
