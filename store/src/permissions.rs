//! Registered permissions and their forever-unique nonces.

use crate::audit::{self, AuditRow};
use crate::error::{StoreError, StoreResult};
use crate::prepared::{from_json, template, Statement};
use crate::schema::{permission_nonces, permissions};
use crate::users::{self, DeviceRow};
use crate::DbConnection;
use ciba_domain::permission::NewPermission;
use ciba_domain::status::{DeviceStatus, PermissionStatus};
use diesel::prelude::*;

const PENDING: &str = PermissionStatus::Pending.as_str();

/// Deserialize: as PostgreSQL's `row_to_json` has it (`auth_requests::redeem_recorded`).
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable, serde::Deserialize)]
#[diesel(table_name = permissions)]
pub struct PermissionRow {
    pub id: String,
    pub client_id: String,
    pub kind: String,
    pub loa: String,
    pub iat: i64,
    pub exp: i64,
    pub statement: String,
    pub digest: String,
    pub intents: String,
    pub user_sub: Option<String>,
    pub login_hint: String,
    pub app_callback_uri: Option<String>,
    pub acr_values: Option<String>,
    pub status: String,
    pub token_used_at: Option<i64>,
    pub auth_req_id: Option<String>,
    pub grant_jws: Option<String>,
    pub decided_at: Option<i64>,
    pub created_at: i64,
}

