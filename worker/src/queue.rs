//! The job loop: claim due jobs, run up to `concurrency` at once, record each outcome.
//! On shutdown it stops claiming, lets the jobs in hand finish for a grace period, and gives
//! back (releases) whatever is still running so another worker takes it at once.
//!
//! Delivery is at least once: a worker killed between a successful POST and recording it
//! leaves the job running until its lease lapses; then it is sent again, with the same body.
//!
//! A ping whose client already has `CIBA_PING_PER_CLIENT_CONCURRENCY` deliveries in flight
//! here is not run and does not wait: it is deferred (given back to the queue with a later
//! `run_at`, the attempt not counted), so a client with a slow receiver holds at most that
//! many of the `concurrency` slots and the other clients' pings behind it run at once.

use crate::ping::{self, Delivery};
use crate::{slots, Ctx};
use ciba_store::jobs::{self, JobRow};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

pub async fn run(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>, grace: Duration) {
    let permits = Arc::new(Semaphore::new(ctx.settings.concurrency));
    let in_hand: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut tasks = JoinSet::new();
    let idle = Duration::from_millis(ctx.settings.poll_ms);
    while !*stop.borrow() {
        while tasks.try_join_next().is_some() {}
        let free = permits.available_permits();
        let claimed = if free == 0 {
            Vec::new()
        } else {
            claim(&ctx, free).await
        };
        let got = claimed.len();
        for job in claimed {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            lock(&in_hand).insert(job.id.clone());
            let (c, hand) = (ctx.clone(), in_hand.clone());
            tasks.spawn(async move {
                let id = job.id.clone();
                run_one(&c, job).await;
                lock(&hand).remove(&id);
                drop(permit);
            });
        }
        if got == 0 {
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                _ = stop.changed() => {}
            }
        } else if got == free {
            // Every slot is taken: claim again as soon as one frees (a deferred job frees
            // its slot at once, without a poll interval per deferral).
            tokio::select! {
                _ = permits.acquire() => {}
                _ = stop.changed() => {}
            }
        }
    }
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tasks.abort_all();
        let left: Vec<String> = lock(&in_hand).drain().collect();
        tracing::info!(count = left.len(), "releasing unfinished jobs");
        let c = ctx.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let now = c.clock.now();
            for id in left {
                if let Err(e) = c
                    .store
                    .write_one(|conn| jobs::release(conn, &id, &c.worker_id, now))
                {
                    tracing::warn!(error = %e, "releasing a job failed; its lease will lapse");
                }
            }
        })
        .await;
    }
}

/// Claim up to `max` due jobs for this worker (none when the database fails: logged).
async fn claim(ctx: &Arc<Ctx>, max: usize) -> Vec<JobRow> {
    let c = ctx.clone();
    let res = tokio::task::spawn_blocking(move || {
        let now = c.clock.now();
        c.store.write_one(|conn| {
            jobs::claim(conn, &c.worker_id, now, c.settings.job_lease, max as i64)
        })
    })
    .await;
    match res {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "claiming jobs failed");
            Vec::new()
        }
        Err(e) => {
            tracing::error!(error = %e, "claim task failed");
            Vec::new()
        }
    }
}

