//! The CIBA grant at the token endpoint (contract §3): polling with `slow_down` enforced
//! from the database (so every replica agrees), exactly-once redemption, and the ID token.

use crate::auth::Authenticated;
use crate::error::{oauth_error, ApiError, ApiResult};
use crate::poll_batch::POLL_GRACE_MS;
use crate::state::AppState;
use ciba_domain::audit::{action, Actor, Origin, Outcome};
use ciba_domain::auth_request::{PollStep, PolledRequest};
use ciba_domain::claims;
use ciba_domain::client::{Client, SigningAlg};
use ciba_domain::error::{ErrorCode, OAuthError};
use ciba_domain::ids::{is_well_formed_id, random_id};
use ciba_domain::scope::ScopeSet;
use ciba_domain::status::RequestStatus;
use ciba_runtime::crypto::jwt::{self, TYP_ID_TOKEN, TYP_USER_ACCESS_TOKEN};
use ciba_runtime::crypto::keyring::Purpose;
use ciba_service::requests as lifecycle;
use ciba_store::audit;
use ciba_store::auth_requests::{self as requests, AuthRequestRow, WithContext};
use ciba_store::permissions::PermissionRow;
use ciba_store::polling::{self, Paced, Poll};
use ciba_store::users::UserRow;
use ciba_store::{DbConnection, StoreResult};
use serde_json::{json, Value};

/// What a redeemed request yields (RFC 6749 §5.1 with the CIBA ID token).
pub struct Tokens {
    pub access_token: String,
    pub id_token: String,
    pub expires_in: i64,
}

/// A poll of `auth_req_id` by `client` at `now_ms`: the tokens once, or the OAuth error the
/// request's state calls for (`authorization_pending`, `slow_down`, `access_denied`,
/// `expired_token`, `invalid_grant`).
pub async fn grant(
    state: &AppState,
    client: &Authenticated,
    id: String,
    origin: Origin,
    now_ms: i64,
) -> ApiResult<Tokens> {
    let now = now_ms / 1000;
    if !is_well_formed_id(&id) {
        return Err(oauth_error(ErrorCode::InvalidGrant, "unknown auth_req_id"));
    }
    let client_id = client.client.id.clone();
    // Hot path: a poll of a pending request, well paced or too early, is one conditional
    // update (or, too early at the maximum interval, a read), batched with the polls that
    // arrive at the same time (crate::poll_batch). A
    // request decided through this process since its last poll is no longer pending: most
    // likely approved, so it is redeemed at once if it can be (one statement), and otherwise
    // answered by the careful path, which decides from the stored row.
    if state.decided_here.take(&id).is_some() {
        if let Some(tokens) = redeem_at_once(state, client, &id, &origin, now).await? {
            return Ok(tokens);
        }
    } else {
        let poll = Poll {
            id: id.clone(),
            client_id: client_id.clone(),
            now_ms,
        };
        match state.poll_batcher()?.submit(poll).await? {
            Paced::Recorded => return Err(pending()),
            Paced::SlowedDown => return Err(slow_down()),
            Paced::LookCloser => {}
        }
    }
    // The careful path: read the request and answer from what it holds. At most once, a
    // pending request whose last poll is an interval ago is polled again with a wait: the
    // batch skips rows another transaction holds (a decision being committed, say), and such
    // a well-paced poll must not be told to slow down.
    let mut waited = false;
    loop {
        let i = id.clone();
        let found = state.db(move |conn| read_for_poll(conn, &i)).await?;
        let (row, redeemable) = match found {
            Some((r, redeemable)) if r.client_id == client_id => (r, redeemable),
            _ => return Err(oauth_error(ErrorCode::InvalidGrant, "unknown auth_req_id")),
        };
        let polled = PolledRequest {
            stored: &row.status,
            expires_at: row.expires_at,
            redeemed: row.redeemed_at.is_some(),
            last_poll_ms: row.last_poll_ms,
            interval_secs: row.interval_secs,
        };
        return match polled.step(now_ms, POLL_GRACE_MS, waited) {
            PollStep::AlreadyRedeemed => Err(already_redeemed()),
            PollStep::Redeem => {
                // Tokens first: if building or signing fails, the approval is still there
                // for the next poll. Then exactly one caller redeems (conditional update).
                let Some((user, permission)) = redeemable else {
                    return Err(OAuthError::server_error().into());
                };
                let tokens = issue_tokens(
                    state,
                    &client.client,
                    client.bound_to.as_deref(),
                    &row,
                    (user, permission),
                    now,
                )?;
                if redeem(state, &client_id, &id, &origin, now)
                    .await?
                    .is_none()
                {
                    return Err(already_redeemed());
                }
                Ok(tokens)
            }
            PollStep::Declined => Err(oauth_error(ErrorCode::AccessDenied, "the user declined")),
            PollStep::Expired { mark } => {
                if mark {
                    let (i, c, o) = (id.clone(), client_id.clone(), origin.clone());
                    let at_ms = crate::state::now_ms();
                    state
                        .db_write(move |conn| {
                            let by = audit::By {
                                actor: Actor::Client(&c),
                                origin: &o,
                                at_ms,
                            };
                            lifecycle::expire(conn, &i, &by, now)
                        })
                        .await?;
                }
                Err(oauth_error(
                    ErrorCode::ExpiredToken,
                    "the request has expired",
                ))
            }
            PollStep::RecordPoll => {
                waited = true;
                let p = Poll {
                    id: id.clone(),
                    client_id: client_id.clone(),
                    now_ms,
                };
                if state
                    .db_soft(move |conn| polling::record_poll(conn, &p, POLL_GRACE_MS))
                    .await?
                {
                    return Err(pending());
                }
                // The row changed while we waited for it: look again.
                continue;
            }
            PollStep::SlowDown => {
                let (i, interval) = (id.clone(), row.interval_secs);
                state
                    .db_soft(move |conn| polling::slow_down(conn, &i, interval, now_ms))
                    .await?;
                Err(slow_down())
            }
        };
    }
}

