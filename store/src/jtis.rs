//! Single-use JWT ids (client assertions, device JWTs): a replay is a uniqueness conflict.

use crate::error::{StoreError, StoreResult};
use crate::schema::used_jtis;
use crate::DbConnection;
use diesel::prelude::*;

/// Record `jti_key` as used until `expires_at`. Returns `false` if it was used before.
/// Concurrent callers with the same key: exactly one gets `true`.
pub fn record(conn: &mut DbConnection, jti_key: &str, expires_at: i64) -> StoreResult<bool> {
    let res = diesel::insert_into(used_jtis::table)
        .values((
            used_jtis::jti_key.eq(jti_key),
            used_jtis::expires_at.eq(expires_at),
        ))
        .execute(conn);
    match res.map_err(StoreError::from) {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict(_)) => Ok(false),
        Err(e) => Err(e),
    }
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
