#![allow(clippy::unwrap_used)]
//! How a poll batch (`polling::record_polls`) uses the database: it never waits long for (or
//! deadlocks with) another transaction holding its rows, finds each row by its key whatever
//! the table holds, updates rows in place, and writes nothing for a too-early poll at the
//! maximum interval. What it answers is in `poll_batch.rs`.

mod poll_rows;

use ciba_store::auth_requests as requests;
use ciba_store::polling::{self, Paced, Poll};
use ciba_store::testing::TestDatabase;
use ciba_store::{Backend, Store};
use diesel::connection::SimpleConnection;
use poll_rows::{poll, store, GRACE_MS, NOW_MS};

/// A row another transaction holds for longer than the batch's lock timeout is skipped
/// (answered false, for the careful path), left as it was, and the batch's other polls are
/// recorded (by its second attempt: the first, which waited, was rolled back).
#[test]
fn a_row_held_past_the_lock_timeout_is_skipped_postgres() {
    let db = TestDatabase::create(Backend::Postgres);
    let store = store(&db);
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let store = store.clone();
        std::thread::spawn(move || {
            store
                .write(|c| {
                    c.batch_execute(
                        "SELECT id FROM auth_requests WHERE id IN ('paced', 'early') FOR UPDATE",
                    )?;
                    locked_tx.send(()).unwrap();
                    done_rx.recv().unwrap();
                    Ok(())
                })
                .unwrap();
        })
    };
    locked_rx.recv().unwrap();
    let polls = vec![poll("early"), poll("fresh"), poll("paced")];
    // The batch must answer while the row is still held (the holder lets go only after).
    let (answer_tx, answer_rx) = std::sync::mpsc::channel();
    {
        let (store, polls) = (store.clone(), polls.clone());
        std::thread::spawn(move || {
            let got = store.write_soft(|c| polling::record_polls(c, &polls, GRACE_MS));
            let _ = answer_tx.send(got);
        });
    }
    let got = answer_rx.recv_timeout(std::time::Duration::from_secs(60));
    done_tx.send(()).unwrap();
    holder.join().unwrap();
    let got = got.expect("the batch waited for the held row").unwrap();
    assert_eq!(got, [Paced::LookCloser, Paced::Recorded, Paced::LookCloser]);
    let last_poll = |id: &str| {
        store
            .read(|c| requests::find(c, id))
            .unwrap()
            .unwrap()
            .last_poll_ms
    };
    assert_eq!(last_poll("fresh"), Some(NOW_MS));
    assert_eq!(last_poll("paced"), Some(NOW_MS - 2_000), "untouched");
    assert_eq!(last_poll("early"), Some(NOW_MS - 1_000), "untouched");
    // Released: the skipped polls go through now.
    let got = store
        .write_soft(|c| polling::record_polls(c, &[poll("early"), poll("paced")], GRACE_MS))
        .unwrap();
    assert_eq!(got, [Paced::SlowedDown, Paced::Recorded]);
}

/// The careful path's one poll (`record_poll`, the batch function told to wait) waits for a
/// row another transaction holds far past the batch's 20 ms lock timeout, and records the
/// poll once the row is free: a well-paced poll is never answered `slow_down` because a
/// decision was being committed.
#[test]
fn one_poll_waits_for_a_held_row_postgres() {
    let db = TestDatabase::create(Backend::Postgres);
    let store = store(&db);
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = {
        let store = store.clone();
        std::thread::spawn(move || {
            store
                .write(|c| {
                    c.batch_execute("SELECT id FROM auth_requests WHERE id = 'paced' FOR UPDATE")?;
                    locked_tx.send(()).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    Ok(())
                })
                .unwrap();
        })
    };
    locked_rx.recv().unwrap();
    // The row is held when the poll starts: a skip (as the batch does) would answer false.
    let recorded = store
        .write_soft(|c| polling::record_poll(c, &poll("paced"), GRACE_MS))
        .unwrap();
    holder.join().unwrap();
    assert!(recorded, "the poll waited for the row and was recorded");
    let last = store.read(|c| requests::find(c, "paced")).unwrap().unwrap();
    assert_eq!(last.last_poll_ms, Some(NOW_MS));
    // The batch's own timeout is back for the next call of the function in this session.
    let batch = store
        .write_soft(|c| polling::record_polls(c, &[poll("fresh")], GRACE_MS))
        .unwrap();
    assert_eq!(batch, [Paced::Recorded]);
}

