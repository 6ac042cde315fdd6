//! `ciba-worker`: background work (expiry, retention, key rotation, ping notifications).
//! For now it connects, checks the schema (migrating SQLite), serves `/healthz` and idles
//! until SIGTERM. The API never depends on it for correctness.

use ciba_api::config::Config;
use ciba_api::logging::init_tracing;
use ciba_store::{Backend, Store};
use std::process::ExitCode;
use std::time::Duration;
use warp::Filter;

fn main() -> ExitCode {
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
    let listener = tokio::net::TcpListener::bind(config.worker_listen)
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {} (CIBA_WORKER_LISTEN): {e}",
                config.worker_listen
            )
        })?;
    tracing::info!(addr = %config.worker_listen, backend = store.backend().as_str(), "worker ready");
    let health = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})));
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(
        warp::serve(health)
            .incoming(listener)
            .graceful(async move {
                let _ = rx.changed().await;
            })
            .run(),
    );
    ciba_api::server::shutdown_signal().await;
    tracing::info!("worker shutting down");
    let _ = tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
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
