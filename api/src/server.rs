//! Start-up and the HTTP server: migrations (SQLite), signing keys, key refresh, graceful
//! shutdown on SIGTERM/SIGINT (stop accepting, finish in-flight requests, bounded wait).

use crate::http::tls::{self, CertPolicy};
use crate::http::{routes, serve};
use crate::state::{now, AppState};
use ciba_runtime::config::Config;
use ciba_runtime::crypto::keyring;
use ciba_store::{Backend, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub async fn run(config: Config) -> Result<(), String> {
    if let Some((path, created)) = &config.key_file {
        tracing::warn!(
            file = %path.display(),
            created,
            "CIBA_KEY_ENCRYPTION_KEY is not set: the signing keys are encrypted under the key in this file; keep it with the database and back it up"
        );
    }
    ciba_runtime::database::wait_until_reachable(&config.database_url).await?;
    let store =
        Store::open(&config.database_url, config.db_max_connections).map_err(|e| e.to_string())?;
    let state = AppState::new(config, store)?;
    initialise(&state).await?;

    let listener = TcpListener::bind(state.config.listen).await.map_err(|e| {
        format!(
            "cannot listen on {} (CIBA_LISTEN): {e}",
            state.config.listen
        )
    })?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, issuer = %state.config.issuer, backend = state.store.backend().as_str(), "listening");

    first_start_hint(&state).await;
    if state.config.sandbox {
        start_sandbox(&state).await?;
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(refresh_keys(state.clone(), stop_rx.clone()));
    if let Some(maddr) = state.config.metrics_listen {
        let l = TcpListener::bind(maddr)
            .await
            .map_err(|e| format!("cannot listen on {maddr} (CIBA_METRICS_LISTEN): {e}"))?;
        let mut rx = stop_rx.clone();
        let metrics = routes::metrics_route(state.clone());
        tokio::spawn(async move {
            warp::serve(metrics)
                .incoming(l)
                .graceful(async move {
                    let _ = rx.changed().await;
                })
                .run()
                .await;
        });
    }

    let transport = transport(&state.config)?;
    let app = routes::routes(state.clone(), state.config.metrics_listen.is_none());
    let mut rx = stop_rx.clone();
    let limits = state.server_limits();
    let server = serve::serve(
        listener,
        app,
        limits,
        transport,
        state.metrics.connections_refused.clone(),
        state.metrics.connections_open.clone(),
        async move {
            let _ = rx.changed().await;
        },
    );
    let grace = Duration::from_secs(state.config.shutdown_timeout_secs);
    let server = tokio::spawn(server);
    ciba_runtime::shutdown::shutdown_signal().await;
    tracing::info!("shutting down: no new connections; finishing in-flight requests");
    let _ = stop_tx.send(true);
    if tokio::time::timeout(grace, server).await.is_err() {
        tracing::warn!("in-flight requests did not finish within CIBA_SHUTDOWN_TIMEOUT; exiting");
    }
    // The batching threads hold the store until the last state handle is gone; a process
    // that exits before they end leaves its database connections to be reset (PostgreSQL
    // logs one "connection reset" per pooled connection).
    let batches_ended = state.batch_threads_ended();
    drop(state);
    for ended in batches_ended {
        if !ended.wait(Duration::from_secs(2)).await {
            tracing::warn!("a batching thread did not end in time; exiting");
        }
    }
    Ok(())
}

/// On a database without clients (a fresh installation), say what to do next.
async fn first_start_hint(state: &AppState) {
    let s = state.clone();
    let fresh = tokio::task::spawn_blocking(move || s.store.read(ciba_store::clients::any))
        .await
        .map(|r| matches!(r, Ok(false)))
        .unwrap_or(false);
    if fresh {
        let issuer = &state.config.issuer;
        tracing::info!(
            "no clients yet. Next: `ciba-api admin clients create --name \"My shop\" --scope \
             \"permissions/client permissions/app2app openid\" --callback-uri \
             https://shop.example/callback` (same DATABASE_URL), then follow README.md's walk-through; \
             the API is described at {issuer}/openapi.yaml and discovery at \
             {issuer}/.well-known/openid-configuration"
        );
    }
}

/// Sandbox mode (contract §12): said loudly, test users seeded on the first start, and the
/// simulated apps' automatic behaviours running.
async fn start_sandbox(state: &AppState) -> Result<(), String> {
    let s = state.clone();
    let seeded = tokio::task::spawn_blocking(move || crate::sandbox::seed(&s, now()))
        .await
        .map_err(|e| e.to_string())??;
    let issuer = &state.config.issuer;
    tracing::warn!(
        seeded,
        page = %format!("{issuer}/sandbox"),
        "SANDBOX MODE (CIBA_SANDBOX=true): test users with simulated authenticating apps whose \
         approvals this server signs itself. Never use sandbox mode with real users."
    );
    tokio::spawn(crate::sandbox::autopilot::run(state.clone()));
    Ok(())
}

/// TLS (when configured) and where client certificates come from (contract §11).
fn transport(config: &Config) -> Result<serve::Transport, String> {
    let s = &config.server;
    let certs = Arc::new(CertPolicy::new(s.client_ca.as_deref())?);
    let tls = match &s.tls {
        Some(files) => {
            let tls = tls::server_config(&files.cert, &files.key, &certs)?;
            tracing::info!("TLS on: client certificates are asked for, none required");
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls)))
        }
        None => None,
    };
    let cert_header = s
        .client_cert_header
        .as_deref()
        .map(|h| {
            warp::http::header::HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| format!("CIBA_CLIENT_CERT_HEADER: {h:?} is not a header name"))
        })
        .transpose()?;
    Ok(serve::Transport {
        tls,
        certs,
        cert_header,
    })
}

/// Migrate (SQLite), make sure signing keys exist, load them. Retries while the database is
/// unreachable so pods can start before it.
async fn initialise(state: &AppState) -> Result<(), String> {
    let st = state.clone();
    let mut attempt = 0u32;
    loop {
        let s = st.clone();
        let res = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            if s.store.backend() == Backend::Sqlite {
                let applied = s.store.migrate()?;
                if !applied.is_empty() {
                    tracing::info!(count = applied.len(), "applied migrations");
                }
            } else if s.store.pending_migrations()? > 0 {
                return Err(StoreError::Other(
                    "the database schema is not up to date: run `ciba-api migrate`".into(),
                ));
            }
            let created = keyring::ensure_keys(&s.store, &s.kek, now()).map_err(store_error)?;
            if !created.is_empty() {
                tracing::info!(count = created.len(), "generated signing keys");
            }
            s.keys.reload(&s.store, now()).map_err(store_error)
        })
        .await
        .map_err(|e| e.to_string())?;
        match res {
            Ok(()) => return Ok(()),
            Err(StoreError::Unavailable(e)) if attempt < 30 => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "database unavailable at start; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// A keyring failure as the store error it is, so an unavailable (or, on SQLite, briefly
/// locked) database is retried at start like any other read; anything else is fatal.
fn store_error(e: keyring::KeyringError) -> StoreError {
    match e {
        keyring::KeyringError::Store(e) => e,
        other => StoreError::Other(other.to_string()),
    }
}

/// Reload keys periodically so rotations made elsewhere (worker, admin CLI) are seen.
async fn refresh_keys(state: AppState, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_secs(state.config.key_refresh_interval as u64);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        let s = state.clone();
        let res = tokio::task::spawn_blocking(move || s.keys.reload(&s.store, now())).await;
        if let Ok(Err(e)) = res {
            tracing::warn!(error = %e, "reloading signing keys failed; keeping the current set");
        }
    }
}
