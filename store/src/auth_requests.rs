//! Authentication requests (App2App and CIBA) started from a permission.
//! Every state change is a conditional update: exactly one of racing callers wins.

use crate::audit::{self, AuditRow};
use crate::error::StoreResult;
use crate::permissions::PermissionRow;
use crate::prepared::{from_json, template, Statement};
use crate::schema::{auth_requests, permissions, users};
use crate::users::UserRow;
use crate::DbConnection;
use ciba_domain::status::{DeviceStatus, PermissionStatus, RequestStatus};
use diesel::prelude::*;

const PENDING: &str = RequestStatus::Pending.as_str();

/// One request found by `$filter`, with its permission and user (left joins).
macro_rules! with_context {
    ($conn:expr, $filter:expr) => {
        Ok(auth_requests::table
            .left_join(
                permissions::table.on(permissions::id.nullable().eq(auth_requests::permission_id)),
            )
            .left_join(users::table.on(users::sub.eq(auth_requests::user_sub)))
            .filter($filter)
            .select((
                AuthRequestRow::as_select(),
                Option::<PermissionRow>::as_select(),
                Option::<UserRow>::as_select(),
            ))
            .first($conn)
            .optional()?)
    };
}

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable)]
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
    /// When a too-early poll last grew the interval (answered `slow_down`). Such a poll is not
    /// the last poll (`last_poll_ms`, the last one answered `authorization_pending`).
    pub slowed_down_ms: Option<i64>,
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
/// false otherwise. (The merchant's token is claimed before, by `permissions::claim_token`.)
pub fn start(
    conn: &mut DbConnection,
    row: &AuthRequestRow,
    permission_id: &str,
    now: i64,
) -> StoreResult<bool> {
    let q = Statement::new(template!("sql/start_permission.sql"))
        .int(now)
        .text(&row.id)
        .text(permission_id)
        .text(PermissionStatus::Pending.as_str());
    if crate::prepared::execute(conn, q)? != 1 {
        return Ok(false);
    }
    diesel::insert_into(auth_requests::table)
        .values(row)
        .execute(conn)?;
    Ok(true)
}

/// [`start`] with its audit event `event`, atomically: on PostgreSQL one statement (one round
/// trip, where a transaction costs two more), on SQLite one transaction. Call outside a
/// transaction.
pub fn start_recorded(
    conn: &mut DbConnection,
    row: &AuthRequestRow,
    permission_id: &str,
    now: i64,
    event: &AuditRow,
) -> StoreResult<bool> {
    let pg = |c: &mut diesel::pg::PgConnection| {
        let q = Statement::new(
            template!(chain "WITH used AS ("; "sql/start_using.pg.sql", "sql/start_stored.pg.sql"),
        )
        .int(now)
        .text(&row.id)
        .text(permission_id)
        .text(PermissionStatus::Pending.as_str());
        let q = bind_request(q, row);
        let n: Rows = audit::bind_event(q, event).get_result(c)?;
        Ok(n.n == 1)
    };
    audit::with_event(
        conn,
        event,
        |&w| w,
        pg,
        |c| start(c, row, permission_id, now),
    )
}

/// What a request was matched against before its token was claimed: the permission's user
/// and every active device of theirs then (ids).
pub struct KnownDevices<'a> {
    pub user_sub: &'a str,
    pub active: &'a [String],
}

/// The token of permission `permission_id` claimed (for `intent`, by `row`'s client, on the
/// conditions of [`crate::permissions::claim_token`]) and the request `row` started from it
/// with its event, as [`start_recorded`] does, if the user still has exactly the active
/// devices `known` names (what the request's match and acr were computed from). False, and
/// nothing written, otherwise. On PostgreSQL one statement, on SQLite one transaction. Call
/// outside a transaction.
pub fn claim_and_start(
    conn: &mut DbConnection,
    row: &AuthRequestRow,
    (permission_id, intent): (&str, &str),
    known: &KnownDevices<'_>,
    now: i64,
    event: &AuditRow,
) -> StoreResult<bool> {
    let ids: String = known.active.iter().map(|id| format!(" {id} ")).collect();
    let pg = |c: &mut diesel::pg::PgConnection| {
        let q = Statement::new(
            template!(chain "WITH used AS ("; "sql/start_claiming.sql", "sql/start_stored.pg.sql"),
        );
        let q = bind_request(
            claiming(q, row, (permission_id, intent), known, &ids, now),
            row,
        );
        let n: Rows = audit::bind_event(q, event).get_result(c)?;
        Ok(n.n == 1)
    };
    audit::with_event(
        conn,
        event,
        |&w| w,
        pg,
        |c| {
            let q = Statement::new(template!("sql/start_claiming.sql"));
            let q = claiming(q, row, (permission_id, intent), known, &ids, now);
            if crate::prepared::execute(c, q)? != 1 {
                return Ok(false);
            }
            diesel::insert_into(auth_requests::table)
                .values(row)
                .execute(c)?;
            Ok(true)
        },
    )
}

