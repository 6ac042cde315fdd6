//! Starting an authentication: `POST /oidc/v1/app-authorize` (App2App, contract §5) and
//! `POST /oidc/v1/bc-authorize` (CIBA Core §7). Both verify the permission token, check the
//! scope, resolve the user and store the request together with the token's single use.

use crate::auth::{self, Authenticated, Endpoint, OfferedCredentials};
use crate::error::{oauth_error, private_reply, ApiResult};
use crate::http::caller::Caller;
use crate::http::form::Form;
use crate::http::reply::json_response;
use crate::limits::{self, Limit};
use crate::service::authorize::{
    claim_permission, claim_permission_for_user, hinted_user, key_protections, login_permission,
    start, start_known, usable, verify_permission_token, Start,
};
use crate::service::signed_request;
use crate::state::{now, AppState, RegisteredHere};
use ciba_domain::assurance::{request_acr, KeyProtection};
use ciba_domain::auth_request::{self as req, parse_requested_expiry};
use ciba_domain::client::{Client, DeliveryMode};
use ciba_domain::device::{match_for_app2app, DeviceInfo};
use ciba_domain::error::{ErrorCode, OAuthError};
use ciba_domain::nnin::Nnin;
use ciba_domain::permission::{Intent, Loa};
use ciba_domain::scope::{self, ScopeSet, ID_TOKEN_SCOPES};
use ciba_store::auth_requests::AuthRequestRow;
use ciba_store::permissions::PermissionRow;
use ciba_store::users::DeviceRow;
use serde_json::json;
use std::sync::Arc;
use warp::hyper::body::Bytes;
use warp::reply::Response;

/// `scope` of an authentication (contract §5): must hold `openid`, which the client must be
/// registered for; `profile` and `sub_bankid` are open to every such client; `sub_nnin` only
/// to clients entitled to it (`--sub-nnin`).
fn authentication_scope(raw: Option<&str>, client: &Client) -> ApiResult<ScopeSet> {
    let scopes = ScopeSet::parse(raw.unwrap_or(""))?;
    if !scopes.contains(scope::OPENID) {
        return Err(oauth_error(
            ErrorCode::InvalidScope,
            "scope must contain openid",
        ));
    }
    for s in scopes.iter() {
        let entitled = match s {
            scope::OPENID => client.scopes.contains(s),
            scope::SUB_NNIN => client.sub_nnin,
            _ => ID_TOKEN_SCOPES.contains(&s),
        };
        if !entitled {
            return Err(OAuthError::invalid_scope(format!(
                "the client is not entitled to scope {s}"
            ))
            .into());
        }
    }
    Ok(scopes)
}

fn notification_token(form: &Form, client: &Client) -> ApiResult<Option<String>> {
    match (&client.delivery, form.get("client_notification_token")?) {
        (DeliveryMode::Ping { .. }, None) => Err(oauth_error(
            ErrorCode::InvalidRequest,
            "client_notification_token is required for ping clients",
        )),
        (DeliveryMode::Ping { .. }, Some(t)) => {
            req::validate_notification_token(t)?;
            Ok(Some(t.to_owned()))
        }
        (DeliveryMode::Poll, _) => Ok(None),
    }
}

/// The request's `acr`: `acr_values` of the request (or else of the permission), the
/// permission's `loa` as the floor, refused up front when none of `devices` can reach it.
fn acr_of(
    form: &Form,
    permission: &PermissionRow,
    devices: &[KeyProtection],
) -> ApiResult<&'static str> {
    let asked = match form.get("acr_values")? {
        Some(v) => v.to_owned(),
        None => permission.acr_values.clone().unwrap_or_default(),
    };
    let asked: Vec<&str> = asked.split(' ').filter(|a| !a.is_empty()).collect();
    let loa = Loa::parse(&permission.loa).unwrap_or(Loa::Substantial);
    Ok(request_acr(loa, &asked, devices)?)
}

const APP_AUTHORIZE: &str = "POST /oidc/v1/app-authorize";
const BC_AUTHORIZE: &str = "POST /oidc/v1/bc-authorize";

/// One of the two endpoints that start an authentication.
struct Starter {
    path: &'static str,
    /// The route, as metrics and limits name it.
    route: &'static str,
    /// Where client credentials are presented (contract §2: secrets and certificates at the
    /// backchannel endpoint only).
    kind: Endpoint,
    scope: &'static str,
}

const APP: Starter = Starter {
    path: "/oidc/v1/app-authorize",
    route: APP_AUTHORIZE,
    kind: Endpoint::Api,
    scope: scope::PERMISSIONS_APP2APP,
};

const BC: Starter = Starter {
    path: "/oidc/v1/bc-authorize",
    route: BC_AUTHORIZE,
    kind: Endpoint::Grant,
    scope: scope::PERMISSIONS_CIBA,
};

