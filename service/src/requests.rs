//! The end of an authentication request: a user's decision (device app) or its expiry (the
//! token endpoint, the worker's sweep). Either carries to the permission the request was
//! started from and, for a ping client, queues the notification, all in one transaction.

use ciba_domain::audit::{action, Outcome};
use ciba_domain::status::RequestStatus;
use ciba_store::audit::{self, AuditRow, By};
use ciba_store::{
    auth_requests, jobs, jtis, permissions, users, DbConnection, StoreError, StoreResult,
};

/// What a user decided, as the app signed it.
pub struct Decision<'a> {
    /// `Approved` or `Declined`.
    pub status: RequestStatus,
    pub device_id: &'a str,
    /// RFC 8176 methods, a JSON array.
    pub amr: &'a str,
}

/// Record the decision if the request is still pending and unexpired at `now`, with its
/// audit `event`. False when someone else decided first or it expired; then nothing else
/// changes.
pub fn decide(
    conn: &mut DbConnection,
    id: &str,
    decision: &Decision<'_>,
    event: &AuditRow,
    now: i64,
) -> StoreResult<bool> {
    debug_assert!(matches!(
        decision.status,
        RequestStatus::Approved | RequestStatus::Declined
    ));
    let recorded = auth_requests::record_decision(
        conn,
        id,
        decision.status,
        decision.device_id,
        decision.amr,
        now,
    )?;
    let Some(row) = recorded else {
        return Ok(false);
    };
    follow(conn, &row, decision.status, Some(&row.user_sub), now)?;
    audit::insert(conn, event)?;
    Ok(true)
}

/// What became of a signed decision.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    Decided,
    /// Another decision came first, or the request expired.
    NotPending,
    /// This signed decision (its jti) was sent before.
    JtiUsed,
    /// The device JWT that carried it (its jti) was used before.
    DeviceJtiUsed,
    /// The deciding device is no longer active (revoked since it was authenticated).
    DeviceInactive,
}

/// The jtis a signed decision spends, as keys with how long each is kept: the decision's
/// own and that of the device JWT that carried it.
pub struct DecisionJtis<'a> {
    pub decision: (&'a str, i64),
    pub device: (&'a str, i64),
}

/// A signed decision recorded once: its jti and its device JWT's (`spent`) spent and the
/// decision recorded as [`decide`] does, with `event` in the audit trail, atomically. On
/// PostgreSQL one statement when no ping follows (one round trip, where a transaction costs
/// two more); otherwise one transaction. Call outside a transaction.
pub fn decide_signed(
    conn: &mut DbConnection,
    spent: &DecisionJtis<'_>,
    id: &str,
    decision: &Decision<'_>,
    (event, ping): (&AuditRow, bool),
    now: i64,
) -> StoreResult<Recorded> {
    if !ping {
        if let DbConnection::Pg(c) = conn {
            let one = auth_requests::OneStatementDecision {
                jti: spent.decision,
                device_jti: spent.device,
                id,
                status: decision.status,
                device_id: decision.device_id,
                amr: decision.amr,
            };
            let w = one.run(c, event, now)?;
            return Ok(recorded(
                w.device_jti_fresh,
                w.device_active,
                w.jti_fresh,
                w.decided,
            ));
        }
    }
    ciba_store::transaction(conn, |c| {
        // Both spent whatever the other was, as the one statement does.
        let device_fresh = jtis::record(c, spent.device.0, spent.device.1)?;
        let fresh = jtis::record(c, spent.decision.0, spent.decision.1)?;
        let active = users::device_is_active(c, decision.device_id)?;
        if !(device_fresh && active && fresh) {
            return Ok(recorded(device_fresh, active, fresh, false));
        }
        let decided = decide(c, id, decision, event, now)?;
        Ok(recorded(true, true, true, decided))
    })
}

/// The outcome of a decision's write: a replayed device JWT first, then a device no longer
/// active (401 either way, whatever else was wrong), then a replayed decision.
fn recorded(
    device_jti_fresh: bool,
    device_active: bool,
    jti_fresh: bool,
    decided: bool,
) -> Recorded {
    match (device_jti_fresh, device_active, jti_fresh, decided) {
        (false, _, _, _) => Recorded::DeviceJtiUsed,
        (true, false, _, _) => Recorded::DeviceInactive,
        (true, true, false, _) => Recorded::JtiUsed,
        (true, true, true, false) => Recorded::NotPending,
        (true, true, true, true) => Recorded::Decided,
    }
}

/// Mark a pending request past its expiry as expired (its audit event `by` whoever noticed:
/// the worker's sweep, or the client's poll). True when this call made the change (so its
/// ping is queued once).
pub fn expire(conn: &mut DbConnection, id: &str, by: &By<'_>, now: i64) -> StoreResult<bool> {
    if !auth_requests::record_expiry(conn, id, now)? {
        return Ok(false);
    }
    let row = auth_requests::find(conn, id)?
        .ok_or_else(|| StoreError::Other(format!("request {id} vanished after its expiry")))?;
    follow(conn, &row, RequestStatus::Expired, None, now)?;
    audit::record(conn, by, action::REQUEST_EXPIRED, Some(id), Outcome::Ok)?;
    Ok(true)
}

/// What follows from the end of a request: its permission, and the ping of a ping client.
fn follow(
    conn: &mut DbConnection,
    row: &auth_requests::AuthRequestRow,
    status: RequestStatus,
    user_sub: Option<&str>,
    now: i64,
) -> StoreResult<()> {
    if let Some(pid) = &row.permission_id {
        let ids = (pid.as_str(), row.id.as_str());
        permissions::follow_request(conn, ids, status.permission_status(), user_sub, now)?;
    }
    if row.client_notification_token.is_some() {
        jobs::enqueue_ping(conn, &row.id, now)?;
    }
    Ok(())
}
