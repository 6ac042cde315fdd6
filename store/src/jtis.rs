//! Single-use JWT ids (client assertions, device JWTs, signed decisions): a replay is a
//! uniqueness conflict, answered without an error.

use crate::error::StoreResult;
use crate::schema::used_jtis;
use crate::DbConnection;
use diesel::prelude::*;

/// Record `jti_key` as used until `expires_at`. Returns `false` if it was used before.
/// Concurrent callers with the same key: exactly one gets `true`.
pub fn record(conn: &mut DbConnection, jti_key: &str, expires_at: i64) -> StoreResult<bool> {
    // No error for a used id: inside a larger transaction (a decision and its jti commit
    // together) PostgreSQL would abort the whole transaction on a unique violation.
    // (Each backend on its own: diesel's MultiConnection has no ON CONFLICT.)
    let row = (
        used_jtis::jti_key.eq(jti_key),
        used_jtis::expires_at.eq(expires_at),
    );
    let insert = diesel::insert_into(used_jtis::table).values(row);
    let inserted = match conn {
        DbConnection::Pg(c) => insert.on_conflict_do_nothing().execute(c)?,
        DbConnection::Sqlite(c) => insert.on_conflict_do_nothing().execute(c)?,
    };
    Ok(inserted == 1)
}

/// Delete up to `limit` ids that expired before `now`; returns how many went.
pub fn purge_expired(conn: &mut DbConnection, now: i64, limit: i64) -> StoreResult<usize> {
    let batch: Vec<String> = used_jtis::table
        .filter(used_jtis::expires_at.lt(now))
        .select(used_jtis::jti_key)
        .limit(limit)
        .load(conn)?;
    if batch.is_empty() {
        return Ok(0);
    }
    Ok(diesel::delete(used_jtis::table.filter(used_jtis::jti_key.eq_any(batch))).execute(conn)?)
}
