//! Polls of the CIBA token endpoint, the hot path: recording well-paced polls many at once,
//! and `slow_down`. The pacing rule is the domain's (`ciba_domain::auth_request::well_paced`);
//! each backend states it once, in its own SQL: PostgreSQL in the function `ciba_poll_due`
//! of the initial migration (used by `ciba_record_polls`), SQLite in
//! `record_polls.sqlite.sql`. The store's `poll_batch` tests hold both to the domain's table.

use crate::error::StoreResult;
use crate::schema::auth_requests;
use crate::DbConnection;
use ciba_domain::status::RequestStatus;
use diesel::prelude::*;

diesel::define_sql_function! {
    /// See the initial PostgreSQL migration. Set-returning: one row per recorded poll.
    fn ciba_record_polls(
        ids: diesel::sql_types::Array<diesel::sql_types::Text>,
        client_ids: diesel::sql_types::Array<diesel::sql_types::Text>,
        now_ms: diesel::sql_types::Array<diesel::sql_types::BigInt>,
        grace_ms: diesel::sql_types::BigInt,
        wait: diesel::sql_types::Bool,
    ) -> diesel::sql_types::Text;
}

/// The SQLite statement without its comment lines, which SQLite would otherwise parse again
/// with every batch (the statement is prepared afresh each time).
static SQLITE_RECORD_POLLS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    include_str!("record_polls.sqlite.sql")
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
});

/// One poll: the request, the polling client, when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    pub id: String,
    pub client_id: String,
    pub now_ms: i64,
}

/// Record well-paced polls of pending, unexpired requests of their clients, many at once
/// (distinct requests; `result[i]` answers `polls[i]`). False means "look closer" (too
/// fast, finished, unknown, another client's). PostgreSQL waits for rows other
/// transactions hold up to the function's `lock_timeout` (20 ms), then skips them (such a
/// poll answers false and takes the careful path). Callers give the polls in the order of
/// their ids, so concurrent batches cannot deadlock.
pub fn record_polls(
    conn: &mut DbConnection,
    polls: &[Poll],
    grace_ms: i64,
) -> StoreResult<Vec<bool>> {
    record(conn, polls, grace_ms, false)
}

/// One poll recorded as [`record_polls`] would, but waiting for the row as long as another
/// transaction holds it: for the careful path, which has already read the request as pending
/// and the poll as well paced. False when the row changed first (decided, expired, polled).
pub fn record_poll(conn: &mut DbConnection, poll: &Poll, grace_ms: i64) -> StoreResult<bool> {
    Ok(record(conn, std::slice::from_ref(poll), grace_ms, true)?[0])
}

fn record(
    conn: &mut DbConnection,
    polls: &[Poll],
    grace_ms: i64,
    wait: bool,
) -> StoreResult<Vec<bool>> {
    if polls.is_empty() {
        return Ok(Vec::new());
    }
    let recorded: std::collections::HashSet<String> = match conn {
        DbConnection::Pg(pg) => {
            let ids: Vec<&str> = polls.iter().map(|p| p.id.as_str()).collect();
            let clients: Vec<&str> = polls.iter().map(|p| p.client_id.as_str()).collect();
            let nows: Vec<i64> = polls.iter().map(|p| p.now_ms).collect();
            diesel::select(ciba_record_polls(ids, clients, nows, grace_ms, wait))
                .load::<String>(pg)?
                .into_iter()
                .collect()
        }
        DbConnection::Sqlite(lite) => {
            // One statement per batch: SQLite prepares every UPDATE afresh, so parse once.
            // (SQLite has one writer at a time: there is no row to wait for.)
            let values = vec!["(?, ?, ?)"; polls.len()].join(", ");
            let sql = SQLITE_RECORD_POLLS.replace("/*POLLS*/", &values);
            let mut query = diesel::sql_query(sql).into_boxed::<diesel::sqlite::Sqlite>();
            for p in polls {
                query = query
                    .bind::<diesel::sql_types::Text, _>(p.id.clone())
                    .bind::<diesel::sql_types::Text, _>(p.client_id.clone())
                    .bind::<diesel::sql_types::BigInt, _>(p.now_ms);
            }
            query
                .bind::<diesel::sql_types::BigInt, _>(grace_ms)
                .load::<RecordedId>(lite)?
                .into_iter()
                .map(|r| r.id)
                .collect()
        }
    };
    Ok(polls.iter().map(|p| recorded.contains(&p.id)).collect())
}

#[derive(QueryableByName)]
struct RecordedId {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
}

/// A poll came too fast: the interval grows by 5 s (RFC 8628 §3.5), up to `max_interval`,
/// and the poll counts as the last one.
pub fn slow_down(
    conn: &mut DbConnection,
    id: &str,
    now_ms: i64,
    max_interval: i64,
) -> StoreResult<()> {
    diesel::update(
        auth_requests::table
            .filter(auth_requests::id.eq(id))
            .filter(auth_requests::status.eq(RequestStatus::Pending.as_str()))
            .filter(auth_requests::interval_secs.lt(max_interval)),
    )
    .set(auth_requests::interval_secs.eq(auth_requests::interval_secs + 5_i64))
    .execute(conn)?;
    diesel::update(auth_requests::table.filter(auth_requests::id.eq(id)))
        .set(auth_requests::last_poll_ms.eq(now_ms))
        .execute(conn)?;
    Ok(())
}
