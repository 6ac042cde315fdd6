#![allow(clippy::unwrap_used)]
//! The flow's write statements are prepared once per connection on both backends.

use ciba_domain::audit::action;
use ciba_domain::status::{PermissionStatus, RequestStatus};
use ciba_store::audit;
use ciba_store::auth_requests;
use ciba_store::permissions::{self, Insert};
use ciba_store::testing::TestDatabase;
use ciba_store::{Backend, DatabaseUrl, Store};

mod common;
use common::*;

/// Each one-statement step is prepared once per connection and executed from then on: parsing
/// and planning the CTEs on every call was the PostgreSQL server's largest cost per flow.
#[test]
fn steps_are_prepared_once_per_connection_postgres() {
    let db = TestDatabase::create(Backend::Postgres);
    drop(store(&db)); // the schema, the client and the user
                      // One connection, so every call below runs on the session that is inspected.
    let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 1).unwrap();
    for (n, id) in ["p1", "p2", "p3"].iter().enumerate() {
        let e = event(action::PERMISSION_REGISTERED, id, 1);
        let nonce = format!("n{n}");
        let p = permission(id);
        let done = store.write_one(|c| permissions::register(c, &p, &nonce, &e));
        assert_eq!(done.unwrap(), Insert::Created);
    }
    for (r, p) in [("r1", "p1"), ("r2", "p2"), ("r3", "p3")] {
        let e = event(action::REQUEST_STARTED, r, 2);
        let row = request(r, p);
        assert!(store
            .write_one(|c| auth_requests::start_recorded(c, &row, p, NOW, &e))
            .unwrap());
    }
    let plans = |marker: &'static str| {
        store
            .read(move |c| {
                let sql = "SELECT count(*) AS statements, \
                           coalesce(sum(generic_plans + custom_plans), 0)::bigint AS executions \
                           FROM pg_prepared_statements WHERE statement LIKE $1";
                let q = diesel::sql_query(sql).bind::<diesel::sql_types::Text, _>(marker);
                Ok(diesel::RunQueryDsl::get_result::<Plans>(q, c)?)
            })
            .unwrap()
    };
    for marker in [
        "%INSERT INTO permission_nonces%",
        "%UPDATE permissions SET token_used_at%",
    ] {
        let p = plans(marker);
        assert_eq!((p.statements, p.executions), (1, 3), "{marker}");
    }
}

/// The statements diesel would prepare afresh on every call (an `UPDATE`, an insert of
/// optional values) are prepared once per connection on both backends: diesel reports a
/// statement as cached once, however often it runs.
fn written_statements_are_cached(backend: Backend) {
    use std::sync::{Arc, Mutex};
    let db = TestDatabase::create(backend);
    drop(store(&db));
    let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 1).unwrap();
    let cached: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = cached.clone();
    store
        .read(move |c| {
            let log = move |e: diesel::connection::InstrumentationEvent<'_>| {
                if let diesel::connection::InstrumentationEvent::CacheQuery { sql, .. } = e {
                    seen.lock().unwrap().push(sql.to_owned());
                }
            };
            match c {
                ciba_store::DbConnection::Pg(c) => diesel::Connection::set_instrumentation(c, log),
                ciba_store::DbConnection::Sqlite(c) => {
                    diesel::Connection::set_instrumentation(c, log)
                }
            }
            Ok(())
        })
        .unwrap();
    for i in 0..3 {
        let id = format!("e{i}");
        let e = event(action::REQUEST_REDEEMED, &id, i);
        store.write_one(|c| audit::insert(c, &e)).unwrap();
        let redeemed = store.write_one(|c| auth_requests::redeem(c, &id, "c1", NOW));
        assert!(!redeemed.unwrap(), "no such request");
        let claimed = store.write_one(|c| permissions::claim_token(c, (&id, "c1"), "ciba", NOW));
        assert!(claimed.unwrap().is_none(), "no such permission");
        let decided = store.write_one(|c| {
            auth_requests::record_decision(c, &id, RequestStatus::Approved, "d1", "[]", NOW)
        });
        assert!(decided.unwrap().is_none(), "no such request");
        let followed = store.write_one(|c| {
            permissions::follow_request(c, (&id, &id), PermissionStatus::Granted, Some("u1"), NOW)
        });
        assert!(!followed.unwrap(), "no such permission");
        // Batches of 1, 2 and 3 polls.
        let polls: Vec<_> = (0..=i)
            .map(|k| ciba_store::polling::Poll {
                id: format!("{id}-{k}"),
                client_id: "c1".into(),
                now_ms: NOW * 1000,
            })
            .collect();
        let polled = store.write_one(|c| ciba_store::polling::record_polls(c, &polls, 500));
        assert_eq!(polled.unwrap().len() as i64, i + 1);
    }
    let cached = cached.lock().unwrap().clone();
    for marker in [
        "INSERT INTO audit_events",
        "UPDATE auth_requests SET redeemed_at",
        "UPDATE permissions SET token_used_at",
        "UPDATE auth_requests SET status",
        "UPDATE permissions SET status",
    ] {
        let n = cached.iter().filter(|s| s.contains(marker)).count();
        assert_eq!(n, 1, "{marker} cached once: {cached:?}");
    }
    // SQLite's poll batch: one statement for every batch size, and one read of the polls it
    // did not write (PostgreSQL's is a function).
    let batches = |head: &str| {
        cached
            .iter()
            .filter(|s| s.contains("json_each") && s.trim_start().starts_with(head))
            .count()
    };
    let sqlite = usize::from(backend == Backend::Sqlite);
    assert_eq!(batches("UPDATE auth_requests"), sqlite, "{cached:?}");
    assert_eq!(batches("SELECT"), sqlite, "{cached:?}");
    assert_eq!(trail(&store).len(), 3);
}

#[test]
fn written_statements_are_cached_sqlite() {
    written_statements_are_cached(Backend::Sqlite);
}

#[test]
fn written_statements_are_cached_postgres() {
    written_statements_are_cached(Backend::Postgres);
}

#[derive(diesel::QueryableByName)]
struct Plans {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    statements: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    executions: i64,
}
