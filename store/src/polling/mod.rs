//! Polls of the CIBA token endpoint, the hot path: well-paced polls recorded and too-early
//! polls slowed down, many at once, in one call. Only a well-paced poll counts as the
//! request's last poll (`last_poll_ms`); a too-early one grows the interval (up to
//! [`MAX_INTERVAL_SECS`]) and is marked in `slowed_down_ms`, so once the interval is at its
//! maximum a too-early poll writes nothing: `slow_down` is then answered from a read, the
//! cheapest answer the server gives. The pacing rules are the domain's
//! (`ciba_domain::auth_request::{well_paced, slowed_interval}`); each backend states them in
//! its own SQL: PostgreSQL in the functions `ciba_poll_due` and `ciba_paced_interval` of the
//! initial migration (used by `ciba_record_polls`, migration 2026-12-05-000001), SQLite in
//! `record_polls.sqlite.sql` and `capped_polls.sqlite.sql`. The
//! store's `poll_batch` tests hold both to the domain's table.

use crate::error::StoreResult;
use crate::prepared::{template, Statement};
use crate::schema::auth_requests;
use crate::DbConnection;
use ciba_domain::auth_request::{slowed_interval, MAX_INTERVAL_SECS};
use ciba_domain::status::RequestStatus;
use diesel::prelude::*;
use std::collections::{HashMap, HashSet};

diesel::define_sql_function! {
    /// See PostgreSQL migrations 2026-12-03-000001 and 2026-12-05-000001. Set-returning: one
    /// (id, slowed) per recorded or slowed poll.
    fn ciba_record_polls(
        ids: diesel::sql_types::Array<diesel::sql_types::Text>,
        client_ids: diesel::sql_types::Array<diesel::sql_types::Text>,
        now_ms: diesel::sql_types::Array<diesel::sql_types::BigInt>,
        grace_ms: diesel::sql_types::BigInt,
        wait: diesel::sql_types::Bool,
        max_interval: diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
    ) -> diesel::pg::sql_types::Record<(diesel::sql_types::Text, diesel::sql_types::Bool)>;
}

/// One poll: the request, the polling client, when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    pub id: String,
    pub client_id: String,
    pub now_ms: i64,
}

/// What a batch made of one poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paced {
    /// Well paced, pending: recorded as the last poll (`authorization_pending`).
    Recorded,
    /// Too early, pending: the interval grown, unless at its maximum (`slow_down`).
    SlowedDown,
    /// Finished, expired, unknown, another client's, or held by another transaction: the
    /// caller reads the request and answers from what it holds.
    LookCloser,
}

/// Record the polls of pending, unexpired requests of their clients, many at once in one
/// call (distinct requests; `result[i]` answers `polls[i]`): a well-paced poll is
/// recorded, a too-early one slowed down (written only while its interval can grow), each
/// under the pacing rule at its own time. PostgreSQL waits
/// for rows other transactions hold up to the function's `lock_timeout` (20 ms), then skips
/// them (such a poll is [`Paced::LookCloser`]). Callers give the polls in the order of their
/// ids, so concurrent batches cannot deadlock.
pub fn record_polls(
    conn: &mut DbConnection,
    polls: &[Poll],
    grace_ms: i64,
) -> StoreResult<Vec<Paced>> {
    record(conn, polls, grace_ms, false)
}

/// One well-paced poll recorded as [`record_polls`] would, but waiting for the row as long as
/// another transaction holds it, and never slowing down: for the careful path, which has
/// already read the request as pending and the poll as well paced. False when the row
/// changed first (decided, expired, polled).
pub fn record_poll(conn: &mut DbConnection, poll: &Poll, grace_ms: i64) -> StoreResult<bool> {
    Ok(record(conn, std::slice::from_ref(poll), grace_ms, true)?[0] == Paced::Recorded)
}

/// `wait`: the careful path's one poll (wait for held rows, record only if well paced).
fn record(
    conn: &mut DbConnection,
    polls: &[Poll],
    grace_ms: i64,
    wait: bool,
) -> StoreResult<Vec<Paced>> {
    if polls.is_empty() {
        return Ok(Vec::new());
    }
    let max_interval = (!wait).then_some(MAX_INTERVAL_SECS);
    let answered: HashMap<String, Paced> = match conn {
        DbConnection::Pg(pg) => {
            let ids: Vec<&str> = polls.iter().map(|p| p.id.as_str()).collect();
            let clients: Vec<&str> = polls.iter().map(|p| p.client_id.as_str()).collect();
            let nows: Vec<i64> = polls.iter().map(|p| p.now_ms).collect();
            diesel::select(ciba_record_polls(
                ids,
                clients,
                nows,
                grace_ms,
                wait,
                max_interval,
            ))
            .load::<(String, bool)>(pg)?
            .into_iter()
            .map(|(id, slowed)| (id, paced(slowed)))
            .collect()
        }
        // SQLite has one writer at a time: there is no row to wait for.
        DbConnection::Sqlite(lite) => sqlite_record(lite, polls, grace_ms, max_interval)?
            .into_iter()
            .map(|(id, slowed)| (id, paced(slowed)))
            .collect(),
    };
    Ok(polls
        .iter()
        .map(|p| answered.get(&p.id).copied().unwrap_or(Paced::LookCloser))
        .collect())
}