impl PermissionRow {
    /// The row of a new, pending permission `id` of `client_id` (the hinted user is looked
    /// up when it is stored).
    pub fn pending(id: String, client_id: &str, p: NewPermission, now: i64) -> Self {
        Self {
            id,
            client_id: client_id.to_owned(),
            kind: p.kind.as_str().into(),
            loa: p.loa.as_str().into(),
            iat: p.iat,
            exp: p.exp,
            statement: p.statement,
            digest: p.digest,
            intents: p
                .intents
                .iter()
                .map(|i| i.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            user_sub: None,
            login_hint: p.nnin.as_str().to_owned(),
            app_callback_uri: p.app_callback_uri,
            acr_values: (!p.acr_values.is_empty()).then(|| p.acr_values.join(" ")),
            status: PermissionStatus::Pending.as_str().into(),
            token_used_at: None,
            auth_req_id: None,
            grant_jws: None,
            decided_at: None,
            created_at: now,
        }
    }

    /// The status as callers see it: a pending permission past `exp` is expired whether or
    /// not a sweeper has marked it.
    pub fn status_at(&self, now: i64) -> PermissionStatus {
        PermissionStatus::at(&self.status, self.exp, now)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Insert {
    Created,
    NonceReused,
}

/// Claim the nonce and store the permission, atomically. Call inside a write transaction.
/// Concurrent registrations with one nonce: exactly one gets `Created`.
pub fn insert_with_nonce(
    conn: &mut DbConnection,
    row: &PermissionRow,
    nonce_hash: &str,
) -> StoreResult<Insert> {
    let claimed = diesel::insert_into(permission_nonces::table)
        .values((
            permission_nonces::client_id.eq(&row.client_id),
            permission_nonces::nonce_hash.eq(nonce_hash),
            permission_nonces::created_at.eq(row.created_at),
        ))
        .execute(conn)
        .map_err(StoreError::from);
    match claimed {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) => return Ok(Insert::NonceReused),
        Err(e) => return Err(e),
    }
    diesel::insert_into(permissions::table)
        .values(row)
        .execute(conn)?;
    Ok(Insert::Created)
}

/// Register a new permission (`row`, its user not yet known): its nonce claimed, its user
/// looked up by the NNIN, the row stored and its audit event `event` recorded, atomically. On
/// PostgreSQL one statement (one round trip, where a transaction costs two more), on SQLite
/// one transaction. Call outside a transaction.
pub fn register(
    conn: &mut DbConnection,
    row: &PermissionRow,
    nonce_hash: &str,
    event: &AuditRow,
) -> StoreResult<Insert> {
    Ok(register_reading_user(conn, row, nonce_hash, event)?.0)
}

/// The user a permission's hint names, if registered: their `sub` and active devices.
pub type HintedUser = Option<(String, Vec<DeviceRow>)>;

/// [`register`], answering too who the hint names and their active devices as they were
/// (for a registered permission; `None` when the nonce was used), in the same step.
pub fn register_reading_user(
    conn: &mut DbConnection,
    row: &PermissionRow,
    nonce_hash: &str,
    event: &AuditRow,
) -> StoreResult<(Insert, HintedUser)> {
    let pg = |c: &mut diesel::pg::PgConnection| {
        let q = Statement::new(template!("sql/register_permission.pg.sql"))
            .text(&row.id)
            .text(&row.client_id)
            .text(&row.kind)
            .text(&row.loa)
            .int(row.iat)
            .int(row.exp)
            .text(&row.statement)
            .text(&row.digest)
            .text(&row.intents)
            .text(&row.login_hint)
            .opt_text(row.app_callback_uri.as_deref())
            .opt_text(row.acr_values.as_deref())
            .text(&row.status)
            .int(row.created_at)
            .text(nonce_hash);
        let q = audit::bind_event(q, event).text(DeviceStatus::Active.as_str());
        let r: RegisteredRow = q.get_result(c)?;
        if r.n != 1 {
            return Ok((Insert::NonceReused, None));
        }
        Ok((Insert::Created, hinted_user(r.hinted_sub, r.devices)?))
    };
    audit::with_event(
        conn,
        event,
        |o| o.0 == Insert::Created,
        pg,
        |c| {
            let mut row = row.clone();
            row.user_sub = crate::users::find_by_nnin(c, &row.login_hint)?.map(|u| u.sub);
            if insert_with_nonce(c, &row, nonce_hash)? == Insert::NonceReused {
                return Ok((Insert::NonceReused, None));
            }
            let user = match row.user_sub {
                Some(sub) => users::with_active_devices(c, users::UserKey::Sub(&sub))?,
                None => None,
            };
            Ok((Insert::Created, user))
        },
    )
}

#[derive(QueryableByName)]
struct RegisteredRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    hinted_sub: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    devices: Option<String>,
}

pub fn find(conn: &mut DbConnection, id: &str) -> StoreResult<Option<PermissionRow>> {
    Ok(permissions::table
        .filter(permissions::id.eq(id))
        .select(PermissionRow::as_select())
        .first(conn)
        .optional()?)
}

/// The permission if `client_id` owns it; another client's reads as absent. Read by its key
/// alone: with the owner in the statement too, PostgreSQL could cache a plan (made while the
/// table was empty) that searched the client's index, reading every permission of the client.
pub fn find_owned(
    conn: &mut DbConnection,
    id: &str,
    client_id: &str,
) -> StoreResult<Option<PermissionRow>> {
    Ok(find(conn, id)?.filter(|p| p.client_id == client_id))
}

/// Use up the token of permission `id` for its owner `client_id` and a request with
/// `intent`, if it is pending, unused and unexpired at `now`; the permission as it is now.
/// `None` when any of that does not hold (the caller reads the permission to say why).
pub fn claim_token(
    conn: &mut DbConnection,
    (id, client_id): (&str, &str),
    intent: &str,
    now: i64,
) -> StoreResult<Option<PermissionRow>> {
    let q = Statement::new(template!("sql/claim_token.sql"))
        .int(now)
        .text(id)
        .text(client_id)
        .text(intent)
        .text(PENDING);
    Ok(crate::prepared::load::<PermissionRow>(conn, q)?.pop())
}

/// A claimed permission and, if its hinted user exists, their `sub` and active devices.
pub type ClaimedForUser = (PermissionRow, HintedUser);

/// [`claim_token`], and for a claimed permission the user it hints (its `user_sub`, else its
/// login hint) with that user's active devices, as [`users::with_active_devices`] finds them.
/// One statement on PostgreSQL.
pub fn claim_for_user(
    conn: &mut DbConnection,
    (id, client_id): (&str, &str),
    intent: &str,
    now: i64,
) -> StoreResult<Option<ClaimedForUser>> {
    let c = match conn {
        DbConnection::Pg(c) => c,
        DbConnection::Sqlite(_) => {
            let Some(p) = claim_token(conn, (id, client_id), intent, now)? else {
                return Ok(None);
            };
            let who = match &p.user_sub {
                Some(sub) => users::UserKey::Sub(sub),
                None => users::UserKey::Nnin(&p.login_hint),
            };
            let user = users::with_active_devices(conn, who)?;
            return Ok(Some((p, user)));
        }
    };
    let q = Statement::new(
        template!(chain "WITH claimed AS ("; "sql/claim_token.sql", "sql/claim_hinted_user.pg.sql"),
    )
    .int(now)
    .text(id)
    .text(client_id)
    .text(intent)
    .text(PENDING)
    .text(DeviceStatus::Active.as_str());
    let Some(row) = q.load::<ClaimedRow>(c)?.pop() else {
        return Ok(None);
    };
    Ok(Some((
        row.permission,
        hinted_user(row.hinted_sub, row.devices)?,
    )))
}

/// The hinted user as a statement answers them: their `sub`, if found, and their active
/// devices as a JSON array of rows (none when the array is absent).
fn hinted_user(sub: Option<String>, devices: Option<String>) -> StoreResult<HintedUser> {
    let Some(sub) = sub else {
        return Ok(None);
    };
    let devices = from_json(devices.as_deref(), "the hinted user's devices")?;
    Ok(Some((sub, devices.unwrap_or_default())))
}

#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(embed)]
    permission: PermissionRow,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    hinted_sub: Option<String>,
    /// The active devices, a JSON array of rows.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    devices: Option<String>,
}

