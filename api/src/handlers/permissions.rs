//! The permissions API (contract §4): register, inspect, prove; and user-exists.
//! Bearer access tokens with scope `permissions/client`. Each handler authenticates the
//! merchant, parses, calls `crate::service::permissions` and renders.

use crate::auth::{self, AuthRequest, Authenticated, Endpoint};
use crate::error::{private_reply, ApiResult};
use crate::http::caller::Caller;
use crate::http::form::json_body;
use crate::http::reply::json_response;
use crate::limits::{self, Limit};
use crate::service::permissions as service;
use crate::state::{now, AppState};
use ciba_domain::permission::{self, binding_message};
use ciba_domain::scope::PERMISSIONS_CLIENT;
use serde_json::json;
use warp::hyper::body::Bytes;
use warp::reply::Response;

async fn merchant(state: &AppState, caller: &Caller, now: i64) -> ApiResult<Authenticated> {
    let endpoint = state.config.endpoint("/permissions/v1/");
    let req = AuthRequest::of(caller, None, &endpoint, Endpoint::Api);
    let client = auth::authenticate(state, req, now).await?;
    client.require_scope(PERMISSIONS_CLIENT)?;
    Ok(client)
}

pub async fn register(
    state: AppState,
    caller: Caller,
    content_type: Option<String>,
    body: Bytes,
) -> Response {
    let now = now();
    private_reply(
        async {
            let client = merchant(&state, &caller, now).await?;
            limits::check(&state, Limit::ClientRegistrations, &client.client.id, "POST /permissions/v1/", now).await?;
            let body = json_body(content_type.as_deref(), &body)?;
            let p = permission::validate_registration(&body, &client.client, now)?;
            let r = service::register(&state, &client.client.id, p, caller.origin(), now).await?;
            Ok(json_response(201, &json!({"id": r.id, "permissionToken": r.token, "bindingMessage": binding_message(&r.id)})))
        }
        .await,
    )
}

pub async fn get(state: AppState, id: String, caller: Caller) -> Response {
    let now = now();
    private_reply(
        async {
            let client = merchant(&state, &caller, now).await?;
            let (p, status) = service::inspect(&state, &client.client.id, id, now).await?;
            let intents: Vec<&str> = p.intents.split(' ').collect();
            Ok(json_response(
                200,
                &json!({"id": p.id, "type": p.kind, "status": status.as_str(), "iat": p.iat, "exp": p.exp, "intents": intents}),
            ))
        }
        .await,
    )
}

pub async fn grant(state: AppState, id: String, caller: Caller) -> Response {
    let now = now();
    private_reply(
        async {
            let client = merchant(&state, &caller, now).await?;
            let jws = service::grant(&state, &client.client.id, id, now).await?;
            Ok(json_response(200, &json!({"grant": jws})))
        }
        .await,
    )
}

pub async fn user_exists(
    state: AppState,
    caller: Caller,
    content_type: Option<String>,
    body: Bytes,
) -> Response {
    let now = now();
    private_reply(
        async {
            let client = merchant(&state, &caller, now).await?;
            limits::check(
                &state,
                Limit::ClientUserExists,
                &client.client.id,
                "POST /permissions/v1/user-exists",
                now,
            )
            .await?;
            let body = json_body(content_type.as_deref(), &body)?;
            let nnin = permission::parse_login_hint("loginHint", body.get("loginHint"))?;
            let exists = service::user_exists(&state, &nnin).await?;
            Ok(json_response(200, &json!({"exists": exists})))
        }
        .await,
    )
}
