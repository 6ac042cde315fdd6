//! Authentication requests (App2App and CIBA) started from a permission.
//! Every state change is a conditional update: exactly one of racing callers wins.

use crate::error::StoreResult;
use crate::jobs;
use crate::schema::{auth_requests, permissions};
use crate::DbConnection;
use diesel::prelude::*;
use diesel::IntoSql;

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

/// Mark the permission as used by `auth_req_id`, if no request was started from it yet and
/// it is still pending and valid at `now`, and store the request: both or neither. Returns
/// false otherwise. (The merchant's token is claimed before, by `permissions::use_token`.)
pub fn start(
    conn: &mut DbConnection,
    row: &AuthRequestRow,
    permission_id: &str,
    now: i64,
) -> StoreResult<bool> {
    let n = diesel::update(
        permissions::table
            .filter(permissions::id.eq(permission_id))
            .filter(permissions::auth_req_id.is_null())
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
    /// See migrations/postgres/*_touch_pending_batch. Set-returning: one row per recorded poll.
    fn ciba_touch_pending_batch(
        ids: diesel::sql_types::Array<diesel::sql_types::Text>,
        client_ids: diesel::sql_types::Array<diesel::sql_types::Text>,
        now_ms: diesel::sql_types::Array<diesel::sql_types::BigInt>,
        grace_ms: diesel::sql_types::BigInt,
    ) -> diesel::sql_types::Text;
}

/// One poll in a batch: the request, the polling client, when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    pub id: String,
    pub client_id: String,
    pub now_ms: i64,
}

/// The hot path of polling: record well-paced polls of pending, unexpired requests of their
/// clients, many at once (distinct requests; `result[i]` answers `polls[i]`). A poll is well
/// paced when the request's last poll is at least one interval (less `grace_ms`) ago. False
/// means "look closer" (too fast, finished, unknown, another client's). PostgreSQL: one call
/// of `ciba_touch_pending_batch`, which waits for rows other transactions hold up to its
/// `lock_timeout` (20 ms), then skips them (such a poll answers false and takes the careful
/// path). Callers give the polls in the order of their ids, so concurrent batches cannot
/// deadlock. SQLite: one `UPDATE ... FROM (VALUES ...)`.
pub fn touch_pending_batch(
    conn: &mut DbConnection,
    polls: &[Poll],
    grace_ms: i64,
) -> StoreResult<Vec<bool>> {
    if polls.is_empty() {
        return Ok(Vec::new());
    }
    let touched: std::collections::HashSet<String> = match conn {
        DbConnection::Pg(pg) => {
            let ids: Vec<&str> = polls.iter().map(|p| p.id.as_str()).collect();
            let clients: Vec<&str> = polls.iter().map(|p| p.client_id.as_str()).collect();
            let nows: Vec<i64> = polls.iter().map(|p| p.now_ms).collect();
            diesel::select(ciba_touch_pending_batch(ids, clients, nows, grace_ms))
                .load::<String>(pg)?
                .into_iter()
                .collect()
        }
        DbConnection::Sqlite(lite) => {
            // One statement per batch: SQLite prepares every UPDATE afresh, so parse once.
            let values = vec!["(?, ?, ?)"; polls.len()].join(", ");
            let sql = format!(
                "UPDATE auth_requests SET last_poll_ms = p.column3 FROM (VALUES {values}) AS p \
                 WHERE auth_requests.id = p.column1 AND auth_requests.client_id = p.column2 \
                 AND auth_requests.status = '{PENDING}' \
                 AND auth_requests.expires_at > p.column3 / 1000 \
                 AND (auth_requests.last_poll_ms IS NULL OR auth_requests.last_poll_ms \
                      <= p.column3 + ? - auth_requests.interval_secs * 1000) \
                 RETURNING auth_requests.id AS id"
            );
            let mut query = diesel::sql_query(sql).into_boxed::<diesel::sqlite::Sqlite>();
            for p in polls {
                query = query
                    .bind::<diesel::sql_types::Text, _>(p.id.clone())
                    .bind::<diesel::sql_types::Text, _>(p.client_id.clone())
                    .bind::<diesel::sql_types::BigInt, _>(p.now_ms);
            }
            query
                .bind::<diesel::sql_types::BigInt, _>(grace_ms)
                .load::<TouchedId>(lite)?
                .into_iter()
                .map(|r| r.id)
                .collect()
        }
    };
    Ok(polls.iter().map(|p| touched.contains(&p.id)).collect())
}

/// One poll recorded as [`touch_pending_batch`] would, but waiting for the row when another
/// transaction holds it (the batch skips such rows): for the careful path, which has already
/// read the request as pending and the poll as well paced. False when the row changed first
/// (decided, expired, polled meanwhile).
pub fn touch_pending_one(conn: &mut DbConnection, poll: &Poll, grace_ms: i64) -> StoreResult<bool> {
    let updated = diesel::update(
        auth_requests::table
            .filter(auth_requests::id.eq(&poll.id))
            .filter(auth_requests::client_id.eq(&poll.client_id))
            .filter(auth_requests::status.eq(PENDING))
            .filter(auth_requests::expires_at.gt(poll.now_ms / 1000))
            .filter(
                auth_requests::last_poll_ms
                    .is_null()
                    .or(auth_requests::last_poll_ms.le(((poll.now_ms + grace_ms)
                        .into_sql::<diesel::sql_types::BigInt>()
                        - auth_requests::interval_secs * 1000_i64)
                        .nullable())),
            ),
    )
    .set(auth_requests::last_poll_ms.eq(poll.now_ms))
    .execute(conn)?;
    Ok(updated == 1)
}

#[derive(QueryableByName)]
struct TouchedId {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
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

/// Redeem an approved request exactly once, before its expiry. Only the caller that flips
/// `redeemed_at` wins.
pub fn redeem(conn: &mut DbConnection, id: &str, client_id: &str, now: i64) -> StoreResult<bool> {
    let n = diesel::update(
        auth_requests::table
            .filter(auth_requests::id.eq(id))
            .filter(auth_requests::client_id.eq(client_id))
            .filter(auth_requests::status.eq("approved"))
            .filter(auth_requests::redeemed_at.is_null())
            .filter(auth_requests::expires_at.gt(now)),
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
