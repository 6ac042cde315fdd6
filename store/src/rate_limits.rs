//! Counters of the abuse limits (contract §10), shared by every API replica.

use crate::error::StoreResult;
use crate::schema::rate_limits;
use crate::DbConnection;
use diesel::prelude::*;

/// Count one event in `bucket` (a limit, a subject and a window) and return the window's
/// count including it. Concurrent callers each get a distinct count: the upsert locks the
/// row (PostgreSQL) or runs under the single writer (SQLite). Call inside a transaction.
pub fn hit(conn: &mut DbConnection, bucket: &str, expires_at: i64) -> StoreResult<i64> {
    macro_rules! upsert {
        ($c:expr) => {
            diesel::insert_into(rate_limits::table)
                .values((
                    rate_limits::bucket.eq(bucket),
                    rate_limits::hits.eq(1i64),
                    rate_limits::expires_at.eq(expires_at),
                ))
                .on_conflict(rate_limits::bucket)
                .do_update()
                .set(rate_limits::hits.eq(rate_limits::hits + 1i64))
                .execute($c)
        };
    }
    match conn {
        DbConnection::Pg(c) => upsert!(c)?,
        DbConnection::Sqlite(c) => upsert!(c)?,
    };
    Ok(rate_limits::table
        .find(bucket)
        .select(rate_limits::hits)
        .first(conn)?)
}

/// [`hit`] in a transaction of its own.
pub fn hit_in_transaction(
    conn: &mut DbConnection,
    bucket: &str,
    expires_at: i64,
) -> StoreResult<i64> {
    conn.transaction(|c| hit(c, bucket, expires_at))
}

/// The count of `bucket` so far (0 when nothing was counted).
pub fn count(conn: &mut DbConnection, bucket: &str) -> StoreResult<i64> {
    Ok(rate_limits::table
        .find(bucket)
        .select(rate_limits::hits)
        .first(conn)
        .optional()?
        .unwrap_or(0))
}

/// Delete up to `limit` windows that ended before `now`; returns how many went.
pub fn purge_expired(conn: &mut DbConnection, now: i64, limit: i64) -> StoreResult<usize> {
    let batch: Vec<String> = rate_limits::table
        .filter(rate_limits::expires_at.lt(now))
        .select(rate_limits::bucket)
        .limit(limit)
        .load(conn)?;
    if batch.is_empty() {
        return Ok(0);
    }
    Ok(
        diesel::delete(rate_limits::table.filter(rate_limits::bucket.eq_any(batch)))
            .execute(conn)?,
    )
}
