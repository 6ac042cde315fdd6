//! Authentication requests (App2App and CIBA) started from a permission.
//! Every state change is a conditional update: exactly one of racing callers wins.

use crate::error::StoreResult;
use crate::jobs;
use crate::schema::{auth_requests, permissions};
use crate::DbConnection;
use diesel::prelude::*;

pub const PENDING: &str = "pending";

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = auth_requests)]
pub struct AuthRequestRow {
    pub id: String,
    pub link_ref: String,
    pub client_id: String,
    pub permission_id: Option<String>,
    pub user_sub: String,
    pub flow: String,
    pub scope: String,
    pub acr: String,
    pub binding_message: Option<String>,
    pub client_notification_token: Option<String>,
    pub allowed_devices: Option<String>,
    pub status: String,
    pub interval_secs: i64,
    pub last_poll_ms: Option<i64>,
    pub created_at: i64,
    pub expires_at: i64,
    pub decided_at: Option<i64>,
    pub device_id: Option<String>,
    pub amr: Option<String>,
    pub redeemed_at: Option<i64>,
}

impl AuthRequestRow {
    /// Device ids allowed to decide (App2App: those that matched); `None` means any active
    /// device of the user.
    pub fn allowed_devices(&self) -> Option<Vec<String>> {
        self.allowed_devices
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
    }
}

/// Mark the permission's token as used by `auth_req_id`, if it is unused and still pending
/// and valid at `now`, and store the request: both or neither. Returns false if the token
/// was used already (or the permission is no longer pending).
pub fn start(
    conn: &mut DbConnection,
    row: &AuthRequestRow,
    permission_id: &str,
    now: i64,
) -> StoreResult<bool> {
    let n = diesel::update(
        permissions::table
            .filter(permissions::id.eq(permission_id))
            .filter(permissions::token_used_at.is_null())
            .filter(permissions::status.eq(PENDING))
            .filter(permissions::exp.gt(now)),
    )
    .set((
        permissions::token_used_at.eq(now),
        permissions::auth_req_id.eq(&row.id),
    ))
    .execute(conn)?;
    if n != 1 {
        return Ok(false);
    }
    diesel::insert_into(auth_requests::table)
        .values(row)
        .execute(conn)?;
    Ok(true)
}

