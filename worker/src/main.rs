//! `ciba-worker`: background work: ping notifications from the job queue, the expiry sweep,
//! retention and scheduled key rotation. Several replicas may run at once on PostgreSQL
//! (jobs are claimed with `FOR UPDATE SKIP LOCKED`, periodic batches take advisory locks);
//! on SQLite run one. The API never depends on it for correctness. The work itself is in
//! the `ciba_worker` library; this binary starts it and serves health and metrics.

use ciba_runtime::config::Config;
use ciba_runtime::logging::init_tracing;
use ciba_store::{Backend, Store};
use ciba_worker::{health, periodic, queue, Ctx};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const HELP: &str = "\
ciba-worker: the background work of the ciba server (ping notifications, expiry sweep,
retention, key rotation), beside ciba-api on the same database: one or more replicas on
PostgreSQL, exactly one on SQLite.

Usage: ciba-worker [--help | --version]

Environment (every setting: README.md, sections Configuration and The worker):
  DATABASE_URL             sqlite://PATH (default sqlite://ciba.db) or postgres://USER:PASSWORD@HOST:PORT/DB
  CIBA_KEY_ENCRYPTION_KEY  base64 of 32 bytes; encrypts the signing keys at rest (required with
                           PostgreSQL; with SQLite, a key file beside the database is made)
  CIBA_WORKER_LISTEN       HOST:PORT of /healthz and /metrics (default 127.0.0.1:9091)
  CIBA_RETENTION, CIBA_RETENTION_INTERVAL, CIBA_KEY_ROTATION_PERIOD   what is kept, how often
  CIBA_ALLOW_INSECURE_CALLBACKS, CIBA_PING_ALLOWED_NETWORKS  where pings may go
  CIBA_LOG_FORMAT, RUST_LOG  text or json; the log filter (default info)
";

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("-h" | "--help") => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("ciba-worker {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("error: unexpected argument {other:?}\n\n{HELP}");
            return ExitCode::from(2);
        }
    }
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
    ciba_runtime::database::wait_until_reachable(&config.database_url).await?;
    let store = Store::open(&config.database_url, 4).map_err(|e| e.to_string())?;
    wait_for_schema(&store).await?;
    if config.worker.allow_insecure_callbacks {
        tracing::warn!(
            "CIBA_ALLOW_INSECURE_CALLBACKS=true: pings may use plain http and reach loopback \
             addresses; for development only"
        );
    }
    let ctx = Arc::new(Ctx::new(&config, store)?);
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