/// What both start with: the form, the client authenticated (contract §2) with the scope the
/// endpoint needs, and the client's start limit (contract §10).
async fn open(
    state: &AppState,
    content_type: Option<&str>,
    caller: &Caller,
    body: &[u8],
    at: &Starter,
    now: i64,
) -> ApiResult<(Form, Authenticated)> {
    let form = Form::parse(content_type, body)?;
    let endpoint = state.config.endpoint(at.path);
    let req = OfferedCredentials::of(caller, Some(&form), &endpoint, at.kind);
    let client = auth::authenticate(state, req, now).await?;
    client.require_scope(at.scope)?;
    limits::check(state, Limit::ClientStarts, &client.client.id, at.route, now).await?;
    Ok((form, client))
}

pub async fn app_authorize(
    state: AppState,
    content_type: Option<String>,
    caller: Caller,
    body: Bytes,
) -> Response {
    let now = now();
    let result = async {
        let (form, client) =
            open(&state, content_type.as_deref(), &caller, &body, &APP, now).await?;
        let token = form.require("login_hint_token")?;
        let scope = authentication_scope(form.get("scope")?, &client.client)?;
        let device = DeviceInfo::from_b64url("device_info", form.require("device_info")?)?;
        let requested_expiry = parse_requested_expiry(form.get("requested_expiry")?)?;
        let notification_token = notification_token(&form, &client.client)?;
        let permission_id = verify_permission_token(&state, token, &client.client, now)?;
        let request = |permission, user_sub, acr, matched| Start {
            client: &client,
            acr,
            permission,
            user_sub,
            scope: scope.clone(),
            flow: Intent::App2App,
            allowed_devices: Some(matched),
            requested_expiry,
            notification_token: notification_token.clone(),
            binding_message: None,
            new_permission: None,
            origin: caller.origin(),
        };
        // Registered through this process: its user and their phones are known, so the
        // token's claim and the start are one step (which checks the phones are still those).
        // A phone that does not match, or anything that moved, takes the way below: the
        // token is used up before the answer says anything about the user's phones.
        let known = registered_here(
            &state,
            &permission_id,
            &client.client,
            Intent::App2App,
            APP_AUTHORIZE,
            now,
        )
        .await?;
        let counted = known.is_some();
        if let Some(known) = known {
            if let Ok((matched, acr)) =
                matched_and_acr(&form, &device, &known.permission, &known.devices)
            {
                let s = request(
                    known.permission.clone(),
                    known.user_sub.clone(),
                    acr,
                    matched,
                );
                if let Some(row) = start_known(&state, s, &known.devices, now).await? {
                    return Ok(started(&state, &row, now));
                }
            }
        }
        let (permission, (user_sub, devices)) =
            claim_permission_for_user(&state, permission_id, &client.client, Intent::App2App, now)
                .await?;
        // Counted before the device match: guessing a user's phone model spends the user's
        // budget too, not only the client's registrations.
        if !counted {
            limits::check(&state, Limit::UserStarts, &user_sub, APP_AUTHORIZE, now).await?;
        }
        let (matched, acr) = matched_and_acr(&form, &device, &permission, &devices)?;
        let row = start(&state, request(permission, user_sub, acr, matched), now).await?;
        Ok(started(&state, &row, now))
    }
    .await;
    private_reply(result)
}

/// The permission `id` as it was registered through this process, if it was and its token
/// may start a request of `client` with `intent` now, taken out of memory, with the user's
/// start counted (contract §10) like any start's: then the claim and the start may be one
/// step ([`start_known`]). The start limit is counted before the phones are looked at; a
/// refused start uses the token up all the same.
async fn registered_here(
    state: &AppState,
    id: &str,
    client: &Client,
    intent: Intent,
    route: &'static str,
    now: i64,
) -> ApiResult<Option<Arc<RegisteredHere>>> {
    let Some(known) = state.registered_here.get(id) else {
        return Ok(None);
    };
    if known.permission.client_id != client.id || usable(&known.permission, intent, now).is_err() {
        return Ok(None);
    }
    state.registered_here.take(id);
    if let Err(refused) = limits::check(state, Limit::UserStarts, &known.user_sub, route, now).await
    {
        // The token is used up by a refused start, as on the way that claims it first.
        let _ = claim_permission(state, id.to_owned(), client, intent, now).await;
        return Err(refused);
    }
    Ok(Some(known))
}

/// The user's devices that match the app's phone (App2App) and the acr the request gets.
fn matched_and_acr(
    form: &Form,
    device: &DeviceInfo,
    permission: &PermissionRow,
    devices: &[DeviceRow],
) -> ApiResult<(Vec<String>, &'static str)> {
    let enrolled = devices.iter().map(|d| {
        let info = DeviceInfo {
            platform: d.platform.clone(),
            manufacturer: d.manufacturer.clone(),
            model: d.model.clone(),
        };
        (d.id.as_str(), info)
    });
    let matched = match_for_app2app(device, enrolled)?;
    let keys = key_protections(devices.iter().filter(|d| matched.contains(&d.id)));
    let acr = acr_of(form, permission, &keys)?;
    Ok((matched, acr))
}

