//! Counters of the abuse limits (contract §10), shared by every API replica.

use crate::error::StoreResult;
use crate::prepared::{template, Statement};
use crate::schema::rate_limits;
use crate::DbConnection;
use diesel::prelude::*;

/// A window's count after a batch.
#[derive(QueryableByName)]
struct Total {
    #[diesel(sql_type = diesel::sql_types::Text)]
    bucket: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    hits: i64,
}

/// Count events in several buckets at once (the group commit of the abuse limits): each
/// `(bucket, events, expires_at)` adds `events` to its window, and the answer is each
/// window's count including them, in the order given. Buckets must be distinct; give them in
/// a fixed order (sorted) so that batches of every replica lock their rows alike. One
/// prepared statement on both backends, the batch its one (JSON) parameter.
pub fn hit_many(conn: &mut DbConnection, counts: &[(String, i64, i64)]) -> StoreResult<Vec<i64>> {
    let batch: Vec<serde_json::Value> = counts
        .iter()
        .map(|(bucket, events, expires_at)| serde_json::json!({"b": bucket, "h": events, "e": expires_at}))
        .collect();
    let batch = serde_json::Value::from(batch).to_string();
    let template = match conn {
        DbConnection::Pg(_) => template!("sql/count_limits.pg.sql"),
        DbConnection::Sqlite(_) => template!("sql/count_limits.sqlite.sql"),
    };
    let totals: Vec<Total> = crate::prepared::load(conn, Statement::new(template).text(&batch))?;
    let totals: std::collections::HashMap<String, i64> =
        totals.into_iter().map(|t| (t.bucket, t.hits)).collect();
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
