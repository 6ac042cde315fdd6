//! Group commit: writes that arrive while a batch is in the database wait for the next one,
//! and each batch is one call, sent by one dedicated thread. Under light load a batch is a
//! single item and goes at once; under load batches grow, and the thread goes from one to
//! the next without sleeping, with no blocking-pool hop per item. The poll batcher
//! ([`crate::poll_batch`]) and the abuse-limit counters ([`crate::limits`]) are built on it.

use crate::error::{ApiError, ApiResult};
use ciba_domain::error::OAuthError;
use ciba_store::{Store, StoreError};
use prometheus::Histogram;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Items waiting for a batch; beyond this, callers wait to enqueue (backpressure).
const QUEUE: usize = 8192;

pub type Reply<O> = oneshot::Sender<Result<O, StoreError>>;

/// What one kind of batch is: how the next batch is taken from the waiting items, and how it
/// is written (one answer per item, in the batch's order).
pub trait Batch: 'static {
    type Item: Send + 'static;
    type Out: Send + 'static;
    /// The next batch, taken from `waiting` (never empty); the rest stay for later batches.
    fn take(
        waiting: &mut VecDeque<(Self::Item, Reply<Self::Out>)>,
    ) -> Vec<(Self::Item, Reply<Self::Out>)>;
    /// Write the batch; one answer per item, in order.
    fn write(store: &Store, items: Vec<Self::Item>) -> Result<Vec<Self::Out>, StoreError>;
}

/// The oldest `max` of `waiting`: the usual [`Batch::take`].
pub fn oldest<T>(waiting: &mut VecDeque<T>, max: usize) -> Vec<T> {
    let n = waiting.len().min(max);
    waiting.drain(..n).collect()
}

/// Hands items to the batching thread; cheap to clone.
pub struct GroupCommit<B: Batch> {
    tx: mpsc::Sender<(B::Item, Reply<B::Out>)>,
    ended: ThreadEnded,
}

impl<B: Batch> Clone for GroupCommit<B> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            ended: self.ended.clone(),
        }
    }
}

/// Tells when the batching thread has ended, and with it dropped its handle on the store's
/// connection pools (only then can the pools close their connections cleanly at exit).
#[derive(Clone, Default)]
pub struct ThreadEnded(Arc<AtomicBool>);

impl ThreadEnded {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Wait up to `limit` for the thread to end; true if it did.
    pub async fn wait(&self, limit: Duration) -> bool {
        let start = Instant::now();
        while !self.is_set() {
            if start.elapsed() >= limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

/// Marks the thread ended when dropped, on return or panic alike.
struct EndGuard(ThreadEnded);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0 .0.store(true, Ordering::Release);
    }
}

impl<B: Batch> GroupCommit<B> {
    /// Start the batching thread `name`. It ends when every handle is dropped.
    ///
    /// # Errors
    /// When the operating system refuses a new thread.
    pub fn start(name: &str, store: Store, batch_size: Histogram) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let ended = ThreadEnded::default();
        let guard = EndGuard(ended.clone());
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // Declared first, dropped last: after the store and the queue.
                let _guard = guard;
                run::<B>(rx, &store, &batch_size);
            })?;
        Ok(Self { tx, ended })
    }

    /// Set once the thread has ended (every handle dropped, the last batch answered).
    pub fn ended(&self) -> ThreadEnded {
        self.ended.clone()
    }

    /// Write `item` with the next batch and return its answer, or 503 after the database
    /// deadline.
    pub async fn submit(&self, item: B::Item) -> ApiResult<B::Out> {
        let (reply, answer) = oneshot::channel();
        if self.tx.send((item, reply)).await.is_err() {
            return Err(OAuthError::server_error().into());
        }
        crate::state::bounded(async {
            match answer.await {
                Ok(Ok(out)) => Ok(out),
                Ok(Err(e)) => Err(ApiError::from(e)),
                Err(_) => Err(OAuthError::server_error().into()),
            }
        })
        .await
    }
}

/// The batching loop, on its own thread: under load the next batch is already waiting when
/// one returns from the database, so no thread is woken between batches.
fn run<B: Batch>(
    mut rx: mpsc::Receiver<(B::Item, Reply<B::Out>)>,
    store: &Store,
    batch_size: &Histogram,
) {
    let mut waiting = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match rx.blocking_recv() {
                Some(item) => waiting.push_back(item),
                None => return,
            }
        }
        while waiting.len() < QUEUE {
            match rx.try_recv() {
                Ok(item) => waiting.push_back(item),
                Err(_) => break,
            }
        }
        let batch = B::take(&mut waiting);
        batch_size.observe(batch.len() as f64);
        let (items, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        // A panic must not end the thread (every later item would fail): it fails this batch.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| B::write(store, items)))
                .unwrap_or_else(|_| Err(StoreError::Other("a batch panicked".into())));
        match result {
            Ok(outs) if outs.len() == replies.len() => {
                for (reply, out) in replies.into_iter().zip(outs) {
                    let _ = reply.send(Ok(out));
                }
            }
            Ok(_) => {
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Other("a batch lost answers".into())));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
