//! The job queue. A job is enqueued in the same transaction as the change that causes it;
//! workers claim jobs with a lease (`locked_until`), so a job whose worker died is claimed
//! again once its lease lapses. Claiming on PostgreSQL uses `FOR UPDATE SKIP LOCKED`, so
//! concurrent workers never take the same job; every later change is fenced on `locked_by`,
//! so a worker whose lease was taken over cannot overwrite the new owner's outcome.
//! On SQLite a claim is a conditional update (one worker is the supported setup).

use crate::error::StoreResult;
use crate::schema::jobs;
use crate::DbConnection;
use diesel::prelude::*;

pub const QUEUED: &str = "queued";
pub const RUNNING: &str = "running";
pub const DONE: &str = "done";
pub const DEAD: &str = "dead";

/// A ping notification for one authentication request (payload: `{"auth_req_id"}`).
pub const KIND_PING: &str = "ping";

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = jobs)]
pub struct JobRow {
    pub id: String,
    pub kind: String,
    pub payload: String,
    pub status: String,
    pub attempts: i32,
    pub run_at: i64,
    pub locked_by: Option<String>,
    pub locked_until: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Enqueue a job unless one with the same id exists (ids are derived from what caused the
/// job, so the same cause never queues twice). Returns whether this call queued it.
pub fn enqueue(
    conn: &mut DbConnection,
    id: &str,
    kind: &str,
    payload: &str,
    now: i64,
) -> StoreResult<bool> {
    let exists = jobs::table
        .filter(jobs::id.eq(id))
        .count()
        .get_result::<i64>(conn)?
        > 0;
    if exists {
        return Ok(false);
    }
    diesel::insert_into(jobs::table)
        .values(&JobRow {
            id: id.to_owned(),
            kind: kind.to_owned(),
            payload: payload.to_owned(),
            status: QUEUED.to_owned(),
            attempts: 0,
            run_at: now,
            locked_by: None,
            locked_until: None,
            last_error: None,
            created_at: now,
            updated_at: now,
        })
        .execute(conn)?;
    Ok(true)
}

/// Queue the ping notification of a finished request, in the caller's transaction (the
/// outcome and its notification commit together or not at all). Only the event: how often
/// it is tried is the worker's policy.
pub fn enqueue_ping(conn: &mut DbConnection, auth_req_id: &str, now: i64) -> StoreResult<bool> {
    let payload = serde_json::json!({ "auth_req_id": auth_req_id }).to_string();
    enqueue(conn, &ping_job_id(auth_req_id), KIND_PING, &payload, now)
}

/// The id of the ping job for `auth_req_id`: at most one per request.
pub fn ping_job_id(auth_req_id: &str) -> String {
    format!("ping:{auth_req_id}")
}

/// The job `id` as long as `worker` holds it.
macro_rules! held {
    ($id:expr, $worker:expr) => {
        jobs::table
            .filter(jobs::id.eq($id))
            .filter(jobs::locked_by.eq($worker))
            .filter(jobs::status.eq(RUNNING))
    };
}

/// Jobs that may be claimed at `now`: queued and due, or running with a lapsed lease.
macro_rules! claimable {
    ($now:expr) => {
        jobs::status
            .eq(QUEUED)
            .and(jobs::run_at.le($now))
            .or(jobs::status.eq(RUNNING).and(jobs::locked_until.lt($now)))
    };
}

/// Mark the selected ids as running under `worker` (inside the claim's transaction).
macro_rules! take {
    ($c:expr, $ids:expr, $worker:expr, $now:expr, $lease:expr) => {
        if !$ids.is_empty() {
            diesel::update(jobs::table.filter(jobs::id.eq_any(&$ids)))
                .set((
                    jobs::status.eq(RUNNING),
                    jobs::locked_by.eq($worker),
                    jobs::locked_until.eq($now + $lease),
                    jobs::attempts.eq(jobs::attempts + 1),
                    jobs::updated_at.eq($now),
                ))
                .execute($c)?;
        }
    };
}

/// Claim up to `limit` due jobs for `worker` until `now + lease`. Each claim counts as an
/// attempt. Returns the claimed rows as they are after the claim.
pub fn claim(
    conn: &mut DbConnection,
    worker: &str,
    now: i64,
    lease: i64,
    limit: i64,
) -> StoreResult<Vec<JobRow>> {
    let ids: Vec<String> = match conn {
        DbConnection::Pg(pg) => pg.transaction(|c| {
            let ids: Vec<String> = jobs::table
                .filter(claimable!(now))
                .order(jobs::run_at.asc())
                .limit(limit)
                .select(jobs::id)
                .for_update()
                .skip_locked()
                .load(c)?;
            take!(c, ids, worker, now, lease);
            Ok::<_, diesel::result::Error>(ids)
        })?,
        DbConnection::Sqlite(lite) => lite.immediate_transaction(|c| {
            let ids: Vec<String> = jobs::table
                .filter(claimable!(now))
                .order(jobs::run_at.asc())
                .limit(limit)
                .select(jobs::id)
                .load(c)?;
            take!(c, ids, worker, now, lease);
            Ok::<_, diesel::result::Error>(ids)
        })?,
    };
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(jobs::table
        .filter(jobs::id.eq_any(&ids))
        .filter(jobs::locked_by.eq(worker))
        .order(jobs::run_at.asc())
        .select(JobRow::as_select())
        .load(conn)?)
}

/// The job succeeded. False when `worker` no longer holds it.
pub fn complete(conn: &mut DbConnection, id: &str, worker: &str, now: i64) -> StoreResult<bool> {
    let n = diesel::update(held!(id, worker))
        .set((
            jobs::status.eq(DONE),
            jobs::locked_by.eq(None::<String>),
            jobs::locked_until.eq(None::<i64>),
            jobs::last_error.eq(None::<String>),
            jobs::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// How a failed attempt ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Try again at the given time, unless the attempts are used up (then dead).
    RetryAt(i64),
    /// Never retry: straight to the dead letters.
    Final,
}

/// The attempt failed: the job goes back to the queue while it has had fewer than
/// `max_attempts` attempts (the worker's policy), else to the dead letters. Returns the
/// job's new status, or `None` when `worker` no longer holds it.
pub fn fail(
    conn: &mut DbConnection,
    id: &str,
    worker: &str,
    error: &str,
    failure: Failure,
    max_attempts: i32,
    now: i64,
) -> StoreResult<Option<&'static str>> {
    let Some(job) = jobs::table
        .filter(jobs::id.eq(id))
        .filter(jobs::locked_by.eq(worker))
        .select(JobRow::as_select())
        .first(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let (status, run_at) = match failure {
        Failure::RetryAt(at) if job.attempts < max_attempts => (QUEUED, at),
        _ => (DEAD, job.run_at),
    };
    let error: String = error.chars().take(500).collect();
    let n = diesel::update(held!(id, worker))
        .set((
            jobs::status.eq(status),
            jobs::run_at.eq(run_at),
            jobs::locked_by.eq(None::<String>),
            jobs::locked_until.eq(None::<i64>),
            jobs::last_error.eq(error),
            jobs::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok((n == 1).then_some(status))
}

/// Give a claimed job back untouched (graceful shutdown): the attempt does not count.
pub fn release(conn: &mut DbConnection, id: &str, worker: &str, now: i64) -> StoreResult<bool> {
    defer(conn, id, worker, now, now)
}

/// Give a claimed job back to run at `run_at`, the attempt not counted: a ping whose client
/// is at its per-client cap goes back a little later, so it is not claimed again at once and
/// the jobs due behind it go first. False when `worker` no longer holds the job.
pub fn defer(
    conn: &mut DbConnection,
    id: &str,
    worker: &str,
    run_at: i64,
    now: i64,
) -> StoreResult<bool> {
    let n = diesel::update(held!(id, worker))
        .set((
            jobs::status.eq(QUEUED),
            jobs::run_at.eq(run_at),
            jobs::locked_by.eq(None::<String>),
            jobs::locked_until.eq(None::<i64>),
            jobs::attempts.eq(jobs::attempts - 1),
            jobs::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

pub fn find(conn: &mut DbConnection, id: &str) -> StoreResult<Option<JobRow>> {
    Ok(jobs::table
        .filter(jobs::id.eq(id))
        .select(JobRow::as_select())
        .first(conn)
        .optional()?)
}

/// Jobs in a status, oldest first (the admin CLI lists the dead letters).
pub fn list(conn: &mut DbConnection, status: &str, limit: i64) -> StoreResult<Vec<JobRow>> {
    Ok(jobs::table
        .filter(jobs::status.eq(status))
        .order(jobs::created_at.asc())
        .limit(limit)
        .select(JobRow::as_select())
        .load(conn)?)
}

/// Put a dead job back in the queue with fresh attempts. False unless it was dead.
pub fn retry_dead(conn: &mut DbConnection, id: &str, now: i64) -> StoreResult<bool> {
    let n = diesel::update(
        jobs::table
            .filter(jobs::id.eq(id))
            .filter(jobs::status.eq(DEAD)),
    )
    .set((
        jobs::status.eq(QUEUED),
        jobs::attempts.eq(0),
        jobs::run_at.eq(now),
        jobs::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Queue depth (queued + running) and the age of the oldest waiting job, for metrics.
pub fn depth(conn: &mut DbConnection, now: i64) -> StoreResult<(i64, i64)> {
    let waiting = jobs::table.filter(jobs::status.eq_any([QUEUED, RUNNING]));
    let count: i64 = waiting.clone().count().get_result(conn)?;
    let oldest: Option<i64> = waiting
        .select(diesel::dsl::min(jobs::created_at))
        .first(conn)?;
    Ok((count, oldest.map_or(0, |t| (now - t).max(0))))
}

/// Dead letters: jobs that used up their attempts, waiting for `admin jobs retry`.
pub fn dead_count(conn: &mut DbConnection) -> StoreResult<i64> {
    Ok(jobs::table
        .filter(jobs::status.eq(DEAD))
        .count()
        .get_result(conn)?)
}

/// Delete up to `limit` finished (done) jobs last touched before `before`.
pub fn purge_done(conn: &mut DbConnection, before: i64, limit: i64) -> StoreResult<usize> {
    let batch: Vec<String> = jobs::table
        .filter(jobs::status.eq(DONE))
        .filter(jobs::updated_at.lt(before))
        .select(jobs::id)
        .limit(limit)
        .load(conn)?;
    if batch.is_empty() {
        return Ok(0);
    }
    Ok(diesel::delete(jobs::table.filter(jobs::id.eq_any(batch))).execute(conn)?)
}
