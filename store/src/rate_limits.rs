//! Counters of the abuse limits (contract §10), shared by every API replica.

use crate::error::StoreResult;
use crate::schema::rate_limits;
use crate::DbConnection;
use diesel::prelude::*;

/// Count events in several buckets at once (the group commit of the abuse limits): each
/// `(bucket, events, expires_at)` adds `events` to its window, and the answer is each
/// window's count including them, in the order given. Buckets must be distinct; give them in
/// a fixed order (sorted) so that batches of every replica lock their rows alike. One
/// statement on PostgreSQL; on SQLite, under the single writer, one transaction.
pub fn hit_many(conn: &mut DbConnection, counts: &[(String, i64, i64)]) -> StoreResult<Vec<i64>> {
    use diesel::upsert::excluded;
    let rows: Vec<_> = counts
        .iter()
        .map(|(bucket, events, expires_at)| {
            (
                rate_limits::bucket.eq(bucket),
                rate_limits::hits.eq(*events),
                rate_limits::expires_at.eq(*expires_at),
            )
        })
        .collect();
    let totals: Vec<(String, i64)> = match conn {
        DbConnection::Pg(c) => diesel::insert_into(rate_limits::table)
            .values(&rows)
            .on_conflict(rate_limits::bucket)
            .do_update()
            .set(rate_limits::hits.eq(rate_limits::hits + excluded(rate_limits::hits)))
            .returning((rate_limits::bucket, rate_limits::hits))
            .get_results(c)?,
        DbConnection::Sqlite(c) => c.transaction(|c| {
            for row in &rows {
                diesel::insert_into(rate_limits::table)
                    .values(*row)
                    .on_conflict(rate_limits::bucket)
                    .do_update()
                    .set(rate_limits::hits.eq(rate_limits::hits + excluded(rate_limits::hits)))
                    .execute(c)?;
            }
            rate_limits::table
                .filter(rate_limits::bucket.eq_any(counts.iter().map(|(b, _, _)| b)))
                .select((rate_limits::bucket, rate_limits::hits))
                .load(c)
        })?,
    };
    let totals: std::collections::HashMap<String, i64> = totals.into_iter().collect();
    counts
        .iter()
        .map(|(bucket, _, _)| {
            totals.get(bucket).copied().ok_or_else(|| {
                crate::StoreError::Other(format!(
                    "no count returned for a bucket of {}",
                    counts.len()
                ))
            })
        })
        .collect()
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
