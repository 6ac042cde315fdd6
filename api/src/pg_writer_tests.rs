//! PostgreSQL's writer threads: jobs committed together keep the outcome each would have
//! alone.

use super::*;
use ciba_store::testing::TestDatabase;
use ciba_store::{Backend, DatabaseUrl};
use diesel::connection::SimpleConnection;
use diesel::RunQueryDsl;
use std::time::Duration;
use tokio::task::JoinHandle;

fn insert(c: &mut DbConnection, key: &str) -> StoreResult<usize> {
    let q = diesel::sql_query("INSERT INTO used_jtis (jti_key, expires_at) VALUES ($1, 1)")
        .bind::<diesel::sql_types::Text, _>(key.to_owned());
    Ok(q.execute(c)?)
}

/// The stored keys, sorted.
fn keys(store: &Store) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct K {
        #[diesel(sql_type = diesel::sql_types::Text)]
        jti_key: String,
    }
    let q = diesel::sql_query("SELECT jti_key FROM used_jtis ORDER BY jti_key");
    let rows: Vec<K> = store.read(|c| Ok(q.load(c)?)).unwrap();
    rows.into_iter().map(|k| k.jti_key).collect()
}

/// One writer thread on a new PostgreSQL database, and its batch-size histogram.
fn started() -> (TestDatabase, Store, PgWriters, prometheus::Histogram) {
    let db = TestDatabase::create(Backend::Postgres);
    let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 4).unwrap();
    store.migrate().unwrap();
    let sizes = prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("t", "t")).unwrap();
    let writers = PgWriters::start("test-pg-write", 1, &store, &sizes).unwrap();
    (db, store, writers, sizes)
}

type Job = Box<dyn FnMut(&mut DbConnection) -> StoreResult<usize> + Send>;

/// Runs `jobs` as one batch, in order: the thread is held by a first job until all of them
/// are queued behind it. Their answers, in order.
async fn one_batch(writers: &PgWriters, jobs: Vec<Job>) -> Vec<JoinHandle<StoreResult<usize>>> {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = std::sync::Mutex::new(held);
    let w = writers.clone();
    let holder = tokio::spawn(async move {
        w.submit(move |_| {
            Ok(held
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10))
                .is_ok())
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut answers = Vec::new();
    for job in jobs {
        let w = writers.clone();
        answers.push(tokio::spawn(async move { w.submit(job).await.unwrap() }));
        // queued in this order
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    release.send(()).unwrap();
    assert!(
        holder.await.unwrap().unwrap().unwrap(),
        "the thread was held"
    );
    answers
}

async fn answers(handles: Vec<JoinHandle<StoreResult<usize>>>) -> Vec<StoreResult<usize>> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Another connection, in a transaction that holds the stored row "held".
fn holding_a_row(db: &TestDatabase, store: &Store) -> diesel::PgConnection {
    store.write_one(|c| insert(c, "held")).unwrap();
    let mut holder = <diesel::PgConnection as diesel::Connection>::establish(&db.url).unwrap();
    holder
        .batch_execute("BEGIN; UPDATE used_jtis SET expires_at = 2 WHERE jti_key = 'held'")
        .unwrap();
    holder
}

/// A step that needs the row "held".
fn update_held(c: &mut DbConnection) -> StoreResult<usize> {
    let q = diesel::sql_query("UPDATE used_jtis SET expires_at = 3 WHERE jti_key = 'held'");
    Ok(q.execute(c)?)
}

fn inserting(key: &'static str) -> Job {
    Box::new(move |c| insert(c, key))
}

/// A job that fails (or panics) rolls back the batch: it answers its own error, and the
/// others are written by the batch tried again without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_fails_alone() {
    let (_db, store, writers, sizes) = started();
    // "a" is written by the first job: a unique violation
    let fails: Job = Box::new(|c| insert(c, "a"));
    let panics: Job = Box::new(|c| {
        insert(c, "written-then-panicked")?;
        panic!("a bug in a step")
    });
    let jobs = vec![inserting("a"), fails, panics, inserting("b")];
    let got = answers(one_batch(&writers, jobs).await).await;
    assert!(matches!(got[0], Ok(1)), "{:?}", got[0]);
    assert!(
        matches!(got[1], Err(StoreError::Conflict(_))),
        "{:?}",
        got[1]
    );
    assert!(matches!(got[2], Err(StoreError::Other(_))), "{:?}", got[2]);
    assert!(matches!(got[3], Ok(1)), "{:?}", got[3]);
    assert_eq!(keys(&store), ["a", "b"]);
    assert_eq!(
        sizes.get_sample_sum(),
        5.0,
        "the holder alone, then one batch of four"
    );
}

/// A job that handles a failed statement's error and answers Ok leaves PostgreSQL's
/// transaction aborted, where `COMMIT` rolls back without an error: the batch must not
/// answer the others' writes as done. Last in its batch, nothing after it would notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handled_failure_does_not_silently_undo_the_batch() {
    let (_db, store, writers, _) = started();
    store.write_one(|c| insert(c, "taken")).unwrap();
    let handles_error: Job = Box::new(|c| match insert(c, "taken") {
        Err(StoreError::Conflict(_)) => Ok(0),
        other => other,
    });
    let handles = one_batch(
        &writers,
        vec![inserting("a"), inserting("b"), handles_error],
    )
    .await;
    let got = answers(handles).await;
    assert!(matches!(got[..], [Ok(1), Ok(1), Ok(0)]), "{got:?}");
    assert_eq!(
        keys(&store),
        ["a", "b", "taken"],
        "every write answered as done is stored"
    );
}

/// A job waiting for a row another transaction holds does not hold up the rest of its
/// batch: past the writers' lock timeout it goes back to its caller to run alone, the others
/// are written and answered while the row is still held, and the waiting job is answered
/// once it is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waiting_for_a_lock_does_not_hold_up_its_batch() {
    let (db, store, writers, _) = started();
    let mut holder = holding_a_row(&db, &store);
    let waits: Job = Box::new(update_held);
    let mut handles = one_batch(&writers, vec![waits, inserting("a"), inserting("b")]).await;
    let waiting = handles.remove(0);
    let others = tokio::time::timeout(Duration::from_secs(20), answers(handles)).await;
    let others = others.expect("the others were answered while the row was held");
    assert!(matches!(others[..], [Ok(1), Ok(1)]), "{others:?}");
    assert!(!waiting.is_finished(), "the waiting job waits for the row");
    holder.batch_execute("COMMIT").unwrap();
    assert!(matches!(waiting.await.unwrap(), Ok(1)));
    assert_eq!(keys(&store), ["a", "b", "held"]);
}

/// A job alone in its batch that waits for a held row goes back to its caller too: the
/// thread takes the next job while the row is still held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_job_waiting_for_a_lock_does_not_hold_up_the_thread() {
    let (db, store, writers, _) = started();
    let mut holder = holding_a_row(&db, &store);
    let w = writers.clone();
    let waiting = tokio::spawn(async move { w.submit(update_held).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let next = tokio::time::timeout(Duration::from_secs(20), writers.submit(|c| insert(c, "a")));
    let next = next.await.expect("answered while the row was held");
    assert!(matches!(next, Ok(Ok(1))), "{next:?}");
    assert!(!waiting.is_finished(), "the waiting job waits for the row");
    holder.batch_execute("COMMIT").unwrap();
    assert!(matches!(waiting.await.unwrap(), Ok(1)));
    assert_eq!(keys(&store), ["a", "held"]);
}
