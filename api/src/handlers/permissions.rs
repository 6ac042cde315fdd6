//! The permissions API (contract §4): register, inspect, prove; and user-exists.
//! Bearer access tokens with scope `permissions/client`, checked by the route's
//! `crate::http::guard::merchant` filter; each handler parses, calls
//! `crate::service::permissions` and renders.

use crate::auth::Authenticated;
use crate::error::private_reply;
use crate::http::caller::Caller;
use crate::http::form::json_body;
use crate::http::reply::json_response;
use crate::limits::{self, Limit};
use crate::service::permissions as service;
use crate::state::{now, AppState};
use ciba_domain::permission::{self, binding_message};
use serde_json::json;
use warp::hyper::body::Bytes;
use warp::reply::Response;

pub async fn register(
    state: AppState,
    content_type: Option<String>,
    body: Bytes,
    caller: Caller,
    client: Authenticated,
) -> Response {
    let now = now();
    private_reply(
        async {
            limits::check(&state, Limit::ClientRegistrations, &client.client.id, "POST /permissions/v1/", now).await?;
            let body = json_body(content_type.as_deref(), &body)?;
            let p = permission::validate_registration(&body, &client.client, now)?;
            let r = service::register(&state, &client.client.id, p, caller.origin(), now).await?;
            Ok(json_response(201, &json!({"id": r.id, "permissionToken": r.token, "bindingMessage": binding_message(&r.id)})))
        }
        .await,
    )
}

pub async fn get(state: AppState, id: String, client: Authenticated) -> Response {
    let now = now();
    private_reply(
        async {
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

pub async fn grant(state: AppState, id: String, client: Authenticated) -> Response {
    let now = now();
    private_reply(
        async {
            let jws = service::grant(&state, &client.client.id, id, now).await?;
            Ok(json_response(200, &json!({"grant": jws})))
        }
        .await,
    )
}

pub async fn user_exists(
    state: AppState,
    content_type: Option<String>,
    body: Bytes,
    client: Authenticated,
) -> Response {
    let now = now();
    private_reply(
        async {
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
