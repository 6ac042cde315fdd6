#![allow(clippy::unwrap_used)]
//! Issue 24: the pools after the database dropped their connections (a PostgreSQL restart,
//! a failover, a cut network) and while it cannot be reached. A connection the server
//! closed must not stay in a pool, failing every later checkout with `no connection to the
//! server`; and while nothing can connect, a caller hears "unavailable" at once, not after
//! the checkout timeout.

use ciba_store::testing::{pg_admin_url, TestDatabase};
use ciba_store::{Backend, DatabaseUrl, Store, StoreError};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::Connection;
use std::time::{Duration, Instant};

/// End every session on `db` but the caller's, as a restart does.
fn terminate_sessions(db: &TestDatabase) {
    let name = db.url.rsplit('/').next().unwrap();
    let mut admin = PgConnection::establish(&pg_admin_url()).unwrap();
    admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
}

fn select_one(store: &Store) -> Result<(), StoreError> {
    store.read(|c| Ok(c.batch_execute("SELECT 1")?))
}

fn soft_select_one(store: &Store) -> Result<(), StoreError> {
    store.write_soft(|c| Ok(c.batch_execute("SELECT 1")?))
}

#[test]
fn connections_the_server_closed_leave_the_pools() {
    let db = TestDatabase::create(Backend::Postgres);
    let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 4).unwrap();
    // Several idle connections in each pool.
    let held: Vec<_> = (0..3).map(|_| store.conn().unwrap()).collect();
    drop(held);
    select_one(&store).unwrap();
    soft_select_one(&store).unwrap();
    store.write(|c| Ok(c.batch_execute("SELECT 1")?)).unwrap();

    terminate_sessions(&db);
    // The first use may meet a dead connection (and says unavailable); after that, every
    // idle connection from before is checked before use, and the pools work again.
    let first = select_one(&store);
    assert!(
        matches!(first, Ok(()) | Err(StoreError::Unavailable(_))),
        "{first:?}"
    );
    for i in 0..10 {
        select_one(&store).unwrap_or_else(|e| panic!("read {i} after the restart: {e}"));
        store
            .write(|c| Ok(c.batch_execute("SELECT 1")?))
            .unwrap_or_else(|e| panic!("write {i} after the restart: {e}"));
    }
    let first = soft_select_one(&store);
    assert!(
        matches!(first, Ok(()) | Err(StoreError::Unavailable(_))),
        "{first:?}"
    );
    for i in 0..10 {
        soft_select_one(&store).unwrap_or_else(|e| panic!("soft write {i}: {e}"));
    }
    store.ping().unwrap();
}

#[test]
fn an_unreachable_database_is_unavailable_at_once() {
    // Nothing listens on port 1: every attempt is refused.
    let url = DatabaseUrl::parse("postgres://postgres@127.0.0.1:1/none").unwrap();
    let store = Store::open(&url, 4).unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let e = select_one(&store).unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        // The checkout timeout is 3 s; a refused connection is known within milliseconds.
        // 1.5 s leaves room for a loaded machine.
        assert!(
            started.elapsed() < Duration::from_millis(1_500),
            "waited {:?}",
            started.elapsed()
        );
    }
}