/// The binds of a stored request's columns, in the order of start_stored.pg.sql's INSERT.
fn bind_request<'a>(q: Statement<'a>, row: &'a AuthRequestRow) -> Statement<'a> {
    q.text(&row.id)
        .text(&row.link_ref)
        .text(&row.client_id)
        .opt_text(row.permission_id.as_deref())
        .text(&row.user_sub)
        .text(&row.flow)
        .text(&row.scope)
        .text(&row.acr)
        .opt_text(row.binding_message.as_deref())
        .opt_text(row.client_notification_token.as_deref())
        .opt_text(row.allowed_devices.as_deref())
        .text(&row.status)
        .int(row.interval_secs)
        .int(row.created_at)
        .int(row.expires_at)
}

/// start_claiming.sql's binds ($1..$10).
fn claiming<'a>(
    q: Statement<'a>,
    row: &'a AuthRequestRow,
    (permission_id, intent): (&'a str, &'a str),
    known: &'a KnownDevices<'_>,
    ids: &'a str,
    now: i64,
) -> Statement<'a> {
    q.int(now)
        .text(&row.id)
        .text(permission_id)
        .text(PermissionStatus::Pending.as_str())
        .text(&row.client_id)
        .text(intent)
        .text(known.user_sub)
        .text(DeviceStatus::Active.as_str())
        .int(known.active.len() as i64)
        .text(ids)
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

/// A request with the permission it was started from and its user.
pub type WithContext = (AuthRequestRow, Option<PermissionRow>, Option<UserRow>);

/// The request `id`, its permission and its user, in one statement (left joins): what the
/// token endpoint needs to answer a poll or to redeem an approval.
pub fn find_with_context(conn: &mut DbConnection, id: &str) -> StoreResult<Option<WithContext>> {
    with_context!(conn, auth_requests::id.eq(id))
}

