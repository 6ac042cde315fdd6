//! Users, their enrolled devices and the one-time enrollment codes.

use crate::error::StoreResult;
use crate::schema::{devices, enrollment_codes, users};
use crate::DbConnection;
use ciba_domain::status::DeviceStatus;
use diesel::prelude::*;

/// Deserialize: as PostgreSQL's `row_to_json` has it (`auth_requests::redeem_recorded`).
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Deserialize)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub sub: String,
    pub nnin: String,
    pub given_name: String,
    pub family_name: String,
    pub birthdate: String,
    pub bankid_pid: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Deserialize: as PostgreSQL's `json_agg` of the rows has them (`permissions::claim_for_user`).
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Deserialize)]
#[diesel(table_name = devices)]
pub struct DeviceRow {
    pub id: String,
    pub user_sub: String,
    pub platform: String,
    pub manufacturer: String,
    pub model: String,
    pub public_jwk: String,
    pub name: Option<String>,
    pub status: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// `hwk` or `swk` (RFC 8176), as declared at enrollment.
    pub key_protection: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = enrollment_codes)]
pub struct EnrollmentCodeRow {
    pub code_hash: String,
    pub user_sub: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub device_id: Option<String>,
    pub created_at: i64,
    /// Only a device with a hardware-bound key (`hwk`) may enroll with this code.
    pub require_hwk: bool,
}

const DEVICE_ACTIVE: &str = DeviceStatus::Active.as_str();
const DEVICE_REVOKED: &str = DeviceStatus::Revoked.as_str();