fn paced(slowed: bool) -> Paced {
    if slowed {
        Paced::SlowedDown
    } else {
        Paced::Recorded
    }
}

/// record_polls.sqlite.sql over a batch, then, for the polls it did not write (when it may
/// slow down), capped_polls.sqlite.sql. The polls go as one JSON parameter, so one prepared
/// statement serves every batch size. Each commits on its own: the read only answers polls
/// of pending, unexpired, capped requests, which nothing written between the two (by another
/// process) can make wrong, and a row the first wrote is not offered to it (a recorded poll
/// would look too early). Should the read fail, the polls it would have answered are left
/// to the careful path instead of failing those the first statement has recorded.
fn sqlite_record(
    lite: &mut diesel::SqliteConnection,
    polls: &[Poll],
    grace_ms: i64,
    max_interval: Option<i64>,
) -> StoreResult<Vec<(String, bool)>> {
    let now_ms: HashMap<&str, i64> = polls.iter().map(|p| (p.id.as_str(), p.now_ms)).collect();
    let mut answered: Vec<(String, bool)> = Statement::new(template!("record_polls.sqlite.sql"))
        .int(grace_ms)
        .opt_int(max_interval)
        .text(&polls_json(polls.iter())?)
        .load::<RecordedPoll>(lite)?
        .into_iter()
        .map(|r| {
            // A slowed poll's mark is its own time; a recorded one's is older.
            let slowed =
                r.slowed_down_ms.is_some() && r.slowed_down_ms == now_ms.get(&*r.id).copied();
            (r.id, slowed)
        })
        .collect();
    if max_interval.is_some() && answered.len() < polls.len() {
        let written: HashSet<&str> = answered.iter().map(|(id, _)| id.as_str()).collect();
        let left = polls.iter().filter(|p| !written.contains(p.id.as_str()));
        let capped = Statement::new(template!("capped_polls.sqlite.sql"))
            .int(grace_ms)
            .opt_int(max_interval)
            .text(&polls_json(left)?)
            .load::<CappedPoll>(lite);
        match capped {
            Ok(capped) => answered.extend(capped.into_iter().map(|c| (c.id, true))),
            Err(e) => tracing::warn!(error = %e, "the read of too-early polls failed"),
        }
    }
    Ok(answered)
}

/// `[[id, client id, now in ms], ...]`.
fn polls_json<'a>(polls: impl Iterator<Item = &'a Poll>) -> StoreResult<String> {
    let rows: Vec<(&str, &str, i64)> = polls
        .map(|p| (p.id.as_str(), p.client_id.as_str(), p.now_ms))
        .collect();
    serde_json::to_string(&rows).map_err(|e| crate::StoreError::Other(e.to_string()))
}

#[derive(QueryableByName)]
struct RecordedPoll {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    slowed_down_ms: Option<i64>,
}

#[derive(QueryableByName)]
struct CappedPoll {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
}

/// A poll came too fast (seen by the careful path, which read the interval as
/// `read_interval`): the interval grows as the domain says and the poll is marked in
/// `slowed_down_ms`; it does not count as the last poll. When another poll grew the interval
/// first, it is not grown twice; at the maximum there is nothing to write.
pub fn slow_down(
    conn: &mut DbConnection,
    id: &str,
    read_interval: i64,
    now_ms: i64,
) -> StoreResult<()> {
    let grown = slowed_interval(read_interval);
    if grown == read_interval {
        return Ok(());
    }
    diesel::update(
        auth_requests::table
            .filter(auth_requests::id.eq(id))
            .filter(auth_requests::status.eq(RequestStatus::Pending.as_str()))
            .filter(auth_requests::interval_secs.eq(read_interval)),
    )
    .set((
        auth_requests::interval_secs.eq(grown),
        auth_requests::slowed_down_ms.eq(now_ms),
    ))
    .execute(conn)?;
    Ok(())
}