/// [`find_with_context`] by the request's link reference (the authenticating app's view).
pub fn find_by_ref_with_context(
    conn: &mut DbConnection,
    link_ref: &str,
) -> StoreResult<Option<WithContext>> {
    with_context!(conn, auth_requests::link_ref.eq(link_ref))
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

/// Record a user's decision (`Approved` or `Declined`, the device that made it and the
/// methods it reports, a JSON array) if the request is still pending and unexpired at `now`,
/// and return the request as recorded (one statement: `UPDATE ... RETURNING`). `None` when
/// someone else decided first or it expired. What follows from a decision (the permission,
/// the ping) is the caller's: see `ciba_service::requests`.
pub fn record_decision(
    conn: &mut DbConnection,
    id: &str,
    status: RequestStatus,
    device_id: &str,
    amr: &str,
    now: i64,
) -> StoreResult<Option<AuthRequestRow>> {
    let q = Statement::new(template!("sql/record_decision.sql"))
        .text(status.as_str())
        .int(now)
        .text(device_id)
        .text(amr)
        .text(id)
        .text(PENDING);
    Ok(crate::prepared::load::<AuthRequestRow>(conn, q)?.pop())
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

/// Redeem an approved request exactly once, before its expiry. Only the caller that flips
/// `redeemed_at` wins.
pub fn redeem(conn: &mut DbConnection, id: &str, client_id: &str, now: i64) -> StoreResult<bool> {
    let q = Statement::new(template!("sql/redeem.sql"))
        .int(now)
        .text(id)
        .text(client_id)
        .text(RequestStatus::Approved.as_str());
    Ok(crate::prepared::execute(conn, q)? == 1)
}

/// [`redeem`] with its audit event `event`, atomically, returning what the tokens are made
/// of (the request as redeemed, its permission and its user; `None` when nothing was
/// redeemed): on PostgreSQL one statement (one round trip, where a transaction costs two
/// more), on SQLite one transaction. Call outside a transaction.
pub fn redeem_recorded(
    conn: &mut DbConnection,
    (id, client_id): (&str, &str),
    now: i64,
    event: &AuditRow,
) -> StoreResult<Option<WithContext>> {
    let pg = |c: &mut diesel::pg::PgConnection| {
        let q = Statement::new(template!("sql/redeem.pg.sql"))
            .int(now)
            .text(id)
            .text(client_id)
            .text(RequestStatus::Approved.as_str());
        let Some(r) = audit::bind_event(q, event).load::<Redeemed>(c)?.pop() else {
            return Ok(None);
        };
        let permission = from_json(r.permission_json.as_deref(), "the redeemed permission")?;
        let user = from_json(r.user_json.as_deref(), "the redeemed request's user")?;
        Ok(Some((r.request, permission, user)))
    };
    let sqlite = |c: &mut DbConnection| {
        if !redeem(c, id, client_id, now)? {
            return Ok(None);
        }
        find_with_context(c, id)
    };
    audit::with_event(conn, event, Option::is_some, pg, sqlite)
}

#[derive(QueryableByName)]
struct Redeemed {
    #[diesel(embed)]
    request: AuthRequestRow,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    permission_json: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    user_json: Option<String>,
}

/// A signed decision on a request whose end queues no ping, for one PostgreSQL statement
/// (see `ciba_service::requests::decide_signed`).
pub struct OneStatementDecision<'a> {
    /// The decision's jti key and how long it is kept.
    pub jti: (&'a str, i64),
    /// The same for the device JWT that carried the decision.
    pub device_jti: (&'a str, i64),
    pub id: &'a str,
    /// `Approved` or `Declined`.
    pub status: RequestStatus,
    pub device_id: &'a str,
    /// RFC 8176 methods, a JSON array.
    pub amr: &'a str,
}

impl OneStatementDecision<'_> {
    /// Spend both jtis, decide the request (if both were fresh, the device is active and the
    /// request is pending and unexpired at `now`), move its permission and record `event`, in one statement.
    pub fn run(
        &self,
        c: &mut diesel::pg::PgConnection,
        event: &AuditRow,
        now: i64,
    ) -> StoreResult<DecisionWrite> {
        let q = Statement::new(template!("sql/decide.pg.sql"))
            .text(self.jti.0)
            .int(self.jti.1)
            .text(self.status.as_str())
            .int(now)
            .text(self.device_id)
            .text(self.amr)
            .text(self.id)
            .text(PENDING)
            .text(self.status.permission_status().as_str())
            .text(PermissionStatus::Pending.as_str())
            .text(self.device_jti.0)
            .int(self.device_jti.1);
        let q = audit::bind_event(q, event).text(DeviceStatus::Active.as_str());
        let r: Decided = q.get_result(c)?;
        Ok(DecisionWrite {
            jti_fresh: r.spent == 1,
            device_jti_fresh: r.device_spent == 1,
            device_active: r.device_active == 1,
            decided: r.n == 1,
        })
    }
}

/// What [`OneStatementDecision::run`] did.
pub struct DecisionWrite {
    pub jti_fresh: bool,
    pub device_jti_fresh: bool,
    /// The deciding device was active.
    pub device_active: bool,
    pub decided: bool,
}

#[derive(QueryableByName)]
struct Decided {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    spent: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    device_spent: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    device_active: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// How many rows a one-statement step wrote.
#[derive(QueryableByName)]
pub(crate) struct Rows {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) n: i64,
}

/// Mark a pending request past its expiry as expired. Returns true when this call made the
/// change (so what follows, such as its ping, happens once).
pub fn record_expiry(conn: &mut DbConnection, id: &str, now: i64) -> StoreResult<bool> {
    let n = diesel::update(
        auth_requests::table
            .filter(auth_requests::id.eq(id))
            .filter(auth_requests::status.eq(PENDING))
            .filter(auth_requests::expires_at.le(now)),
    )
    .set((
        auth_requests::status.eq(RequestStatus::Expired.as_str()),
        auth_requests::decided_at.eq(now),
    ))
    .execute(conn)?;
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
