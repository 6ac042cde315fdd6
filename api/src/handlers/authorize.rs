//! Starting an authentication: `POST /oidc/v1/app-authorize` (App2App, contract §5) and
//! `POST /oidc/v1/bc-authorize` (CIBA Core §7). Both verify the permission token, check the
//! scope, resolve the user and store the request together with the token's single use.

use crate::auth::{self, AuthRequest, Authenticated};
use crate::error::{ApiError, ApiResult};
use crate::http::caller::Caller;
use crate::http::form::Form;
use crate::http::reply::{json_response, no_store};
use crate::limits::{self, Limit};
use crate::state::{now, AppState};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_domain::assurance::{request_acr, KeyProtection};
use ciba_domain::auth_request::{self as req, expiry, parse_requested_expiry};
use ciba_domain::client::{Client, DeliveryMode};
use ciba_domain::device::{match_for_app2app, DeviceInfo};
use ciba_domain::error::{ErrorCode, OAuthError};
use ciba_domain::ids::random_id;
use ciba_domain::nnin::Nnin;
use ciba_domain::permission::{binding_message, Intent, Loa};
use ciba_domain::scope::{self, ScopeSet, ID_TOKEN_SCOPES};
use ciba_domain::secret::sha256_b64url;
use ciba_domain::status::{PermissionStatus, RequestStatus};
use ciba_runtime::crypto::jwt::{self, Expect, LEEWAY, TYP_PERMISSION_TOKEN};
use ciba_runtime::crypto::keyring::Purpose;
use ciba_store::auth_requests::{self as requests, AuthRequestRow};
use ciba_store::permissions::{self as perms, Insert, PermissionRow};
use ciba_store::users::{self, DeviceRow};
use serde_json::{json, Value};
use warp::hyper::body::Bytes;
use warp::reply::Response;

fn err(code: ErrorCode, text: &'static str) -> ApiError {
    OAuthError::new(code, text).into()
}