/// app-authorize's answer for the request `row` (contract §5).
fn started(state: &AppState, row: &AuthRequestRow, now: i64) -> Response {
    let uri = format!(
        "{}/app2app/authorize?ref={}",
        state.config.app_link_base_url, row.link_ref
    );
    json_response(
        200,
        &json!({"authorize_uri": uri, "auth_req_id": row.id, "expires_in": row.expires_at - now, "interval": row.interval_secs}),
    )
}

pub async fn bc_authorize(
    state: AppState,
    content_type: Option<String>,
    caller: Caller,
    body: Bytes,
) -> Response {
    let now = now();
    let result = async {
        let (form, client) =
            open(&state, content_type.as_deref(), &caller, &body, &BC, now).await?;
        let endpoint = state.config.endpoint(BC.path);
        let form = signed_request::parameters(&state, form, &client.client, &endpoint, now).await?;
        let hints = ["login_hint_token", "login_hint", "id_token_hint"];
        let given: Vec<&str> = hints
            .iter()
            .copied()
            .filter(|h| matches!(form.get(h), Ok(Some(_))))
            .collect();
        if given.len() != 1 {
            return Err(oauth_error(
                ErrorCode::InvalidRequest,
                "exactly one of login_hint_token and login_hint is required",
            ));
        }
        let scope = authentication_scope(form.get("scope")?, &client.client)?;
        let binding = form.get("binding_message")?.map(str::to_owned);
        if let Some(b) = &binding {
            req::validate_binding_message(b)?;
        }
        let requested_expiry = parse_requested_expiry(form.get("requested_expiry")?)?;
        let notification_token = notification_token(&form, &client.client)?;
        let request = |permission, user_sub, acr, new_permission| Start {
            client: &client,
            acr,
            permission,
            user_sub,
            scope: scope.clone(),
            flow: Intent::Ciba,
            allowed_devices: None,
            requested_expiry,
            notification_token: notification_token.clone(),
            binding_message: binding.clone(),
            new_permission,
            origin: caller.origin(),
        };
        let mut counted = false;
        let (permission, new_permission) = match given[0] {
            "login_hint_token" => {
                let id = verify_permission_token(
                    &state,
                    form.require("login_hint_token")?,
                    &client.client,
                    now,
                )?;
                // Registered through this process: the claim and the start in one step, as
                // app-authorize does.
                let known =
                    registered_here(&state, &id, &client.client, Intent::Ciba, BC_AUTHORIZE, now)
                        .await?;
                counted = known.is_some();
                if let Some(known) = known {
                    let keys = key_protections(known.devices.iter());
                    if let Ok(acr) = acr_of(&form, &known.permission, &keys) {
                        let s =
                            request(known.permission.clone(), known.user_sub.clone(), acr, None);
                        if let Some(row) = start_known(&state, s, &known.devices, now).await? {
                            return Ok(backchannel_started(&row, now));
                        }
                    }
                }
                (
                    claim_permission(&state, id, &client.client, Intent::Ciba, now).await?,
                    None,
                )
            }
            "login_hint" => {
                // CIBA §13: nothing else tells the user which request to approve.
                if binding.is_none() {
                    return Err(oauth_error(
                        ErrorCode::InvalidBindingMessage,
                        "binding_message is required with login_hint",
                    ));
                }
                let nnin = Nnin::parse(form.require("login_hint")?).map_err(|_| {
                    oauth_error(ErrorCode::UnknownUserId, "login_hint is not a valid NNIN")
                })?;
                let (p, nonce_hash) = login_permission(&state, &client.client, &nnin, now);
                (p, Some(nonce_hash))
            }
            _ => {
                return Err(oauth_error(
                    ErrorCode::InvalidRequest,
                    "id_token_hint is not supported",
                ))
            }
        };
        let user = hinted_user(&state, &permission).await;
        if new_permission.is_some()
            && user
                .as_ref()
                .is_err_and(|e| e.code() == ErrorCode::UnknownUserId)
        {
            // A plain login_hint answers whether an NNIN is enrolled, like user-exists: it
            // spends the same budget, so it is no way around that limit.
            limits::check(
                &state,
                Limit::ClientUserExists,
                &client.client.id,
                BC_AUTHORIZE,
                now,
            )
            .await?;
        }
        let (user_sub, devices) = user?;
        let acr = acr_of(&form, &permission, &key_protections(devices.iter()))?;
        if !counted {
            limits::check(&state, Limit::UserStarts, &user_sub, BC_AUTHORIZE, now).await?;
        }
        let row = start(
            &state,
            request(permission, user_sub, acr, new_permission),
            now,
        )
        .await?;
        Ok(backchannel_started(&row, now))
    }
    .await;
    private_reply(result)
}

/// bc-authorize's answer for the request `row` (CIBA Core §7.3).
fn backchannel_started(row: &AuthRequestRow, now: i64) -> Response {
    json_response(
        200,
        &json!({"auth_req_id": row.id, "expires_in": row.expires_at - now, "interval": row.interval_secs}),
    )
}
