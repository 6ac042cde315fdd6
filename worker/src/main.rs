//! `ciba-worker`: background work: ping notifications from the job queue, the expiry sweep,
//! retention and scheduled key rotation. Several replicas may run at once on PostgreSQL
//! (jobs are claimed with `FOR UPDATE SKIP LOCKED`, periodic batches take advisory locks);
//! on SQLite run one. The API never depends on it for correctness.

mod health;
mod metrics;
mod periodic;
mod ping;
mod queue;
mod slots;
mod target;

use ciba_runtime::config::{Config, WorkerSettings};
use ciba_runtime::crypto::kek::Kek;
use ciba_runtime::logging::init_tracing;
use ciba_runtime::ping_target::TargetPolicy;
use ciba_store::{Backend, Store};
use metrics::WorkerMetrics;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// What every task of the worker shares.
pub struct Ctx {
    pub store: Store,
    pub settings: WorkerSettings,
    pub metrics: WorkerMetrics,
    /// The ping client: refuses notification targets on this network (see `target`).
    pub http: reqwest::Client,
    pub ping_policy: Arc<TargetPolicy>,
    /// Ping deliveries in flight per client, under `CIBA_PING_PER_CLIENT_CONCURRENCY`.
    pub client_slots: Arc<slots::ClientSlots>,
    pub kek: Kek,
    pub key_publish_lead: i64,
    pub max_token_lifetime: i64,
    /// This process's name on the jobs it claims.
    pub worker_id: String,
}

fn main() -> ExitCode {
    ciba_runtime::crypto::provider::install();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), String> {
    let store = Store::open(&config.database_url, 4).map_err(|e| e.to_string())?;
    wait_for_schema(&store).await?;
    let s = &config.worker;
    let ping_policy = Arc::new(TargetPolicy::from_settings(s));
    let http = target::ping_client(s, ping_policy.clone())?;
    if s.allow_insecure_callbacks {
        tracing::warn!(
            "CIBA_ALLOW_INSECURE_CALLBACKS=true: pings may use plain http and reach loopback \
             addresses; for development only"
        );
    }
    let ctx = Arc::new(Ctx {
        store,
        settings: s.clone(),
        metrics: WorkerMetrics::new(),
        http,
        ping_policy,
        client_slots: slots::ClientSlots::new(s.ping_per_client_concurrency),
        kek: config.kek(),
        key_publish_lead: config.key_publish_lead,
        max_token_lifetime: config.max_token_lifetime(),
        worker_id: format!("{}-{}", std::process::id(), ciba_domain::ids::random_id()),
    });
    let listener = tokio::net::TcpListener::bind(config.worker_listen)
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {} (CIBA_WORKER_LISTEN): {e}",
                config.worker_listen
            )
        })?;
    tracing::info!(addr = %config.worker_listen, backend = ctx.store.backend().as_str(), "worker ready");
    let (tx, rx) = tokio::sync::watch::channel(false);
    let m = ctx.clone();
    let metrics = move || m.metrics.render();
    let server = tokio::spawn(health::serve(listener, metrics, rx.clone()));
    let grace = Duration::from_secs(config.shutdown_timeout_secs);
    let jobs = tokio::spawn(queue::run(ctx.clone(), rx.clone(), grace));
    let periodic = tokio::spawn(periodic::run(ctx.clone(), rx));
    ciba_runtime::shutdown::shutdown_signal().await;
    tracing::info!("worker shutting down");
    let _ = tx.send(true);
    let _ = jobs.await;
    let _ = periodic.await;
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    tracing::info!("worker stopped");
    Ok(())
}

async fn wait_for_schema(store: &Store) -> Result<(), String> {
    for attempt in 1..=30 {
        let s = store.clone();
        let res = tokio::task::spawn_blocking(move || {
            if s.backend() == Backend::Sqlite {
                s.migrate().map(|_| 0)
            } else {
                s.pending_migrations()
            }
        })
        .await
        .map_err(|e| e.to_string())?;
        match res {
            Ok(0) => return Ok(()),
            Ok(n) => {
                return Err(format!(
                    "{n} migrations are pending: run `ciba-api migrate`"
                ))
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "database not ready; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    Err("database unavailable".into())
}
