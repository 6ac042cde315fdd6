//! Periodic tasks: the expiry sweep, retention and scheduled key rotation, plus the queue
//! gauges. Each batch runs in its own short transaction under a PostgreSQL advisory lock, so
//! with several worker replicas one does each batch and the others skip it.

use crate::Ctx;
use ciba_domain::audit::{Actor, Origin};
use ciba_runtime::crypto::keyring;
use ciba_store::db::{try_advisory_xact_lock, LOCK_EXPIRY, LOCK_RETENTION};
use ciba_store::{
    audit, auth_requests, jobs, jtis, keys, permissions, rate_limits, users, DbConnection,
    StoreResult,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const EXPIRY_BATCH: i64 = 200;

pub async fn run(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let s = &ctx.settings;
    let secs = |n: i64| Duration::from_secs(n.max(1) as u64);
    let mut expiry = tokio::time::interval(secs(s.expiry_interval));
    let mut retention = tokio::time::interval(secs(s.retention_interval));
    let rotation_check = if s.key_rotation_period > 0 {
        (s.key_rotation_period / 10).clamp(1, 60)
    } else {
        3_600
    };
    let mut rotation = tokio::time::interval(secs(rotation_check));
    let mut gauges = tokio::time::interval(Duration::from_secs(2));
    for i in [&mut expiry, &mut retention, &mut rotation, &mut gauges] {
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        let task: fn(&Ctx) = tokio::select! {
            _ = stop.changed() => return,
            _ = expiry.tick() => expire_due,
            _ = retention.tick() => apply_retention,
            _ = rotation.tick() => rotate_keys,
            _ = gauges.tick() => update_gauges,
        };
        let c = ctx.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || task(&c)).await {
            tracing::error!(error = %e, "periodic task failed");
        }
    }
}

/// Expire pending requests past their expiry (and their permissions), queueing pings.
pub fn expire_due(ctx: &Ctx) {
    let now = ctx.clock.now();
    loop {
        let res = ctx.store.write(|c| {
            if !try_advisory_xact_lock(c, LOCK_EXPIRY)? {
                return Ok(None);
            }
            let ids = auth_requests::expired_pending(c, now, EXPIRY_BATCH)?;
            let mut expired = 0;
            let origin = Origin::default();
            let by = audit::By {
                actor: Actor::System,
                origin: &origin,
                at_ms: ctx.clock.now_ms(),
            };
            for id in &ids {
                if ciba_service::requests::expire(c, id, &by, now)? {
                    expired += 1;
                }
            }
            Ok(Some((ids.len() as i64, expired)))
        });
        match res {
            Ok(Some((seen, expired))) => {
                ctx.metrics.expired.inc_by(expired);
                if seen < EXPIRY_BATCH {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "expiry sweep failed");
                return;
            }
        }
    }
}

type Purge = fn(&mut DbConnection, i64, i64) -> StoreResult<usize>;

/// Delete what is older than the retention, table by table, in bounded batches.
pub fn apply_retention(ctx: &Ctx) {
    let now = ctx.clock.now();
    let cutoff = now - ctx.settings.retention;
    // Rate-limit windows are worth nothing once they end: purged at `now`, not the retention.
    // The audit trail has its own, longer retention; its times are milliseconds.
    let audit_cutoff = now - ctx.settings.audit_retention;
    let purge_audit: Purge = |c, before, limit| audit::purge_before(c, before * 1000, limit);
    let tables: [(&str, Purge, i64); 7] = [
        ("audit_events", purge_audit, audit_cutoff),
        ("auth_requests", auth_requests::purge_finished, cutoff),
        ("permissions", permissions::purge_finished, cutoff),
        ("used_jtis", jtis::purge_expired, cutoff),
        ("enrollment_codes", users::purge_expired_codes, cutoff),
        ("jobs", jobs::purge_done, cutoff),
        ("rate_limits", rate_limits::purge_expired, now),
    ];
    for (table, purge, before) in tables {
        loop {
            let res = ctx.store.write(|c| {
                if !try_advisory_xact_lock(c, LOCK_RETENTION)? {
                    return Ok(None);
                }
                purge(c, before, ctx.settings.retention_batch).map(Some)
            });
            match res {
                Ok(Some(0)) | Ok(None) => break,
                Ok(Some(n)) => {
                    ctx.metrics
                        .deleted
                        .with_label_values(&[table])
                        .inc_by(n as u64);
                }
                Err(e) => {
                    tracing::warn!(table, error = %e, "retention failed");
                    break;
                }
            }
        }
    }
}

/// Rotate the signing keys when the newest is a rotation period old; drop keys that left
/// the JWKS (everything they signed has expired).
pub fn rotate_keys(ctx: &Ctx) {
    let now = ctx.clock.now();
    let s = &ctx.settings;
    if s.key_rotation_period > 0 {
        let origin = Origin::default();
        let by = audit::By {
            actor: Actor::System,
            origin: &origin,
            at_ms: ctx.clock.now_ms(),
        };
        match keyring::rotate_if_due(
            &ctx.store,
            &ctx.kek,
            &by,
            now,
            s.key_rotation_period,
            ctx.key_publish_lead,
            ctx.max_token_lifetime,
        ) {
            Ok(kids) if !kids.is_empty() => {
                ctx.metrics.rotations.inc();
                tracing::info!(
                    published = kids.len(),
                    signs_from = now + ctx.key_publish_lead,
                    "rotated signing keys"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "key rotation failed"),
        }
    }
    match ctx.store.write_one(|c| keys::purge_expired(c, now)) {
        Ok(0) => {}
        Ok(n) => tracing::info!(count = n, "removed expired signing keys"),
        Err(e) => tracing::warn!(error = %e, "removing expired keys failed"),
    }
}

/// The queue gauges: jobs waiting, the oldest one's age and the dead letters.
pub fn update_gauges(ctx: &Ctx) {
    let now = ctx.clock.now();
    let read = ctx
        .store
        .read(|c| Ok((jobs::depth(c, now)?, jobs::dead_count(c)?)));
    if let Ok(((depth, oldest), dead)) = read {
        ctx.metrics.queue_depth.set(depth);
        ctx.metrics.oldest_job_age.set(oldest);
        ctx.metrics.dead_jobs.set(dead);
    }
}