/// Verify a permission token of ours and return its permission id.
fn verify_permission_token(
    state: &AppState,
    token: &str,
    client: &Client,
    now: i64,
) -> ApiResult<String> {
    let invalid = || {
        err(
            ErrorCode::InvalidRequest,
            "login_hint_token is not a valid permission token",
        )
    };
    let claims = state
        .keys
        .verify(token, Purpose::Oidc, TYP_PERMISSION_TOKEN, now)
        .map_err(|_| invalid())?;
    if claims
        .get("exp")
        .and_then(Value::as_i64)
        .is_some_and(|exp| exp + LEEWAY <= now)
    {
        return Err(err(
            ErrorCode::ExpiredLoginHintToken,
            "the permission token has expired",
        ));
    }
    let issuer = state.config.issuer.as_str();
    jwt::check_claims(
        &claims,
        &Expect {
            issuer: Some(issuer),
            audiences: &[issuer],
            now,
            max_lifetime: None,
            require_jti: true,
        },
    )
    .map_err(|_| invalid())?;
    if claims.get("client_id").and_then(Value::as_str) != Some(client.id.as_str()) {
        return Err(err(
            ErrorCode::InvalidRequest,
            "login_hint_token was issued to another client",
        ));
    }
    claims
        .get("permission_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(invalid)
}

/// The permission behind a token: owned, with `intent`, pending, unexpired, unused.
async fn usable_permission(
    state: &AppState,
    id: String,
    client: &Client,
    intent: Intent,
    now: i64,
) -> ApiResult<PermissionRow> {
    let client_id = client.id.clone();
    let p = state
        .db(move |c| perms::find_owned(c, &id, &client_id))
        .await?
        .ok_or_else(|| {
            err(
                ErrorCode::InvalidRequest,
                "login_hint_token names no permission of this client",
            )
        })?;
    if !p.intents.split(' ').any(|i| i == intent.as_str()) {
        return Err(OAuthError::invalid_request(format!(
            "the permission does not have intent {}",
            intent.as_str()
        ))
        .into());
    }
    if p.status_at(now) == PermissionStatus::Expired {
        return Err(err(
            ErrorCode::ExpiredLoginHintToken,
            "the permission has expired",
        ));
    }
    if p.status != PermissionStatus::Pending.as_str() || p.token_used_at.is_some() {
        return Err(err(
            ErrorCode::InvalidRequest,
            "login_hint_token was already used",
        ));
    }
    Ok(p)
}

/// `scope` of an authentication (contract §5): must hold `openid`, which the client must be
/// registered for; `profile` and `sub_bankid` are open to every such client; `sub_nnin` only
/// to clients entitled to it (`--sub-nnin`).
fn authentication_scope(raw: Option<&str>, client: &Client) -> ApiResult<ScopeSet> {
    let scopes = ScopeSet::parse(raw.unwrap_or(""))?;
    if !scopes.contains(scope::OPENID) {
        return Err(err(ErrorCode::InvalidScope, "scope must contain openid"));
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
        (DeliveryMode::Ping { .. }, None) => Err(err(
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

/// The user behind a permission, who must have at least one active device.
async fn hinted_user(
    state: &AppState,
    p: &PermissionRow,
) -> ApiResult<(String, Vec<ciba_store::users::DeviceRow>)> {
    let (known, nnin) = (p.user_sub.clone(), p.login_hint.clone());
    let found = state
        .db(move |c| {
            let sub = match known {
                Some(s) => Some(s),
                None => users::find_by_nnin(c, &nnin)?.map(|u| u.sub),
            };
            match sub {
                Some(s) => Ok(Some((s.clone(), users::active_devices_of(c, &s)?))),
                None => Ok(None),
            }
        })
        .await?;
    match found {
        Some((sub, devices)) if !devices.is_empty() => Ok((sub, devices)),
        _ => Err(err(
            ErrorCode::UnknownUserId,
            "the hinted user has no active enrolled device",
        )),
    }
}

fn key_protections<'a>(devices: impl Iterator<Item = &'a DeviceRow>) -> Vec<KeyProtection> {
    devices
        .map(|d| KeyProtection::parse(&d.key_protection).unwrap_or(KeyProtection::Software))
        .collect()
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

/// Contract §5: a request that got past client authentication and token verification uses
/// the token up, whatever its answer. Claimed with a conditional update before anything about
/// the user or their phones is looked at, so parallel calls with one token cannot each learn
/// something (one phone model per call): exactly one of them gets past this point.
async fn claim_token(state: &AppState, permission: &PermissionRow, now: i64) -> ApiResult<()> {
    let id = permission.id.clone();
    if !state
        .db_write_one(move |c| perms::use_token(c, &id, now))
        .await?
    {
        return Err(err(
            ErrorCode::InvalidRequest,
            "login_hint_token was already used",
        ));
    }
    Ok(())
}

struct Start<'a> {
    client: &'a Authenticated,
    /// What the request must reach (contract §3, [`ciba_domain::assurance`]).
    acr: &'static str,
    permission: PermissionRow,
    user_sub: String,
    scope: ScopeSet,
    flow: Intent,
    allowed_devices: Option<Vec<String>>,
    requested_expiry: Option<i64>,
    notification_token: Option<String>,
    binding_message: Option<String>,
    /// A permission made for a plain `login_hint`, stored with the request.
    new_permission: Option<String>,
}

async fn start(state: &AppState, s: Start<'_>, now: i64) -> ApiResult<AuthRequestRow> {
    let cfg = &state.config;
    let expires_at = expiry(
        now,
        s.requested_expiry,
        cfg.auth_request_ttl,
        cfg.auth_request_max_ttl,
        s.permission.exp,
    );
    let row = AuthRequestRow {
        id: random_id(),
        link_ref: random_id(),
        client_id: s.client.client.id.clone(),
        permission_id: Some(s.permission.id.clone()),
        user_sub: s.user_sub,
        flow: s.flow.as_str().into(),
        scope: s.scope.to_string(),
        acr: s.acr.into(),
        binding_message: Some(
            s.binding_message
                .unwrap_or_else(|| binding_message(&s.permission.id)),
        ),
        client_notification_token: s.notification_token,
        allowed_devices: s
            .allowed_devices
            .map(|d| serde_json::to_string(&d).unwrap_or_default()),
        status: RequestStatus::Pending.as_str().into(),
        interval_secs: cfg.poll_interval,
        last_poll_ms: None,
        created_at: now,
        expires_at,
        decided_at: None,
        device_id: None,
        amr: None,
        redeemed_at: None,
    };
    let (stored, permission) = (row.clone(), s.permission);
    let nonce = s.new_permission;
    let started = state
        .db_write(move |c| {
            if let Some(nonce_hash) = nonce {
                if perms::insert_with_nonce(c, &permission, &nonce_hash)? == Insert::NonceReused {
                    return Ok(false);
                }
            }
            requests::start(c, &stored, &permission.id, now)
        })
        .await?;
    if !started {
        return Err(err(
            ErrorCode::InvalidRequest,
            "login_hint_token was already used",
        ));
    }
    Ok(row)
}

async fn authenticate(
    state: &AppState,
    caller: &Caller,
    form: &Form,
    path: &str,
    now: i64,
) -> ApiResult<Authenticated> {
    let endpoint = state.config.endpoint(path);
    let req = AuthRequest {
        authorization: caller.authorization.as_deref(),
        form: Some(form),
        endpoint: &endpoint,
        allow_secret: false,
        source: caller.source,
    };
    auth::authenticate(state, req, now).await
}

pub async fn app_authorize(
    state: AppState,
    content_type: Option<String>,
    caller: Caller,
    body: Bytes,
) -> Response {
    let now = now();
    let result = async {
        let form = Form::parse(content_type.as_deref(), &body)?;
        let client = authenticate(&state, &caller, &form, "/oidc/v1/app-authorize", now).await?;
        client.require_scope(scope::PERMISSIONS_APP2APP)?;
        limits::check(&state, Limit::ClientStarts, &client.client.id, APP_AUTHORIZE, now).await?;
        let token = form.require("login_hint_token")?;
        let scope = authentication_scope(form.get("scope")?, &client.client)?;
        let device = DeviceInfo::from_b64url("device_info", form.require("device_info")?)?;
        let requested_expiry = parse_requested_expiry(form.get("requested_expiry")?)?;
        let notification_token = notification_token(&form, &client.client)?;
        let permission_id = verify_permission_token(&state, token, &client.client, now)?;
        let permission = usable_permission(&state, permission_id, &client.client, Intent::App2App, now).await?;
        claim_token(&state, &permission, now).await?;
        let (user_sub, devices) = hinted_user(&state, &permission).await?;
        // Counted before the device match: guessing a user's phone model spends the user's
        // budget too, not only the client's registrations.
        limits::check(&state, Limit::UserStarts, &user_sub, APP_AUTHORIZE, now).await?;
        let enrolled = devices.iter().map(|d| {
            (d.id.as_str(), DeviceInfo { platform: d.platform.clone(), manufacturer: d.manufacturer.clone(), model: d.model.clone() })
        });
        let matched = match_for_app2app(&device, enrolled)?;
        let keys = key_protections(devices.iter().filter(|d| matched.contains(&d.id)));
        let acr = acr_of(&form, &permission, &keys)?;
        let start_req = Start {
            client: &client,
            acr,
            permission,
            user_sub,
            scope,
            flow: Intent::App2App,
            allowed_devices: Some(matched),
            requested_expiry,
            notification_token,
            binding_message: None,
            new_permission: None,
        };
        let row = start(&state, start_req, now).await?;
        let uri = format!("{}/app2app/authorize?ref={}", state.config.app_link_base_url, row.link_ref);
        Ok(json_response(
            200,
            &json!({"authorize_uri": uri, "auth_req_id": row.id, "expires_in": row.expires_at - now, "interval": row.interval_secs}),
        ))
    }
    .await;
    no_store(result.unwrap_or_else(ApiError::into_response))
}

pub async fn bc_authorize(
    state: AppState,
    content_type: Option<String>,
    caller: Caller,
    body: Bytes,
) -> Response {
    let now = now();
    let result = async {
        let form = Form::parse(content_type.as_deref(), &body)?;
        let client = authenticate(&state, &caller, &form, "/oidc/v1/bc-authorize", now).await?;
        client.require_scope(scope::PERMISSIONS_CIBA)?;
        limits::check(&state, Limit::ClientStarts, &client.client.id, BC_AUTHORIZE, now).await?;
        let hints = ["login_hint_token", "login_hint", "id_token_hint"];
        let given: Vec<&str> = hints.iter().copied().filter(|h| matches!(form.get(h), Ok(Some(_)))).collect();
        if given.len() != 1 {
            return Err(err(ErrorCode::InvalidRequest, "exactly one of login_hint_token and login_hint is required"));
        }
        let scope = authentication_scope(form.get("scope")?, &client.client)?;
        let binding = form.get("binding_message")?.map(str::to_owned);
        if let Some(b) = &binding {
            req::validate_binding_message(b)?;
        }
        let requested_expiry = parse_requested_expiry(form.get("requested_expiry")?)?;
        let notification_token = notification_token(&form, &client.client)?;
        let (permission, new_permission) = match given[0] {
            "login_hint_token" => {
                let id = verify_permission_token(&state, form.require("login_hint_token")?, &client.client, now)?;
                (usable_permission(&state, id, &client.client, Intent::Ciba, now).await?, None)
            }
            "login_hint" => {
                // CIBA §13: nothing else tells the user which request to approve.
                if binding.is_none() {
                    return Err(err(ErrorCode::InvalidBindingMessage, "binding_message is required with login_hint"));
                }
                let nnin = Nnin::parse(form.require("login_hint")?).map_err(|_| err(ErrorCode::UnknownUserId, "login_hint is not a valid NNIN"))?;
                let (p, nonce_hash) = login_permission(&state, &client.client, &nnin, now);
                (p, Some(nonce_hash))
            }
            _ => return Err(err(ErrorCode::InvalidRequest, "id_token_hint is not supported")),
        };
        if new_permission.is_none() {
            claim_token(&state, &permission, now).await?;
        }
        let user = hinted_user(&state, &permission).await;
        if new_permission.is_some() && user.as_ref().is_err_and(|e| e.code() == ErrorCode::UnknownUserId) {
            // A plain login_hint answers whether an NNIN is enrolled, like user-exists: it
            // spends the same budget, so it is no way around that limit.
            limits::check(&state, Limit::ClientUserExists, &client.client.id, BC_AUTHORIZE, now).await?;
        }
        let (user_sub, devices) = user?;
        let acr = acr_of(&form, &permission, &key_protections(devices.iter()))?;
        limits::check(&state, Limit::UserStarts, &user_sub, BC_AUTHORIZE, now).await?;
        let start_req = Start {
            client: &client,
            acr,
            permission,
            user_sub,
            scope,
            flow: Intent::Ciba,
            allowed_devices: None,
            requested_expiry,
            notification_token,
            binding_message: binding,
            new_permission,
        };
        let row = start(&state, start_req, now).await?;
        Ok(json_response(200, &json!({"auth_req_id": row.id, "expires_in": row.expires_at - now, "interval": row.interval_secs})))
    }
    .await;
    no_store(result.unwrap_or_else(ApiError::into_response))
}

/// A plain `login_hint` authentication gets its own `authentication.v1` permission, so every
/// request carries a statement and a digest the app signs.
fn login_permission(
    state: &AppState,
    client: &Client,
    nnin: &Nnin,
    now: i64,
) -> (PermissionRow, String) {
    let nonce = random_id();
    let statement = URL_SAFE_NO_PAD.encode(json!({"nonce": nonce}).to_string());
    let digest = sha256_b64url(&URL_SAFE_NO_PAD.decode(&statement).unwrap_or_default());
    let row = PermissionRow {
        id: random_id(),
        client_id: client.id.clone(),
        kind: "authentication.v1".into(),
        loa: Loa::Substantial.as_str().into(),
        iat: now,
        exp: now + state.config.auth_request_max_ttl,
        statement,
        digest,
        intents: Intent::Ciba.as_str().into(),
        user_sub: None,
        login_hint: nnin.as_str().to_owned(),
        app_callback_uri: None,
        acr_values: None,
        status: PermissionStatus::Pending.as_str().into(),
        token_used_at: None,
        auth_req_id: None,
        grant_jws: None,
        decided_at: None,
        created_at: now,
    };
    (row, sha256_b64url(nonce.as_bytes()))
}
