//! SQLite's writes through one thread, committed together. SQLite has one writer at a time;
//! before, each write step took a blocking-pool thread that queued on the writer lock (a
//! futex hand-off per step) and committed on its own (a WAL append per step, and every
//! reader's page cache invalidated by each). Now the API's write steps are jobs sent to the
//! `ciba-sqlite-write` thread ([`crate::group_commit`]): the jobs that arrive while one batch
//! is in the database make the next, and a batch is one transaction in which each job runs
//! in a savepoint of its own.
//!
//! Semantics per job are those of its own transaction: a job that fails is rolled back to its
//! savepoint alone, the others go on; a job's answer is sent only after the batch has
//! committed (a failed commit fails every job of the batch). A job sent by [`submit_one`] (a
//! single statement, or steps that open their own transaction: `db_write_one`) runs without
//! a savepoint of its own, as it would run without a transaction on PostgreSQL: a statement
//! is undone alone when it fails, and each savepoint costs SQLite two statements parsed
//! afresh (diesel sends them as text), which had been an eighth of the API's CPU in a flow.
//! Jobs run in the order they arrived, so each sees the writes of those before it, as it
//! would one after another.
//! PostgreSQL does not use this: its steps run on pooled connections in parallel.

use crate::error::ApiResult;
use crate::group_commit::{Batch, GroupCommit, Reply};
use ciba_store::{DbConnection, Store, StoreError, StoreResult};
use std::any::Any;
use std::collections::VecDeque;

/// The most jobs one transaction commits.
pub const MAX_BATCH: usize = 64;

/// A write step: run on the writer's connection, its answer boxed.
pub struct Job {
    step: Step,
    /// Run in a savepoint of its own (else it is one statement, or keeps its own).
    savepoint: bool,
}

type Step = Box<dyn FnOnce(&mut DbConnection) -> StoreResult<Box<dyn Any + Send>> + Send>;

/// Batches of write steps, oldest first.
pub struct Writes;

impl Batch for Writes {
    type Item = Job;
    type Out = StoreResult<Box<dyn Any + Send>>;

    fn take(waiting: &mut VecDeque<(Job, Reply<Self::Out>)>) -> Vec<(Job, Reply<Self::Out>)> {
        crate::group_commit::oldest(waiting, MAX_BATCH)
    }

    fn write(store: &Store, jobs: Vec<Job>) -> Result<Vec<Self::Out>, StoreError> {
        store.write(|conn| {
            Ok(jobs
                .into_iter()
                .map(|job| match job.savepoint {
                    true => ciba_store::transaction(conn, job.step),
                    false => (job.step)(conn),
                })
                .collect())
        })
    }
}

/// Hands write steps to the writer thread; cheap to clone.
pub type SqliteWriter = GroupCommit<Writes>;

/// Run `f` as a job of `writer`, in a savepoint of its own: its own answer, or the batch's
/// failure (outer).
pub async fn submit<R, F>(writer: &SqliteWriter, f: F) -> ApiResult<StoreResult<R>>
where
    R: Send + 'static,
    F: FnOnce(&mut DbConnection) -> StoreResult<R> + Send + 'static,
{
    send(writer, f, true).await
}

/// [`submit`] for a single statement, or steps that keep their own transaction: no savepoint.
pub async fn submit_one<R, F>(writer: &SqliteWriter, f: F) -> ApiResult<StoreResult<R>>
where
    R: Send + 'static,
    F: FnOnce(&mut DbConnection) -> StoreResult<R> + Send + 'static,
{
    send(writer, f, false).await
}

async fn send<R, F>(writer: &SqliteWriter, f: F, savepoint: bool) -> ApiResult<StoreResult<R>>
where
    R: Send + 'static,
    F: FnOnce(&mut DbConnection) -> StoreResult<R> + Send + 'static,
{
    let step: Step = Box::new(move |c| f(c).map(|r| Box::new(r) as Box<dyn Any + Send>));
    let answer = writer.submit(Job { step, savepoint }).await?;
    Ok(answer.map(downcast::<R>).and_then(|r| r))
}