/// One pass of the loop, to its end: claim the jobs due now (up to `concurrency`), run them
/// all and record their outcomes. Returns how many it claimed. Tests call it in-process on a
/// moved clock instead of waiting for a worker's schedule.
pub async fn run_due(ctx: &Arc<Ctx>) -> usize {
    let claimed = claim(ctx, ctx.settings.concurrency).await;
    let got = claimed.len();
    let mut tasks = JoinSet::new();
    for job in claimed {
        let c = ctx.clone();
        tasks.spawn(async move { run_one(&c, job).await });
    }
    while tasks.join_next().await.is_some() {}
    got
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Run one claimed job and record its outcome (fenced on this worker's claim).
async fn run_one(ctx: &Arc<Ctx>, job: JobRow) {
    let outcome = match job.kind.as_str() {
        jobs::KIND_PING => match deliver_ping(ctx, &job.payload).await {
            Attempt::Ran(delivery) => delivery,
            Attempt::ClientBusy(running) => return defer_job(ctx, &job, running).await,
        },
        other => Delivery::Final(format!("unknown job kind {other}")),
    };
    let now = ctx.clock.now();
    let retry_at = now + backoff(&ctx.settings, job.attempts);
    let c = ctx.clone();
    let failure = outcome
        .failure(retry_at)
        .map(|(f, why)| (f, why.to_owned()));
    let why = failure.as_ref().map(|(_, w)| w.clone()).unwrap_or_default();
    let (id, kind, created_at) = (job.id.clone(), job.kind.clone(), job.created_at);
    let max_attempts = ctx.settings.job_max_attempts;
    let res = tokio::task::spawn_blocking(move || {
        c.store.write_one(|conn| match &failure {
            None => jobs::complete(conn, &id, &c.worker_id, now).map(|ok| ok.then_some(jobs::DONE)),
            Some((f, why)) => jobs::fail(conn, &id, &c.worker_id, why, *f, max_attempts, now),
        })
    })
    .await;
    match res {
        Ok(Ok(Some(jobs::DONE))) => {
            ctx.metrics.processed.with_label_values(&[&kind]).inc();
            let latency = ctx.clock.now_ms() as f64 / 1000.0 - created_at as f64;
            ctx.metrics.notification_latency.observe(latency.max(0.0));
        }
        Ok(Ok(Some(status))) => {
            let outcome = if status == jobs::DEAD {
                "dead"
            } else {
                "retry"
            };
            ctx.metrics
                .failed
                .with_label_values(&[&kind, outcome])
                .inc();
            tracing::warn!(kind, attempt = job.attempts, outcome, error = %why, "job failed");
        }
        Ok(Ok(None)) => tracing::warn!(kind, "job was taken over by another worker (lease lapsed)"),
        Ok(Err(e)) => {
            tracing::warn!(kind, error = %e, "recording a job outcome failed; its lease will lapse")
        }
        Err(e) => tracing::error!(kind, error = %e, "job outcome task failed"),
    }
}

/// What came of taking a ping job in hand.
enum Attempt {
    Ran(Delivery),
    /// Its client is at its cap; its oldest delivery in flight has run this long.
    ClientBusy(Duration),
}

async fn deliver_ping(ctx: &Arc<Ctx>, payload: &str) -> Attempt {
    let (c, p) = (ctx.clone(), payload.to_owned());
    let prepared = tokio::task::spawn_blocking(move || ping::prepare(&c.store, &p)).await;
    Attempt::Ran(match prepared {
        Ok(Ok(Ok(n))) => match ctx.client_slots.try_take(&n.client_id) {
            Ok(slot) => {
                let delivery = ping::send(&ctx.http, &ctx.ping_policy, &n).await;
                drop(slot);
                delivery
            }
            Err(running) => return Attempt::ClientBusy(running),
        },
        Ok(Ok(Err(why))) => Delivery::Final(why),
        Ok(Err(e)) => Delivery::Retry(format!("database: {e}")),
        Err(e) => Delivery::Retry(format!("task: {e}")),
    })
}

/// Give a job whose client is at its cap back to the queue for a little later. Nothing is
/// lost when this fails: the job stays claimed until its lease lapses, then runs again.
async fn defer_job(ctx: &Arc<Ctx>, job: &JobRow, running: Duration) {
    let now = ctx.clock.now();
    let max = (ctx.settings.ping_timeout_ms / 1000).max(1) as i64;
    let run_at = now + slots::defer_secs(running, max);
    let (c, id) = (ctx.clone(), job.id.clone());
    let res = tokio::task::spawn_blocking(move || {
        c.store
            .write_one(|conn| jobs::defer(conn, &id, &c.worker_id, run_at, now))
    })
    .await;
    match res {
        Ok(Ok(true)) => {
            ctx.metrics.deferred.inc();
            tracing::debug!(kind = %job.kind, run_at, "client at its ping concurrency cap; deferred");
        }
        Ok(Ok(false)) => {
            tracing::warn!(kind = %job.kind, "job was taken over by another worker (lease lapsed)")
        }
        Ok(Err(e)) => {
            tracing::warn!(kind = %job.kind, error = %e, "deferring a job failed; its lease will lapse")
        }
        Err(e) => tracing::error!(kind = %job.kind, error = %e, "defer task failed"),
    }
}

/// Exponential backoff: base · 2^(attempt-1), capped, plus up to a quarter of jitter.
pub fn backoff(s: &ciba_runtime::config::WorkerSettings, attempts: i32) -> i64 {
    let exp = attempts.clamp(1, 30) - 1;
    let delay = s
        .job_backoff_base
        .saturating_mul(1_i64 << exp)
        .min(s.job_backoff_max);
    let jitter_span = delay / 4;
    let jitter = if jitter_span > 0 {
        let r = u64::from_le_bytes(ciba_domain::ids::random_bytes::<8>());
        (r % (jitter_span as u64 + 1)) as i64
    } else {
        0
    };
    delay + jitter
}
