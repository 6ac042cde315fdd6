//! Issue 21: the flows' write steps (registration, start, decision, redemption) are jobs of
//! writer threads that commit those arriving together in one transaction (PostgreSQL:
//! `CIBA_DB_WRITERS` threads; SQLite: its one writer). Flows run at once each complete
//! exactly once, and every one of their steps went through a writer.
#![allow(clippy::unwrap_used)]

use crate::support;

use support::app::*;
use support::{Backend, TestServer};

/// Write steps the writer threads committed so far (their batch-size histogram's sum).
async fn written_steps(srv: &TestServer, b: Backend) -> f64 {
    let name = match b {
        Backend::Postgres => "ciba_pg_write_batch_size_sum ",
        Backend::Sqlite => "ciba_sqlite_write_batch_size_sum ",
    };
    let text = srv.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

async fn flows_at_once_complete_through_the_writers(b: Backend) {
    const FLOWS: usize = 8;
    let srv = TestServer::start(b).await;
    let m = Merchant::new(&srv, SCOPES, &[]).await;
    let mut apps = Vec::new();
    for i in 0..FLOWS {
        apps.push(App::enroll(&srv, &nnin(400 + i as u32), IPHONE).await);
    }
    let before = written_steps(&srv, b).await;
    let flows = apps.iter().map(|app| async {
        let started = start(&srv, &m, &app.nnin, IPHONE).await;
        started.ok();
        app.approve(&srv, &ref_of(started.str("authorize_uri")))
            .await
            .ok();
        let id = started.str("auth_req_id").to_owned();
        let tokens = m.poll(&srv, &id).await;
        tokens.ok();
        assert!(!tokens.str("id_token").is_empty());
        id
    });
    let ids = futures_util::future::join_all(flows).await;
    let written = written_steps(&srv, b).await - before;
    assert!(
        written >= (4 * FLOWS) as f64,
        "registration, start, decision and redemption of each flow: {written}"
    );
    for id in ids {
        m.poll(&srv, &id).await.expect_error(400, "invalid_grant");
    }
}

on_both_backends!(flows_at_once_complete_through_the_writers);
