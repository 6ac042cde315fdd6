//! The audit trail (append-only): one row per event, written in the caller's transaction.

use crate::error::StoreResult;
use crate::prepared::{template, Statement};
use crate::schema::audit_events;
use crate::DbConnection;
use ciba_domain::audit::{Actor, Origin, Outcome};
use diesel::prelude::*;
use serde::Serialize;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = audit_events)]
pub struct AuditRow {
    pub id: String,
    pub at_ms: i64,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub object_id: Option<String>,
    pub outcome: String,
    pub source: Option<String>,
    pub request_id: Option<String>,
}

/// Who acts, from where, when (milliseconds): the part of an event its use case knows.
pub struct By<'a> {
    pub actor: Actor<'a>,
    pub origin: &'a Origin,
    pub at_ms: i64,
}

/// Record that `by` did `action` to `object` (an id the server issued) with `outcome`.
pub fn record(
    conn: &mut DbConnection,
    by: &By<'_>,
    action: &'static str,
    object: Option<&str>,
    outcome: Outcome,
) -> StoreResult<()> {
    insert(conn, &row(by, action, object, outcome))
}

/// The event `by` did `action` to `object` with `outcome`, as stored: for a statement that
/// writes it together with the change it records. Its id is a UUIDv7 of the moment it is
/// made, increasing within the process (uuid's shared counter), so the trail lists events in
/// the order they were written even when two share a millisecond or a request's `at_ms` was
/// read before an earlier-written event's (a poll that started before the decision it redeems).
pub fn row(by: &By<'_>, action: &'static str, object: Option<&str>, outcome: Outcome) -> AuditRow {
    let at_ms = by.at_ms;
    AuditRow {
        id: uuid::Uuid::now_v7().to_string(),
        at_ms,
        actor_kind: by.actor.kind().into(),
        actor_id: by.actor.id().filter(|id| !id.is_empty()).map(str::to_owned),
        action: action.into(),
        object_id: object.map(str::to_owned),
        outcome: outcome.as_str().into(),
        source: by.origin.source.clone(),
        request_id: by.origin.request_id.clone(),
    }
}

/// Store an event made by [`row`].
pub fn insert(conn: &mut DbConnection, row: &AuditRow) -> StoreResult<()> {
    let q = bind_event(Statement::new(template!("sql/audit_insert.sql")), row);
    crate::prepared::execute(conn, q)?;
    Ok(())
}

/// Bind an event's nine columns to a statement, in the order of the table (`id,
/// at_ms, actor_kind, actor_id, action, object_id, outcome, source, request_id`).
pub(crate) fn bind_event<'a>(s: Statement<'a>, e: &'a AuditRow) -> Statement<'a> {
    s.text(&e.id)
        .int(e.at_ms)
        .text(&e.actor_kind)
        .opt_text(e.actor_id.as_deref())
        .text(&e.action)
        .opt_text(e.object_id.as_deref())
        .text(&e.outcome)
        .opt_text(e.source.as_deref())
        .opt_text(e.request_id.as_deref())
}

/// A write step and its audit event `event`, atomically: on PostgreSQL the one statement
/// `pg` runs (one round trip, where a transaction costs two more), elsewhere `step` and then
/// the event in one transaction, the event only if `wrote` says the step wrote. Call outside
/// a transaction.
pub(crate) fn with_event<R>(
    conn: &mut DbConnection,
    event: &AuditRow,
    wrote: fn(&R) -> bool,
    pg: impl FnOnce(&mut diesel::pg::PgConnection) -> StoreResult<R>,
    step: impl FnOnce(&mut DbConnection) -> StoreResult<R>,
) -> StoreResult<R> {
    if let DbConnection::Pg(c) = conn {
        return pg(c);
    }
    conn.transaction(|c| {
        let r = step(c)?;
        if wrote(&r) {
            insert(c, event)?;
        }
        Ok(r)
    })
}

/// Which events to list.
#[derive(Debug, Default)]
pub struct Filter {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub client: Option<String>,
    pub action: Option<String>,
    pub limit: i64,
}

/// Events matching `f` in the order they were written (by id, see [`row`]), at most
/// `f.limit`. `client`: events whose actor is that client.
pub fn list(conn: &mut DbConnection, f: &Filter) -> StoreResult<Vec<AuditRow>> {
    let mut q = audit_events::table.into_boxed();
    if let Some(since) = f.since_ms {
        q = q.filter(audit_events::at_ms.ge(since));
    }
    if let Some(until) = f.until_ms {
        q = q.filter(audit_events::at_ms.lt(until));
    }
    if let Some(action) = &f.action {
        q = q.filter(audit_events::action.eq(action.clone()));
    }
    if let Some(client) = &f.client {
        q = q.filter(
            audit_events::actor_kind
                .eq("client")
                .and(audit_events::actor_id.eq(client.clone())),
        );
    }
    Ok(q.order(audit_events::id.asc())
        .limit(f.limit)
        .select(AuditRow::as_select())
        .load(conn)?)
}

/// Delete up to `limit` events older than `before_ms` (the audit retention).
pub fn purge_before(conn: &mut DbConnection, before_ms: i64, limit: i64) -> StoreResult<usize> {
    let batch: Vec<String> = audit_events::table
        .filter(audit_events::at_ms.lt(before_ms))
        .select(audit_events::id)
        .limit(limit)
        .load(conn)?;
    if batch.is_empty() {
        return Ok(0);
    }
    Ok(diesel::delete(audit_events::table.filter(audit_events::id.eq_any(batch))).execute(conn)?)
}
