//! PostgreSQL's write steps committed together. Each flow step (the registration, the start,
//! the decision, the redemption) is one statement, and each had been a commit of its own: a
//! WAL flush waited for, and a hand-off to a blocking-pool thread. Now they are jobs of a few
//! `ciba-pg-write` threads ([`crate::group_commit`]), each with a connection of its own: the
//! jobs that arrive while a thread's batch is in the database make its next, and a batch of
//! several is one transaction (`BEGIN`, the steps in the order they arrived, `COMMIT`), a
//! batch of one a step alone as before.
//!
//! Semantics per job are those of the step alone:
//! - each step sees the writes of those before it in the batch (READ COMMITTED takes a
//!   snapshot per statement), as it would one after another;
//! - an answer is sent only after its batch has committed; a failed `COMMIT` (its outcome
//!   unknown) fails the batch, as it would fail a step alone;
//! - a step that fails aborts the transaction: the batch is rolled back, that step answers
//!   its own error (it would fail alone too, after the same steps), and the others run again
//!   as a batch without it. A step that had to wait too long for a row lock, or failed for a
//!   reason of the moment, goes back to its caller instead, which runs it alone on a pooled
//!   connection (in the blocking pool, where its wait holds up no other). So a job may run
//!   more than once, the earlier runs rolled back: jobs are `FnMut`, and none has effects
//!   outside the database;
//! - a step that handled a failed statement's error leaves the transaction aborted, where
//!   `COMMIT` would roll back unseen: checked before it, and then every job of the batch
//!   goes back to its caller to run alone; so does every job when no transaction could be
//!   begun (no connection).
//!
//! Only steps that change rows of their own flow (a permission, a request, inserts of ids and
//! events) come here: a batch holds its row locks until it commits, and steps that update
//! rows shared by many flows (the rate-limit counters) would make the threads' batches wait
//! on each other. Those keep their own group commit ([`crate::limits`]). A row can still be
//! wanted by two at once (a token presented twice at once, a worker's sweep): a step waits at
//! most [`ciba_store::BATCH_LOCK_TIMEOUT`] for a lock on a writer's connection, so neither two
//! batches that each hold a row the other wants (PostgreSQL's deadlock check takes a second)
//! nor a row held long keeps a thread, and the jobs queued behind it, waiting.

use crate::error::ApiResult;
use crate::group_commit::{Batch, GroupCommit, Reply};
use ciba_store::{DbConnection, Store, StoreError, StoreResult};
use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The most jobs one transaction commits.
pub const MAX_BATCH: usize = 32;

/// How often a batch is tried again without a step that failed; then its jobs run alone.
const RETRIES: usize = 3;

type Step = Box<dyn FnMut(&mut DbConnection) -> StoreResult<Box<dyn Any + Send>> + Send>;

/// A job: its step, and its place in its thread's count of jobs in hand (taken off when the
/// thread is done with it).
pub struct Job {
    step: Step,
    _in_hand: InHand,
}

/// Batches of write steps, oldest first.
pub struct Steps;

/// A step handed back to its caller, to run alone.
struct RunAlone(Step);

fn run_alone(step: Step) -> StoreResult<Box<dyn Any + Send>> {
    Ok(Box::new(RunAlone(step)))
}

/// How trying a batch went.
enum Tried {
    /// Committed: every step's answer, in order.
    Committed(Vec<Box<dyn Any + Send>>),
    /// The step at this place failed; the transaction was rolled back.
    Failed(usize, StoreError),
    /// Nothing was written, and no step is to blame (no connection; a failed statement
    /// whose error a step handled): the jobs run alone.
    RunAlone,
    /// `COMMIT` failed: what was written is unknown.
    CommitFailed(StoreError),
}

/// Run `step`; a panic fails it alone (its batch is tried again without it).
fn run(step: &mut Step, c: &mut DbConnection) -> StoreResult<Box<dyn Any + Send>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| step(c)))
        .unwrap_or_else(|_| Err(StoreError::Other("a write step panicked".into())))
}

/// Run `steps` as one transaction on a connection of the writers' pool (one alone, without).
fn try_batch(store: &Store, steps: &mut [(usize, Step)]) -> Tried {
    let (mut failed, mut committing) = (None, false);
    let tried = store.on_batch_connection(|c| {
        if let [(_, step)] = steps {
            return run(step, c)
                .map(|out| vec![out])
                .inspect_err(|_| failed = Some(0));
        }
        ciba_store::transaction(c, |c| {
            let mut outs = Vec::with_capacity(steps.len());
            for (at, (_, step)) in steps.iter_mut().enumerate() {
                match run(step, c) {
                    Ok(out) => outs.push(out),
                    Err(e) => {
                        failed = Some(at);
                        return Err(e);
                    }
                }
            }
            // A step that handled a failed statement's error left the transaction aborted.
            ciba_store::still_open(c)?;
            committing = true;
            Ok(outs)
        })
    });
    match (tried, failed) {
        (Ok(outs), _) => Tried::Committed(outs),
        (Err(e), Some(at)) => Tried::Failed(at, e),
        (Err(e), None) if committing => Tried::CommitFailed(e),
        (Err(_), None) => Tried::RunAlone,
    }
}

impl Batch for Steps {
    type Item = Job;
    type Out = StoreResult<Box<dyn Any + Send>>;

    fn take(waiting: &mut VecDeque<(Job, Reply<Self::Out>)>) -> Vec<(Job, Reply<Self::Out>)> {
        crate::group_commit::oldest(waiting, MAX_BATCH)
    }

    fn write(store: &Store, jobs: Vec<Job>) -> Result<Vec<Self::Out>, StoreError> {
        let mut answers: Vec<Option<Self::Out>> = jobs.iter().map(|_| None).collect();
        let mut left: Vec<(usize, Step)> = jobs.into_iter().map(|j| j.step).enumerate().collect();
        for _ in 0..=RETRIES {
            match try_batch(store, &mut left) {
                Tried::Committed(outs) => {
                    for ((i, _), out) in left.drain(..).zip(outs) {
                        answers[i] = Some(Ok(out));
                    }
                    break;
                }
                Tried::Failed(at, e) => {
                    let (i, step) = left.remove(at);
                    let again =
                        ciba_store::is_lock_timeout(&e) || matches!(e, StoreError::Unavailable(_));
                    answers[i] = Some(if again { run_alone(step) } else { Err(e) });
                    if left.is_empty() {
                        break;
                    }
                }
                Tried::RunAlone => break,
                Tried::CommitFailed(e) => {
                    for (i, _) in left.drain(..) {
                        answers[i] = Some(Err(e.clone()));
                    }
                    break;
                }
            }
        }
        for (i, step) in left {
            answers[i] = Some(run_alone(step));
        }
        Ok(answers
            .into_iter()
            .map(|a| {
                a.unwrap_or_else(|| Err(StoreError::Other("a write job went unanswered".into())))
            })
            .collect())
    }
}

/// The writer threads, started on first use; cheap to clone.
#[derive(Clone)]
pub struct PgWriters {
    threads: Arc<[(GroupCommit<Steps>, Arc<AtomicUsize>)]>,
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
                Ok((thread, Arc::new(AtomicUsize::new(0))))
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
        let job = Job {
            step,
            _in_hand: InHand(in_hand.clone()),
        };
        let answer = thread.submit(job).await?;
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

/// Counts a job out of its thread's hands when dropped: when the thread is done with it.
struct InHand(Arc<AtomicUsize>);

impl Drop for InHand {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[path = "pg_writer_tests.rs"]
mod tests;