/// The permission `permission_id` that the request `auth_req_id` was started from follows the
/// request's end (`status`), if it is still pending; `user_sub` records who decided. Returns
/// whether it changed. Found by its key (the request names it): a search by `auth_req_id`
/// read the whole table at every decision.
pub fn follow_request(
    conn: &mut DbConnection,
    (permission_id, auth_req_id): (&str, &str),
    status: PermissionStatus,
    user_sub: Option<&str>,
    now: i64,
) -> StoreResult<bool> {
    let q = Statement::new(template!("sql/follow_request.sql"))
        .text(status.as_str())
        .int(now)
        .opt_text(user_sub)
        .text(permission_id)
        .text(auth_req_id)
        .text(PENDING);
    Ok(crate::prepared::execute(conn, q)? == 1)
}

/// Store the signed grant once (the first writer wins; later callers read it back).
pub fn store_grant_once(conn: &mut DbConnection, id: &str, jws: &str) -> StoreResult<bool> {
    let n = diesel::update(
        permissions::table
            .filter(permissions::id.eq(id))
            .filter(permissions::grant_jws.is_null()),
    )
    .set(permissions::grant_jws.eq(jws))
    .execute(conn)?;
    Ok(n == 1)
}

/// Delete up to `limit` permissions created before `before` that are finished (or long past
/// their `exp`); returns how many went. Their nonces stay: a nonce is unique forever.
pub fn purge_finished(conn: &mut DbConnection, before: i64, limit: i64) -> StoreResult<usize> {
    let batch: Vec<String> = permissions::table
        .filter(permissions::created_at.lt(before))
        .filter(
            permissions::status
                .ne(PENDING)
                .or(permissions::exp.lt(before)),
        )
        .select(permissions::id)
        .limit(limit)
        .load(conn)?;
    if batch.is_empty() {
        return Ok(0);
    }
    Ok(diesel::delete(permissions::table.filter(permissions::id.eq_any(batch))).execute(conn)?)
}