/// `slow_down` is the cheapest answer: a too-early poll of a request whose interval is at its
/// maximum is answered without writing anything (no row version, no WAL, nothing to commit),
/// while the polls beside it in the batch are still written.
fn a_too_early_poll_at_the_maximum_writes_nothing(backend: Backend) {
    let db = TestDatabase::create(backend);
    let store = store(&db);
    let changes = |c: &mut ciba_store::DbConnection| -> ciba_store::StoreResult<i64> {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let sql = match backend {
            Backend::Sqlite => "SELECT total_changes() AS n",
            Backend::Postgres => {
                "SELECT n_tup_upd AS n FROM pg_stat_xact_user_tables \
                 WHERE relname = 'auth_requests'"
            }
        };
        Ok(diesel::RunQueryDsl::get_result::<N>(diesel::sql_query(sql), c)?.n)
    };
    let written = |polls: &[Poll]| {
        store
            .write(|c| {
                let before = changes(c)?;
                let got = polling::record_polls(c, polls, GRACE_MS)?;
                Ok((got, changes(c)? - before))
            })
            .unwrap()
    };
    let (got, n) = written(&[poll("capped")]);
    assert_eq!((got, n), (vec![Paced::SlowedDown], 0), "a read only");
    let (got, n) = written(&[poll("capped"), poll("early"), poll("fresh")]);
    assert_eq!(got, [Paced::SlowedDown, Paced::SlowedDown, Paced::Recorded]);
    assert_eq!(n, 2, "the interval that grew and the recorded poll");
}

#[test]
fn a_too_early_poll_at_the_maximum_writes_nothing_sqlite() {
    a_too_early_poll_at_the_maximum_writes_nothing(Backend::Sqlite);
}

#[test]
fn a_too_early_poll_at_the_maximum_writes_nothing_postgres() {
    a_too_early_poll_at_the_maximum_writes_nothing(Backend::Postgres);
}

/// `n` pending requests of client c1, `{prefix}1..={prefix}n`, inserted in one statement.
fn insert_pending_pg(store: &Store, prefix: &str, n: u32) {
    let now = NOW_MS / 1000;
    let sql = format!(
        "INSERT INTO auth_requests (id, link_ref, client_id, user_sub, flow, scope, acr, \
         status, interval_secs, created_at, expires_at) \
         SELECT '{prefix}' || g, '{prefix}ref' || g, 'c1', 'sub', 'ciba', 'openid', \
         'urn:acr:high', 'pending', 2, {now}, {} FROM generate_series(1, {n}) AS g",
        now + 60
    );
    store.write(|c| Ok(c.batch_execute(&sql)?)).unwrap();
}

/// What this backend did to `auth_requests` so far (PostgreSQL keeps a backend's counts
/// until it reports them, so they may include earlier statements of its own: compare two).
#[derive(diesel::QueryableByName, Debug)]
struct TableCounts {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq_scan: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    idx_scan: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n_tup_upd: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n_tup_hot_upd: i64,
}

/// One batch in a transaction, with the table's counts just before and just after it.
fn batch_with_counts(store: &Store, polls: &[Poll]) -> (Vec<Paced>, TableCounts, TableCounts) {
    let counts = |c: &mut ciba_store::DbConnection| {
        diesel::RunQueryDsl::get_result::<TableCounts>(
            diesel::sql_query(
                "SELECT seq_scan, coalesce(idx_scan, 0) AS idx_scan, n_tup_upd, n_tup_hot_upd \
                 FROM pg_stat_xact_user_tables WHERE relname = 'auth_requests'",
            ),
            c,
        )
    };
    store
        .write(|c| {
            let before = counts(c)?;
            let got = polling::record_polls(c, polls, GRACE_MS)?;
            Ok((got, before, counts(c)?))
        })
        .unwrap()
}

/// A batch finds its rows by primary key however small the table: against 1,000 analysed
/// rows the planner once preferred a hash join over a scan of the whole table for every
/// batch, even of one poll (migration 000007).
#[test]
fn a_batch_looks_its_rows_up_by_key_in_a_small_table_postgres() {
    let db = TestDatabase::create(Backend::Postgres);
    let store = store(&db);
    insert_pending_pg(&store, "small", 1000);
    // small70: at the maximum interval and polled a second ago, so the batch reads it after
    // its update (the function's second statement must find its rows by key too)
    let capped = format!(
        "UPDATE auth_requests SET interval_secs = 60, last_poll_ms = {} WHERE id = 'small70'; \
         ANALYZE auth_requests",
        NOW_MS - 1_000
    );
    store.write(|c| Ok(c.batch_execute(&capped)?)).unwrap();
    let polls = [poll("small7"), poll("small70"), poll("small700")];
    let (got, before, after) = batch_with_counts(&store, &polls);
    assert_eq!(got, [Paced::Recorded, Paced::SlowedDown, Paced::Recorded]);
    assert_eq!(
        after.seq_scan, before.seq_scan,
        "the batch scanned the table"
    );
    let lookups = after.idx_scan - before.idx_scan;
    assert!(lookups >= 3, "{lookups} index scans");
}

