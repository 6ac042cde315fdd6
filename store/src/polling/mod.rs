//! Polls of the CIBA token endpoint, the hot path: well-paced polls recorded and too-early
//! polls slowed down, many at once. The pacing rule is the domain's
//! (`ciba_domain::auth_request::{well_paced, slowed_interval}`); each backend states it once,
//! in its own SQL: PostgreSQL in the functions `ciba_poll_due` and `ciba_record_polls` of the
//! initial migration, SQLite in `record_polls.sqlite.sql` and `slow_down.sqlite.sql`. The
//! store's `poll_batch` tests hold both to the domain's table.

use crate::error::StoreResult;
use crate::schema::auth_requests;
use crate::DbConnection;
use ciba_domain::auth_request::{slowed_interval, MAX_INTERVAL_SECS};
use ciba_domain::status::RequestStatus;
use diesel::prelude::*;
use std::collections::HashMap;

diesel::define_sql_function! {
    /// See the initial PostgreSQL migration. Set-returning: one (id, slowed) per recorded or
    /// slowed poll.
    fn ciba_record_polls(
        ids: diesel::sql_types::Array<diesel::sql_types::Text>,
        client_ids: diesel::sql_types::Array<diesel::sql_types::Text>,
        now_ms: diesel::sql_types::Array<diesel::sql_types::BigInt>,
        grace_ms: diesel::sql_types::BigInt,
        wait: diesel::sql_types::Bool,
        max_interval: diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
    ) -> diesel::pg::sql_types::Record<(diesel::sql_types::Text, diesel::sql_types::Bool)>;
}

/// An SQLite statement without its comment lines, which SQLite would otherwise parse again
/// with every batch (the statement is prepared afresh each time).
fn without_comments(sql: &str) -> String {
    sql.lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}

static SQLITE_RECORD_POLLS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| without_comments(include_str!("record_polls.sqlite.sql")));
static SQLITE_SLOW_DOWN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| without_comments(include_str!("slow_down.sqlite.sql")));

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
    /// Too early, pending: recorded as the last poll and the interval grown (`slow_down`).
    SlowedDown,
    /// Finished, expired, unknown, another client's, or held by another transaction: the
    /// caller reads the request and answers from what it holds.
    LookCloser,
}

/// Record the polls of pending, unexpired requests of their clients, many at once
/// (distinct requests; `result[i]` answers `polls[i]`): a well-paced poll is recorded, a
/// too-early one slowed down, each under the pacing rule at its own time. PostgreSQL waits
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
    let answered: HashMap<String, Paced> = match conn {
        DbConnection::Pg(pg) => {
            let ids: Vec<&str> = polls.iter().map(|p| p.id.as_str()).collect();
            let clients: Vec<&str> = polls.iter().map(|p| p.client_id.as_str()).collect();
            let nows: Vec<i64> = polls.iter().map(|p| p.now_ms).collect();
            let max_interval = (!wait).then_some(MAX_INTERVAL_SECS);
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
        DbConnection::Sqlite(lite) => {
            // SQLite has one writer at a time: there is no row to wait for.
            let mut answered: HashMap<String, Paced> =
                sqlite_batch(lite, &SQLITE_RECORD_POLLS, polls, (&[], &[grace_ms]))?
                    .into_iter()
                    .map(|id| (id, Paced::Recorded))
                    .collect();
            let rest: Vec<Poll> = polls
                .iter()
                .filter(|p| !answered.contains_key(&p.id))
                .cloned()
                .collect();
            if !wait && !rest.is_empty() {
                let slowed = sqlite_batch(
                    lite,
                    &SQLITE_SLOW_DOWN,
                    &rest,
                    (&[grace_ms, MAX_INTERVAL_SECS], &[]),
                )?;
                answered.extend(slowed.into_iter().map(|id| (id, Paced::SlowedDown)));
            }
            answered
        }
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

/// One SQLite statement over a batch: `sql` with its `/*POLLS*/` list of values, and its
/// other parameters bound `before` and `after` the list's (in the order SQLite numbers them:
/// slow_down.sqlite.sql numbers its two before the list, record_polls.sqlite.sql has its
/// one after it).
fn sqlite_batch(
    lite: &mut diesel::SqliteConnection,
    sql: &str,
    polls: &[Poll],
    (before, after): (&[i64], &[i64]),
) -> StoreResult<Vec<String>> {
    let values = vec!["(?, ?, ?)"; polls.len()].join(", ");
    let mut query =
        diesel::sql_query(sql.replace("/*POLLS*/", &values)).into_boxed::<diesel::sqlite::Sqlite>();
    for v in before {
        query = query.bind::<diesel::sql_types::BigInt, _>(*v);
    }
    for p in polls {
        query = query
            .bind::<diesel::sql_types::Text, _>(p.id.clone())
            .bind::<diesel::sql_types::Text, _>(p.client_id.clone())
            .bind::<diesel::sql_types::BigInt, _>(p.now_ms);
    }
    for v in after {
        query = query.bind::<diesel::sql_types::BigInt, _>(*v);
    }
    Ok(query
        .load::<RecordedId>(lite)?
        .into_iter()
        .map(|r| r.id)
        .collect())
}

#[derive(QueryableByName)]
struct RecordedId {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
}

/// A poll came too fast (seen by the careful path, which read the interval as
/// `read_interval`): the interval grows as the domain says, and the poll counts as the last
/// one. When another poll grew the interval first, it is not grown twice.
pub fn slow_down(
    conn: &mut DbConnection,
    id: &str,
    read_interval: i64,
    now_ms: i64,
) -> StoreResult<()> {
    diesel::update(
        auth_requests::table
            .filter(auth_requests::id.eq(id))
            .filter(auth_requests::status.eq(RequestStatus::Pending.as_str()))
            .filter(auth_requests::interval_secs.eq(read_interval)),
    )
    .set(auth_requests::interval_secs.eq(slowed_interval(read_interval)))
    .execute(conn)?;
    diesel::update(auth_requests::table.filter(auth_requests::id.eq(id)))
        .set(auth_requests::last_poll_ms.eq(now_ms))
        .execute(conn)?;
    Ok(())
}