pub fn insert_user(conn: &mut DbConnection, row: &UserRow) -> StoreResult<()> {
    diesel::insert_into(users::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn find_by_sub(conn: &mut DbConnection, sub: &str) -> StoreResult<Option<UserRow>> {
    Ok(users::table
        .filter(users::sub.eq(sub))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn find_by_nnin(conn: &mut DbConnection, nnin: &str) -> StoreResult<Option<UserRow>> {
    Ok(users::table
        .filter(users::nnin.eq(nnin))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn list_users(conn: &mut DbConnection) -> StoreResult<Vec<UserRow>> {
    Ok(users::table
        .order(users::created_at.asc())
        .select(UserRow::as_select())
        .load(conn)?)
}

pub fn insert_enrollment_code(conn: &mut DbConnection, row: &EnrollmentCodeRow) -> StoreResult<()> {
    diesel::insert_into(enrollment_codes::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Mark an unused, unexpired code as used by `device_id`, whose key is hardware-bound when
/// `hwk`. Returns the code's user when this call won; `None` when the code is unknown,
/// expired, already used, or requires a hardware-bound key the device does not have (a code
/// is not spent by a device it refuses). Exactly one caller wins.
pub fn consume_enrollment_code(
    conn: &mut DbConnection,
    code_hash: &str,
    device_id: &str,
    hwk: bool,
    now: i64,
) -> StoreResult<Option<String>> {
    let open = enrollment_codes::table
        .filter(enrollment_codes::code_hash.eq(code_hash))
        .filter(enrollment_codes::used_at.is_null())
        .filter(enrollment_codes::expires_at.gt(now));
    let used = (
        enrollment_codes::used_at.eq(now),
        enrollment_codes::device_id.eq(device_id),
    );
    let n = if hwk {
        diesel::update(open).set(used).execute(conn)?
    } else {
        diesel::update(open.filter(enrollment_codes::require_hwk.eq(false)))
            .set(used)
            .execute(conn)?
    };
    if n != 1 {
        return Ok(None);
    }
    Ok(enrollment_codes::table
        .filter(enrollment_codes::code_hash.eq(code_hash))
        .select(enrollment_codes::user_sub)
        .first(conn)
        .optional()?)
}

/// Hold `user_sub`'s row until the transaction ends (PostgreSQL; SQLite has one writer at a
/// time already), so two enrollments for one user count their devices one after the other.
pub fn lock_user(conn: &mut DbConnection, user_sub: &str) -> StoreResult<()> {
    if let DbConnection::Pg(pg) = conn {
        diesel::sql_query("SELECT 1 FROM users WHERE sub = $1 FOR UPDATE")
            .bind::<diesel::sql_types::Text, _>(user_sub)
            .execute(pg)?;
    }
    Ok(())
}

/// The user of an unused, unexpired code.
pub fn user_of_open_code(
    conn: &mut DbConnection,
    code_hash: &str,
    now: i64,
) -> StoreResult<Option<String>> {
    Ok(enrollment_codes::table
        .filter(enrollment_codes::code_hash.eq(code_hash))
        .filter(enrollment_codes::used_at.is_null())
        .filter(enrollment_codes::expires_at.gt(now))
        .select(enrollment_codes::user_sub)
        .first(conn)
        .optional()?)
}

/// Codes neither used nor expired at `now`, of `user_sub` if given.
pub fn list_enrollment_codes(
    conn: &mut DbConnection,
    user_sub: Option<&str>,
    now: i64,
) -> StoreResult<Vec<EnrollmentCodeRow>> {
    let mut q = enrollment_codes::table
        .filter(enrollment_codes::used_at.is_null())
        .filter(enrollment_codes::expires_at.gt(now))
        .into_boxed();
    if let Some(sub) = user_sub {
        q = q.filter(enrollment_codes::user_sub.eq(sub.to_owned()));
    }
    Ok(q.order(enrollment_codes::created_at.asc())
        .select(EnrollmentCodeRow::as_select())
        .load(conn)?)
}

/// End an unused code now (it can no longer enroll anything). False when it is unknown,
/// used or expired already.
pub fn revoke_enrollment_code(
    conn: &mut DbConnection,
    code_hash: &str,
    now: i64,
) -> StoreResult<bool> {
    let n = diesel::update(
        enrollment_codes::table
            .filter(enrollment_codes::code_hash.eq(code_hash))
            .filter(enrollment_codes::used_at.is_null())
            .filter(enrollment_codes::expires_at.gt(now)),
    )
    .set(enrollment_codes::expires_at.eq(now))
    .execute(conn)?;
    Ok(n == 1)
}

pub fn insert_device(conn: &mut DbConnection, row: &DeviceRow) -> StoreResult<()> {
    diesel::insert_into(devices::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn find_device(conn: &mut DbConnection, id: &str) -> StoreResult<Option<DeviceRow>> {
    Ok(devices::table
        .filter(devices::id.eq(id))
        .select(DeviceRow::as_select())
        .first(conn)
        .optional()?)
}

/// Whether device `id` is enrolled and active.
pub fn device_is_active(conn: &mut DbConnection, id: &str) -> StoreResult<bool> {
    let found = devices::table
        .filter(devices::id.eq(id))
        .filter(devices::status.eq(DEVICE_ACTIVE))
        .select(devices::id)
        .first::<String>(conn)
        .optional()?;
    Ok(found.is_some())
}

pub fn active_devices_of(conn: &mut DbConnection, user_sub: &str) -> StoreResult<Vec<DeviceRow>> {
    Ok(devices::table
        .filter(devices::user_sub.eq(user_sub))
        .filter(devices::status.eq(DEVICE_ACTIVE))
        .select(DeviceRow::as_select())
        .load(conn)?)
}

/// Who a user is looked up by.
pub enum UserKey<'a> {
    Sub(&'a str),
    Nnin(&'a str),
}

/// A user's `sub` and active devices, in one statement (a left join); `None` when no such
/// user exists.
pub fn with_active_devices(
    conn: &mut DbConnection,
    who: UserKey<'_>,
) -> StoreResult<Option<(String, Vec<DeviceRow>)>> {
    macro_rules! load {
        ($filter:expr) => {
            users::table
                .left_join(
                    devices::table.on(devices::user_sub
                        .eq(users::sub)
                        .and(devices::status.eq(DEVICE_ACTIVE))),
                )
                .filter($filter)
                .select((users::sub, Option::<DeviceRow>::as_select()))
                .load::<(String, Option<DeviceRow>)>(conn)?
        };
    }
    let rows = match who {
        UserKey::Sub(sub) => load!(users::sub.eq(sub)),
        UserKey::Nnin(nnin) => load!(users::nnin.eq(nnin)),
    };
    let Some(sub) = rows.first().map(|(sub, _)| sub.clone()) else {
        return Ok(None);
    };
    Ok(Some((
        sub,
        rows.into_iter().filter_map(|(_, d)| d).collect(),
    )))
}

pub fn list_devices(
    conn: &mut DbConnection,
    user_sub: Option<&str>,
) -> StoreResult<Vec<DeviceRow>> {
    let mut q = devices::table
        .order(devices::created_at.asc())
        .select(DeviceRow::as_select())
        .into_boxed();
    if let Some(sub) = user_sub {
        q = q.filter(devices::user_sub.eq(sub.to_owned()));
    }
    Ok(q.load(conn)?)
}

/// Revoke an active device. Returns false when it is unknown or already revoked.
pub fn revoke_device(conn: &mut DbConnection, id: &str, now: i64) -> StoreResult<bool> {
    let n = diesel::update(
        devices::table
            .filter(devices::id.eq(id))
            .filter(devices::status.eq(DEVICE_ACTIVE)),
    )
    .set((
        devices::status.eq(DEVICE_REVOKED),
        devices::revoked_at.eq(now),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Delete up to `limit` enrollment codes that expired before `before`; returns how many went.
pub fn purge_expired_codes(conn: &mut DbConnection, before: i64, limit: i64) -> StoreResult<usize> {
    let batch: Vec<String> = enrollment_codes::table
        .filter(enrollment_codes::expires_at.lt(before))
        .select(enrollment_codes::code_hash)
        .limit(limit)
        .load(conn)?;
    if batch.is_empty() {
        return Ok(0);
    }
    Ok(
        diesel::delete(enrollment_codes::table.filter(enrollment_codes::code_hash.eq_any(batch)))
            .execute(conn)?,
    )
}