/// Polls update their requests in place (heap-only updates, no new index entries): pages
/// keep room for new versions of their rows (migration 000009). With full pages, the first
/// poll of each request moved its row and added an entry to each of the table's indexes.
/// Here one batch polls every fourth of 500 requests inserted together.
#[test]
fn polls_update_their_rows_in_place_postgres() {
    let db = TestDatabase::create(Backend::Postgres);
    let store = store(&db);
    insert_pending_pg(&store, "hot", 500);
    let mut polls: Vec<Poll> = (1..=500)
        .step_by(4)
        .map(|i| poll(&format!("hot{i}")))
        .collect();
    polls.sort_by(|a, b| a.id.cmp(&b.id));
    let (got, before, after) = batch_with_counts(&store, &polls);
    assert!(got.iter().all(|t| *t == Paced::Recorded));
    assert_eq!(after.n_tup_upd - before.n_tup_upd, 125);
    assert_eq!(
        after.n_tup_hot_upd - before.n_tup_hot_upd,
        125,
        "every update in place: {before:?} → {after:?}"
    );
}

#[derive(diesel::QueryableByName, Debug)]
struct PlanStep {
    #[diesel(sql_type = diesel::sql_types::Text)]
    detail: String,
}

/// SQLite: the batch (one JSON parameter for all its polls) looks each poll's row up by key,
/// whatever the table holds: the planner must not search the pending rows through the
/// status index and scan the polls for each, which it preferred before the statement kept
/// it off that index.
#[test]
fn a_batch_looks_its_rows_up_by_key_sqlite() {
    let db = TestDatabase::create(Backend::Sqlite);
    let store = store(&db);
    let now = NOW_MS / 1000;
    let sql = format!(
        "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 2000) \
         INSERT INTO auth_requests (id, link_ref, client_id, user_sub, flow, scope, acr, \
         status, interval_secs, created_at, expires_at) \
         SELECT 'many' || n, 'manyref' || n, 'c1', 'sub', 'ciba', 'openid', 'urn:acr:high', \
         'pending', 2, {now}, {} FROM g;",
        now + 60
    );
    store.write(|c| Ok(c.batch_execute(&sql)?)).unwrap();
    // The batch's statement, and the read of the too-early polls it left.
    let statements = [
        include_str!("../src/polling/record_polls.sqlite.sql"),
        include_str!("../src/polling/capped_polls.sqlite.sql"),
    ]
    .map(|s| {
        s.replace("$1", "?1")
            .replace("$2", "?2")
            .replace("$3", "?3")
    });
    let plan = |statement: &str| {
        let steps = store
            .read(|c| {
                let ciba_store::DbConnection::Sqlite(c) = c else {
                    unreachable!("a SQLite store")
                };
                let q = diesel::sql_query(format!("EXPLAIN QUERY PLAN {statement}"))
                    .bind::<diesel::sql_types::BigInt, _>(GRACE_MS)
                    .bind::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>, _>(Some(60))
                    .bind::<diesel::sql_types::Text, _>(r#"[["many7","c1",1900000000000]]"#);
                Ok(diesel::RunQueryDsl::load::<PlanStep>(q, c)?)
            })
            .unwrap();
        steps.into_iter().map(|s| s.detail).collect::<Vec<_>>()
    };
    // As a server's database is (SQLite's statistics are never gathered), then analysed.
    for analysed in [false, true] {
        if analysed {
            store.write(|c| Ok(c.batch_execute("ANALYZE")?)).unwrap();
        }
        for (i, statement) in statements.iter().enumerate() {
            let plan = plan(statement);
            let by_key = "USING INDEX sqlite_autoindex_auth_requests_1 (id=?)";
            assert!(
                plan.iter()
                    .any(|d| d.starts_with("SEARCH ") && d.ends_with(by_key)),
                "{i} {analysed}: {plan:?}"
            );
            assert!(
                !plan.iter().any(|d| d.contains("SCAN auth_requests")
                    || d.contains("SCAN a ")
                    || d.ends_with("SCAN a")
                    || d.contains("status=")),
                "{i} {analysed}: {plan:?}"
            );
        }
    }
    let polls = [poll("many7"), poll("many1999")];
    let got = store
        .write(|c| polling::record_polls(c, &polls, GRACE_MS))
        .unwrap();
    assert_eq!(got, [Paced::Recorded, Paced::Recorded]);
}