/// Redeem `id` for `client` if it is approved, unredeemed and unexpired, with the tokens
/// made from what the redemption returns: one statement. `None` when it was not redeemed
/// (the careful path then says why). Here the tokens are signed after the redemption
/// commits, so what they need is made sure of first: their signing keys here, and the
/// request's user by the redemption itself (a request whose user is missing is not redeemed).
async fn redeem_at_once(
    state: &AppState,
    client: &Authenticated,
    id: &str,
    origin: &Origin,
    now: i64,
) -> ApiResult<Option<Tokens>> {
    let signs = |alg| state.keys.signer(Purpose::Oidc, alg, now).is_some();
    if !(signs(client.client.id_token_alg) && signs(SigningAlg::Es256)) {
        return Ok(None);
    }
    let redeemed = redeem(state, &client.client.id, id, origin, now).await?;
    let Some((row, permission, user)) = redeemed else {
        return Ok(None);
    };
    let bound_to = client.bound_to.as_deref();
    issue_tokens(
        state,
        &client.client,
        bound_to,
        &row,
        (user, permission),
        now,
    )
    .map(Some)
}

/// Redeem `id` for `client_id` with its audit event, once: what the tokens are made of, or
/// `None` when it was not redeemable.
async fn redeem(
    state: &AppState,
    client_id: &str,
    id: &str,
    origin: &Origin,
    now: i64,
) -> ApiResult<Option<WithContext>> {
    let by = audit::By {
        actor: Actor::Client(client_id),
        origin,
        at_ms: crate::state::now_ms(),
    };
    let event = audit::row(&by, action::REQUEST_REDEEMED, Some(id), Outcome::Ok);
    let (i, c) = (id.to_owned(), client_id.to_owned());
    state
        .db_write_one(move |conn| requests::redeem_recorded(conn, (&i, &c), now, &event))
        .await
}

fn already_redeemed() -> ApiError {
    oauth_error(
        ErrorCode::InvalidGrant,
        "the auth_req_id was already redeemed",
    )
}

fn slow_down() -> ApiError {
    oauth_error(
        ErrorCode::SlowDown,
        "polling too fast: wait the interval, now 5 seconds longer",
    )
}

fn pending() -> ApiError {
    oauth_error(
        ErrorCode::AuthorizationPending,
        "the user has not finished yet",
    )
}

/// What redeeming an approved request needs besides the request: its user and permission.
type Redeemable = (Option<UserRow>, Option<PermissionRow>);

/// The request a poll names, and for an approved, unredeemed one what redeeming it needs,
/// in one statement.
fn read_for_poll(
    conn: &mut DbConnection,
    id: &str,
) -> StoreResult<Option<(AuthRequestRow, Option<Redeemable>)>> {
    let Some((row, permission, user)) = requests::find_with_context(conn, id)? else {
        return Ok(None);
    };
    let redeemable = (row.status == RequestStatus::Approved.as_str() && row.redeemed_at.is_none())
        .then_some((user, permission));
    Ok(Some((row, redeemable)))
}

/// The tokens of an approved request; the access token bound to the client certificate
/// with thumbprint `bound_to`, if the poll came with one.
fn issue_tokens(
    state: &AppState,
    client: &Client,
    bound_to: Option<&str>,
    row: &AuthRequestRow,
    (user, permission): Redeemable,
    now: i64,
) -> ApiResult<Tokens> {
    let user = user.ok_or_else(|| ApiError::from(OAuthError::server_error()))?;
    let scopes = ScopeSet::parse(&row.scope).unwrap_or_default();
    let cfg = &state.config;
    let amr: Value = row
        .amr
        .as_deref()
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or_else(|| json!(["hwk", "bio"]));
    let id_token = claims::IdToken {
        issuer: &cfg.issuer,
        client_id: &client.id,
        now,
        ttl: cfg.id_token_ttl,
        auth_time: row.decided_at.unwrap_or(now),
        acr: &row.acr,
        amr,
        auth_req_id: &row.id,
        permission: permission
            .as_ref()
            .map(|p| (p.id.as_str(), p.digest.as_str())),
        scopes: &scopes,
        nnin_entitled: client.sub_nnin,
        user: claims::User {
            sub: &user.sub,
            nnin: &user.nnin,
            given_name: &user.given_name,
            family_name: &user.family_name,
            birthdate: &user.birthdate,
            updated_at: user.updated_at,
            bankid_pid: user.bankid_pid.as_deref(),
        },
    }
    .claims();
    let sign = |alg: SigningAlg, typ: &str, claims: &Value| -> ApiResult<String> {
        let key = state
            .keys
            .signer(Purpose::Oidc, alg, now)
            .ok_or_else(|| ApiError::from(OAuthError::server_error()))?;
        jwt::sign(&key, typ, claims).map_err(|e| super::internal("signing failed", e))
    };
    let id_token = sign(client.id_token_alg, TYP_ID_TOKEN, &id_token)?;
    let jti = random_id();
    let at = claims::Issue {
        issuer: &cfg.issuer,
        now,
        jti: &jti,
    };
    let mut access =
        claims::user_access_token(at, &user.sub, &client.id, &row.scope, cfg.access_token_ttl);
    claims::bind_to_certificate(&mut access, bound_to);
    let access_token = sign(SigningAlg::Es256, TYP_USER_ACCESS_TOKEN, &access)?;
    Ok(Tokens {
        access_token,
        id_token,
        expires_in: cfg.access_token_ttl,
    })
}