/// A job's boxed answer as the type it was sent with (a mismatch is a bug: 500).
pub(crate) fn downcast<R: 'static>(answer: Box<dyn Any + Send>) -> StoreResult<R> {
    answer.downcast::<R>().map(|r| *r).map_err(|_| {
        tracing::error!("a write job answered with another type");
        StoreError::Other("a write job answered with another type".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciba_store::testing::TestDatabase;
    use ciba_store::{Backend, DatabaseUrl};
    use diesel::RunQueryDsl;

    fn insert(c: &mut DbConnection, key: &str) -> StoreResult<usize> {
        let q = diesel::sql_query("INSERT INTO used_jtis (jti_key, expires_at) VALUES (?, 1)")
            .bind::<diesel::sql_types::Text, _>(key.to_owned());
        Ok(q.execute(c)?)
    }

    /// How many used jtis match `filter` (an SQL condition).
    fn count(store: &Store, filter: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let q = diesel::sql_query(format!(
            "SELECT count(*) AS n FROM used_jtis WHERE {filter}"
        ));
        store.read(|c| Ok(q.get_result::<N>(c)?.n)).unwrap()
    }

    /// A writer on a new SQLite database, and its batch-size histogram.
    fn started() -> (TestDatabase, Store, SqliteWriter, prometheus::Histogram) {
        let db = TestDatabase::create(Backend::Sqlite);
        let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 2).unwrap();
        store.migrate().unwrap();
        let sizes =
            prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("t", "t")).unwrap();
        let writer = SqliteWriter::start("test-writer", store.clone(), sizes.clone()).unwrap();
        (db, store, writer, sizes)
    }

    /// The answers of `jobs`, in order.
    async fn answered(
        jobs: impl Iterator<Item = tokio::task::JoinHandle<StoreResult<usize>>>,
    ) -> Vec<StoreResult<usize>> {
        futures_util::future::join_all(jobs)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect()
    }

    /// Jobs committed together keep their own outcomes: a failing job's writes are rolled
    /// back alone, a conflicting one fails alone, every other job's write is there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_of_one_batch_succeed_and_fail_alone() {
        let (_db, store, writer, sizes) = started();
        let jobs = (0..200).map(|i| {
            let writer = writer.clone();
            tokio::spawn(async move {
                let key = format!("k{}", i % 150); // 50 keys written twice: conflicts
                submit(&writer, move |c| {
                    let n = insert(c, &key)?;
                    if i % 7 == 0 {
                        // written, then the job fails: its insert must not stay
                        insert(c, &format!("gone{i}"))?;
                        return Err(StoreError::Other("refused".into()));
                    }
                    Ok(n)
                })
                .await
                .unwrap()
            })
        });
        let answers = answered(jobs).await;
        let ok = answers.iter().filter(|a| matches!(a, Ok(1))).count();
        let failed = answers.iter().filter(|a| a.is_err()).count();
        assert_eq!(ok + failed, 200);
        // Each of the 150 keys is stored by exactly one job that did not fail.
        assert_eq!(count(&store, "true") as usize, ok);
        let kept_after_failure = count(&store, "jti_key LIKE 'gone%'");
        assert_eq!(kept_after_failure, 0);
        // Keys 0..50 have a second job (i + 150), which conflicts if the first stored the key
        // and stores it if the first failed; of keys 50..150, the 14 multiples of 7 are lost.
        assert_eq!(ok, 136);
        assert!(sizes.get_sample_count() >= 1);
    }

    /// Single-statement jobs need no savepoint: a conflicting insert fails alone, and the
    /// jobs before and after it in the batch keep their writes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn single_statement_jobs_fail_alone_without_a_savepoint() {
        let (_db, store, writer, sizes) = started();
        let jobs = (0..200).map(|i| {
            let writer = writer.clone();
            tokio::spawn(async move {
                let key = format!("k{}", i % 150);
                submit_one(&writer, move |c| insert(c, &key)).await.unwrap()
            })
        });
        let answers = answered(jobs).await;
        let ok = answers.iter().filter(|a| matches!(a, Ok(1))).count();
        assert_eq!(ok, 150, "each key once");
        assert_eq!(answers.iter().filter(|a| a.is_err()).count(), 50);
        assert_eq!(count(&store, "true"), 150);
        assert!(
            sizes.get_sample_sum() > sizes.get_sample_count() as f64,
            "some batches held several jobs"
        );
    }
}
