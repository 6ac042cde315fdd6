//! PostgreSQL's single-statement write steps committed together. Each flow step (the
//! registration, the start, the decision, the redemption) is one statement, and each had been
//! a commit of its own: a WAL flush waited for, and a hand-off to a blocking-pool thread. Now
//! they are jobs of a few `ciba-pg-write` threads ([`crate::group_commit`]), each with a
//! connection of its own: the jobs that arrive while a thread's batch is in the database make
//! its next, and a batch of several is one transaction (`BEGIN`, the statements in the order
//! they arrived, `COMMIT`), a batch of one a statement alone as before.
//!
//! Semantics per job are those of its own statement:
//! - each job's statement sees the writes of those before it in the batch (READ COMMITTED
//!   takes a snapshot per statement), as it would one after another;
//! - an answer is sent only after its batch has committed; a failed commit fails the batch;
//! - a job that fails aborts the transaction (so does one that handled a failed statement's
//!   error: checked before `COMMIT`, which would otherwise roll back unseen): the batch is
//!   rolled back and every job of it goes back to its caller, which runs it alone on a
//!   pooled connection as before batching (in the blocking pool: a job that waits there
//!   holds up no other). So the failure is that job's, and the others are written as if it
//!   had not been there. A job may therefore run twice (the first time rolled back), so jobs
//!   are `FnMut`, and none has effects outside the database.
//!
//! Only steps that change rows of their own flow (a permission, a request, inserts of ids and
//! events) come here: a batch holds its row locks until it commits, and steps that update
//! rows shared by many flows (the rate-limit counters) would make the threads' batches wait
//! on each other. Those keep their own group commit ([`crate::limits`]). A row can still be
//! wanted by two at once (a token presented twice at once, a worker's sweep): a batch's
//! statements wait at most [`ciba_store::BATCH_LOCK_TIMEOUT`] for a lock, so neither two
//! batches that each hold a row the other wants (PostgreSQL's deadlock check takes a
//! second) nor a long-held row keeps a batch's other jobs waiting; then its jobs run alone.

use crate::error::ApiResult;
use crate::group_commit::{Batch, GroupCommit, Reply};
use ciba_store::{DbConnection, Store, StoreError, StoreResult};
use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The most jobs one transaction commits.
pub const MAX_BATCH: usize = 32;

type Step = Box<dyn FnMut(&mut DbConnection) -> StoreResult<Box<dyn Any + Send>> + Send>;

/// Batches of single-statement write steps, oldest first.
pub struct Steps;

/// Why a batch's transaction was given up: a step failed, so each runs alone.
const STEP_FAILED: &str = "a step of the batch failed";

/// A job handed back to its caller, to run alone.
struct RunAlone(Step);

impl Batch for Steps {
    type Item = Step;
    type Out = StoreResult<Box<dyn Any + Send>>;

    fn take(waiting: &mut VecDeque<(Step, Reply<Self::Out>)>) -> Vec<(Step, Reply<Self::Out>)> {
        let n = waiting.len().min(MAX_BATCH);
        waiting.drain(..n).collect()
    }

    fn write(store: &Store, mut steps: Vec<Step>) -> Result<Vec<Self::Out>, StoreError> {
        if let [step] = steps.as_mut_slice() {
            return Ok(vec![store.write_one(|c| step(c))]);
        }
        let mut failed = false;
        let together = store.write_batch(|c| {
            let mut outs = Vec::with_capacity(steps.len());
            for step in steps.iter_mut() {
                match step(c) {
                    Ok(out) => outs.push(out),
                    Err(_) => {
                        failed = true;
                        return Err(StoreError::Other(STEP_FAILED.into()));
                    }
                }
            }
            // A step that handled a failed statement's error left the transaction aborted.
            if ciba_store::still_open(c).is_err() {
                failed = true;
                return Err(StoreError::Other(STEP_FAILED.into()));
            }
            Ok(outs)
        });
        match together {
            Ok(outs) => Ok(outs.into_iter().map(Ok).collect()),
            Err(_) if failed => Ok(steps
                .into_iter()
                .map(|step| Ok(Box::new(RunAlone(step)) as Box<dyn Any + Send>))
                .collect()),
            Err(e) => Err(e),
        }
    }
}

/// The writer threads, started on first use; cheap to clone.
#[derive(Clone)]
pub struct PgWriters {
    threads: Arc<[(GroupCommit<Steps>, AtomicUsize)]>,
    store: Store,
}

impl PgWriters {
    /// Start `count` threads named `name-<n>`.
    ///
    /// # Errors
    /// When the operating system refuses a new thread.
    pub fn start(
        name: &str,
        count: usize,
        store: &Store,
        sizes: &prometheus::Histogram,
    ) -> std::io::Result<Self> {
        let count = count.max(1);
        let batches = store.with_batch_pool(count as u32);
        let threads = (0..count)
            .map(|n| {
                let thread =
                    GroupCommit::start(&format!("{name}-{n}"), batches.clone(), sizes.clone())?;
                Ok((thread, AtomicUsize::new(0)))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            threads: threads.into(),
            store: store.clone(),
        })
    }

    /// When each thread has ended (at shutdown).
    pub fn ended(&self) -> Vec<crate::group_commit::ThreadEnded> {
        self.threads.iter().map(|(t, _)| t.ended()).collect()
    }

    /// Run `f` as a job of the thread with the fewest jobs in hand: its own answer, or its
    /// batch's failure (outer).
    pub async fn submit<R, F>(&self, mut f: F) -> ApiResult<StoreResult<R>>
    where
        R: Send + 'static,
        F: FnMut(&mut DbConnection) -> StoreResult<R> + Send + 'static,
    {
        let (thread, in_hand) = self
            .threads
            .iter()
            .min_by_key(|(_, n)| n.load(Ordering::Relaxed))
            .expect("at least one writer thread");
        let step: Step = Box::new(move |c| f(c).map(|r| Box::new(r) as Box<dyn Any + Send>));
        in_hand.fetch_add(1, Ordering::Relaxed);
        let answer = {
            let _done = InHand(in_hand);
            thread.submit(step).await?
        };
        let answer = match answer {
            Ok(out) => match out.downcast::<RunAlone>() {
                Ok(alone) => {
                    let (store, RunAlone(mut step)) = (self.store.clone(), *alone);
                    crate::state::bounded(crate::state::blocking(move || {
                        Ok(store.write_one(|c| step(c)))
                    }))
                    .await?
                }
                Err(out) => Ok(out),
            },
            Err(e) => Err(e),
        };
        Ok(answer
            .map(crate::sqlite_writer::downcast::<R>)
            .and_then(|r| r))
    }
}

/// Counts a job out of its thread's hands when dropped (answered or given up).
struct InHand<'a>(&'a AtomicUsize);

impl Drop for InHand<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[path = "pg_writer_tests.rs"]
mod tests;
