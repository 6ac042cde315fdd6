//! Sandbox test users (contract §12): the simulated app's device and its sealed key.

use crate::error::StoreResult;
use crate::schema::{sandbox_users, users};
use crate::users::{DeviceRow, UserRow};
use crate::DbConnection;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sandbox_users)]
pub struct SandboxUserRow {
    pub user_sub: String,
    pub device_id: String,
    /// The device's PKCS#8 key, sealed under the key-encryption key `kek_id`, with the
    /// device id as associated data.
    pub private_key: String,
    pub kek_id: String,
    pub behaviour: String,
    pub delay_secs: i64,
    pub created_at: i64,
}

/// Make a test user, its simulated device and the device's sealed key (inside the caller's
/// write transaction).
pub fn create(
    conn: &mut DbConnection,
    user: &UserRow,
    device: &DeviceRow,
    sandbox: &SandboxUserRow,
) -> StoreResult<()> {
    crate::users::insert_user(conn, user)?;
    crate::users::insert_device(conn, device)?;
    diesel::insert_into(sandbox_users::table)
        .values(sandbox)
        .execute(conn)?;
    Ok(())
}

/// Every test user with the user's row, oldest first.
pub fn list(conn: &mut DbConnection) -> StoreResult<Vec<(SandboxUserRow, UserRow)>> {
    Ok(sandbox_users::table
        .inner_join(users::table.on(users::sub.eq(sandbox_users::user_sub)))
        .order(sandbox_users::created_at.asc())
        .then_order_by(users::given_name.asc())
        .select((SandboxUserRow::as_select(), UserRow::as_select()))
        .load(conn)?)
}

pub fn find(conn: &mut DbConnection, user_sub: &str) -> StoreResult<Option<SandboxUserRow>> {
    Ok(sandbox_users::table
        .filter(sandbox_users::user_sub.eq(user_sub))
        .select(SandboxUserRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn count(conn: &mut DbConnection) -> StoreResult<i64> {
    Ok(sandbox_users::table.count().get_result(conn)?)
}

/// Store a simulated device's key sealed anew, under the key-encryption key `kek_id`.
pub fn reseal(
    conn: &mut DbConnection,
    user_sub: &str,
    sealed: &str,
    kek_id: &str,
) -> StoreResult<()> {
    diesel::update(sandbox_users::table.filter(sandbox_users::user_sub.eq(user_sub)))
        .set((
            sandbox_users::private_key.eq(sealed),
            sandbox_users::kek_id.eq(kek_id),
        ))
        .execute(conn)?;
    Ok(())
}