pub fn find(conn: &mut DbConnection, id: &str) -> StoreResult<Option<AuthRequestRow>> {
    Ok(auth_requests::table
        .filter(auth_requests::id.eq(id))
        .select(AuthRequestRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn find_by_ref(conn: &mut DbConnection, link_ref: &str) -> StoreResult<Option<AuthRequestRow>> {
    Ok(auth_requests::table
        .filter(auth_requests::link_ref.eq(link_ref))
        .select(AuthRequestRow::as_select())
        .first(conn)
        .optional()?)
}

/// Pending, unexpired requests of a user, newest first.
pub fn pending_for_user(
    conn: &mut DbConnection,
    user_sub: &str,
    now: i64,
) -> StoreResult<Vec<AuthRequestRow>> {
    Ok(auth_requests::table
        .filter(auth_requests::user_sub.eq(user_sub))
        .filter(auth_requests::status.eq(PENDING))
        .filter(auth_requests::expires_at.gt(now))
        .order(auth_requests::created_at.desc())
        .limit(50)
        .select(AuthRequestRow::as_select())
        .load(conn)?)
}

/// A user's decision as recorded on the request and its permission.
pub struct Outcome<'a> {
    pub status: &'a str,
    pub permission_status: &'a str,
    pub device_id: &'a str,
    /// JSON array of RFC 8176 values.
    pub amr: &'a str,
}

/// Record a decision if the request is still pending and unexpired at `now`, and carry it
/// to the permission. Returns false when someone else decided first or it expired.
pub fn decide(
    conn: &mut DbConnection,
    id: &str,
    outcome: &Outcome<'_>,
    now: i64,
    ping_attempts: i32,
) -> StoreResult<bool> {
    let n = diesel::update(
        auth_requests::table
            .filter(auth_requests::id.eq(id))
            .filter(auth_requests::status.eq(PENDING))
            .filter(auth_requests::expires_at.gt(now)),
    )
    .set((
        auth_requests::status.eq(outcome.status),
        auth_requests::decided_at.eq(now),
        auth_requests::device_id.eq(outcome.device_id),
        auth_requests::amr.eq(outcome.amr),
    ))
    .execute(conn)?;
    if n != 1 {
        return Ok(false);
    }
    let (user, ping_token): (String, Option<String>) = auth_requests::table
        .filter(auth_requests::id.eq(id))
        .select((
            auth_requests::user_sub,
            auth_requests::client_notification_token,
        ))
        .first(conn)?;
    diesel::update(
        permissions::table
            .filter(permissions::auth_req_id.eq(id))
            .filter(permissions::status.eq(PENDING)),
    )
    .set((
        permissions::status.eq(outcome.permission_status),
        permissions::decided_at.eq(now),
        permissions::user_sub.eq(user),
    ))
    .execute(conn)?;
    if ping_token.is_some() {
        enqueue_ping(conn, id, ping_attempts, now)?;
    }
    Ok(true)
}

/// Queue the ping notification of a finished request (ping clients only), in the caller's
/// transaction: the outcome and its notification commit together or not at all.
fn enqueue_ping(conn: &mut DbConnection, id: &str, max_attempts: i32, now: i64) -> StoreResult<()> {
    let payload = serde_json::json!({ "auth_req_id": id }).to_string();
    jobs::enqueue(
        conn,
        &jobs::ping_job_id(id),
        jobs::KIND_PING,
        &payload,
        max_attempts,
        now,
    )?;
    Ok(())
}

/// The authentication methods recorded when the request was decided (a JSON array).
pub fn amr_of(conn: &mut DbConnection, auth_req_id: &str) -> StoreResult<Option<String>> {
    Ok(auth_requests::table
        .filter(auth_requests::id.eq(auth_req_id))
        .select(auth_requests::amr)
        .first::<Option<String>>(conn)
        .optional()?
        .flatten())
}

diesel::define_sql_function! {
    /// See migrations/postgres/*_touch_pending.
    fn ciba_touch_pending(id: diesel::sql_types::Text, client_id: diesel::sql_types::Text, now_ms: diesel::sql_types::BigInt, grace_ms: diesel::sql_types::BigInt) -> diesel::sql_types::Bool;
}

/// The hot path of polling: record a well-paced poll of a pending, unexpired request of
/// `client_id` in one statement. False means "look closer" (too fast, finished, unknown).
/// The pacing condition: the last poll is at least one interval (less the grace) ago.
pub fn touch_pending(
    conn: &mut DbConnection,
    id: &str,
    client_id: &str,
    now_ms: i64,
    grace_ms: i64,
) -> StoreResult<bool> {
    use diesel::sql_types::BigInt;
    if let DbConnection::Pg(pg) = conn {
        return Ok(
            diesel::select(ciba_touch_pending(id, client_id, now_ms, grace_ms)).get_result(pg)?,
        );
    }
    let earliest_last =
        (now_ms + grace_ms).into_sql::<BigInt>() - auth_requests::interval_secs * 1000_i64;
    let n = diesel::update(
        auth_requests::table
            .filter(auth_requests::id.eq(id))
            .filter(auth_requests::client_id.eq(client_id))
            .filter(auth_requests::status.eq(PENDING))
            .filter(auth_requests::expires_at.gt(now_ms / 1000))
            .filter(
                auth_requests::last_poll_ms
                    .is_null()
                    .or(auth_requests::last_poll_ms.le(earliest_last.nullable())),
            ),
    )
    .set(auth_requests::last_poll_ms.eq(now_ms))
    .execute(conn)?;
    Ok(n == 1)
}

/// A poll came too fast: the interval grows by 5 s (RFC 8628 §3.5), up to `max_interval`.
pub fn slow_down(
    conn: &mut DbConnection,
    id: &str,
    now_ms: i64,
    max_interval: i64,
) -> StoreResult<()> {
    diesel::update(
        auth_requests::table
            .filter(auth_requests::id.eq(id))
            .filter(auth_requests::status.eq(PENDING))
            .filter(auth_requests::interval_secs.lt(max_interval)),
    )
    .set(auth_requests::interval_secs.eq(auth_requests::interval_secs + 5_i64))
    .execute(conn)?;
    diesel::update(auth_requests::table.filter(auth_requests::id.eq(id)))
        .set(auth_requests::last_poll_ms.eq(now_ms))
        .execute(conn)?;
    Ok(())
}

/// Redeem an approved request exactly once. Only the caller that flips `redeemed_at` wins.
pub fn redeem(conn: &mut DbConnection, id: &str, client_id: &str, now: i64) -> StoreResult<bool> {
    let n = diesel::update(
        auth_requests::table
            .filter(auth_requests::id.eq(id))
            .filter(auth_requests::client_id.eq(client_id))
            .filter(auth_requests::status.eq("approved"))
            .filter(auth_requests::redeemed_at.is_null()),
    )
    .set(auth_requests::redeemed_at.eq(now))
    .execute(conn)?;
    Ok(n == 1)
}

/// Mark a pending request past its expiry as expired, and its permission with it, and queue
/// its ping (ping clients). Run it in a transaction. Returns true when this call made the
/// change (so follow-ups such as pings happen once).
pub fn expire(
    conn: &mut DbConnection,
    id: &str,
    now: i64,
    ping_attempts: i32,
) -> StoreResult<bool> {
    let n = diesel::update(
        auth_requests::table
            .filter(auth_requests::id.eq(id))
            .filter(auth_requests::status.eq(PENDING))
            .filter(auth_requests::expires_at.le(now)),
    )
    .set((
        auth_requests::status.eq("expired"),
        auth_requests::decided_at.eq(now),
    ))
    .execute(conn)?;
    if n == 1 {
        diesel::update(
            permissions::table
                .filter(permissions::auth_req_id.eq(id))
                .filter(permissions::status.eq(PENDING)),
        )
        .set((
            permissions::status.eq("expired"),
            permissions::decided_at.eq(now),
        ))
        .execute(conn)?;
        let ping_token: Option<String> = auth_requests::table
            .filter(auth_requests::id.eq(id))
            .select(auth_requests::client_notification_token)
            .first(conn)?;
        if ping_token.is_some() {
            enqueue_ping(conn, id, ping_attempts, now)?;
        }
    }
    Ok(n == 1)
}

/// Ids of pending requests that expired before `now` (the worker's sweep), at most `limit`.
pub fn expired_pending(conn: &mut DbConnection, now: i64, limit: i64) -> StoreResult<Vec<String>> {
    Ok(auth_requests::table
        .filter(auth_requests::status.eq(PENDING))
        .filter(auth_requests::expires_at.le(now))
        .order(auth_requests::expires_at.asc())
        .limit(limit)
        .select(auth_requests::id)
        .load(conn)?)
}

/// Delete up to `limit` finished requests created before `before`; returns how many went.
pub fn purge_finished(conn: &mut DbConnection, before: i64, limit: i64) -> StoreResult<usize> {
    let batch: Vec<String> = auth_requests::table
        .filter(auth_requests::created_at.lt(before))
        .filter(
            auth_requests::status
                .ne(PENDING)
                .or(auth_requests::expires_at.lt(before)),
        )
        .select(auth_requests::id)
        .limit(limit)
        .load(conn)?;
    if batch.is_empty() {
        return Ok(0);
    }
    Ok(
        diesel::delete(auth_requests::table.filter(auth_requests::id.eq_any(batch)))
            .execute(conn)?,
    )
}
