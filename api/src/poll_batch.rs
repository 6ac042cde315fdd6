//! Group commit for the polling hot path. Every poll of a pending request writes its time
//! to the database, and a too-early one its longer interval too (that is how every replica
//! agrees on `slow_down`, and why `slow_down` costs no more than `authorization_pending`).
//! Instead of one round trip and two thread hand-offs per poll, polls that arrive while a
//! batch is in the database wait for the next one, and each batch is one call, sent by one
//! dedicated thread. Under light load a batch is a single poll and goes at once; under heavy load
//! batches grow to [`MAX_BATCH`], and the thread goes from one to the next without sleeping.
//!
//! Semantics are those of one conditional UPDATE per poll: a batch holds each request at most
//! once (a second poll of the same request waits for the next batch, where it is too early),
//! and the database applies each poll's own conditions and time.

use crate::error::{ApiError, ApiResult};
use ciba_domain::error::OAuthError;
use ciba_store::polling::{self, Paced, Poll};
use ciba_store::{Store, StoreError};
use prometheus::Histogram;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Polls up to this much earlier than the interval are tolerated (clock and network jitter),
/// so a well-behaved client is never told to slow down.
pub const POLL_GRACE_MS: i64 = 500;
/// The most polls one statement records.
pub const MAX_BATCH: usize = 128;
/// Polls waiting for a batch; beyond this, callers wait to enqueue (backpressure).
const QUEUE: usize = 8192;

type Reply = oneshot::Sender<Result<Paced, StoreError>>;

/// Hands polls to the batching thread; cheap to clone.
#[derive(Clone)]
pub struct PollBatcher {
    tx: mpsc::Sender<(Poll, Reply)>,
    ended: ThreadEnded,
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

impl PollBatcher {
    /// Start the batching thread. It ends when every handle is dropped.
    ///
    /// # Errors
    /// When the operating system refuses a new thread.
    pub fn start(store: Store, batch_size: Histogram) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let ended = ThreadEnded::default();
        let guard = EndGuard(ended.clone());
        std::thread::Builder::new()
            .name("ciba-poll-batch".into())
            .spawn(move || {
                // Declared first, dropped last: after the store and the queue.
                let _guard = guard;
                run(rx, store, batch_size);
            })?;
        Ok(Self { tx, ended })
    }

    /// Set once the thread has ended (every handle dropped, the last batch answered).
    pub fn ended(&self) -> ThreadEnded {
        self.ended.clone()
    }

    /// Record a poll of a pending request: well paced, or too early (slowed down); or
    /// "look closer".
    pub async fn record(&self, poll: Poll) -> ApiResult<Paced> {
        let (reply, answer) = oneshot::channel();
        if self.tx.send((poll, reply)).await.is_err() {
            return Err(OAuthError::server_error().into());
        }
        crate::state::bounded(async {
            match answer.await {
                Ok(Ok(touched)) => Ok(touched),
                Ok(Err(e)) => Err(ApiError::from(e)),
                Err(_) => Err(OAuthError::server_error().into()),
            }
        })
        .await
    }
}

/// The batching loop, on its own thread: under load the next batch is already waiting when
/// one returns from the database, so no thread is woken between batches.
fn run(mut rx: mpsc::Receiver<(Poll, Reply)>, store: Store, batch_size: Histogram) {
    let mut waiting: VecDeque<(Poll, Reply)> = VecDeque::new();
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
        let batch = take_batch(&mut waiting);
        batch_size.observe(batch.len() as f64);
        let polls: Vec<Poll> = batch.iter().map(|(p, _)| p.clone()).collect();
        // A panic must not end the thread (every later poll would fail): it fails this batch.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            store.write_soft(|conn| polling::record_polls(conn, &polls, POLL_GRACE_MS))
        }))
        .unwrap_or_else(|_| Err(StoreError::Other("poll batch panicked".into())));
        match result {
            Ok(touched) => {
                for ((_, reply), t) in batch.into_iter().zip(touched) {
                    let _ = reply.send(Ok(t));
                }
            }
            Err(e) => {
                for (_, reply) in batch {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Up to [`MAX_BATCH`] waiting polls of distinct requests, oldest first; the rest keep their
/// order for the next batch. The batch is in the order of its ids: batches from every replica
/// lock their rows in the same order, so they can wait for each other but not deadlock.
fn take_batch(waiting: &mut VecDeque<(Poll, Reply)>) -> Vec<(Poll, Reply)> {
    let mut batch = Vec::with_capacity(waiting.len().min(MAX_BATCH));
    let mut ids = HashSet::with_capacity(batch.capacity());
    let mut later = VecDeque::new();
    while let Some(item) = waiting.pop_front() {
        if batch.len() < MAX_BATCH && ids.insert(item.0.id.clone()) {
            batch.push(item);
        } else {
            later.push_back(item);
        }
    }
    *waiting = later;
    batch.sort_unstable_by(|a, b| a.0.id.cmp(&b.0.id));
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(id: &str) -> (Poll, Reply) {
        let (tx, _rx) = oneshot::channel();
        let p = Poll {
            id: id.into(),
            client_id: "c".into(),
            now_ms: 0,
        };
        (p, tx)
    }

    fn ids(items: &[(Poll, Reply)]) -> Vec<String> {
        items.iter().map(|(p, _)| p.id.clone()).collect()
    }

    #[test]
    fn a_batch_holds_each_request_once_and_keeps_the_order_of_the_rest() {
        let mut waiting: VecDeque<_> = ["a", "b", "a", "c", "b", "a"].map(poll).into();
        let first = take_batch(&mut waiting);
        assert_eq!(ids(&first), ["a", "b", "c"]);
        let rest: Vec<_> = waiting.drain(..).collect();
        assert_eq!(ids(&rest), ["a", "b", "a"]);
        let mut waiting: VecDeque<_> = rest.into();
        assert_eq!(ids(&take_batch(&mut waiting)), ["a", "b"]);
        assert_eq!(ids(&take_batch(&mut waiting)), ["a"]);
        assert!(waiting.is_empty());
    }

    #[tokio::test]
    async fn the_thread_ends_and_lets_go_of_the_store_when_the_last_handle_goes() {
        let db = ciba_store::testing::TestDatabase::create(ciba_store::Backend::Sqlite);
        let url = ciba_store::DatabaseUrl::parse(&db.url).expect("url");
        let store = Store::open(&url, 2).expect("store");
        store.migrate().expect("migrate");
        let sizes =
            Histogram::with_opts(prometheus::HistogramOpts::new("t", "t")).expect("histogram");
        let batcher = PollBatcher::start(store.clone(), sizes).expect("thread");
        let p = Poll {
            id: "unknown".into(),
            client_id: "c".into(),
            now_ms: 1,
        };
        assert_eq!(
            batcher.record(p).await.expect("a batch"),
            Paced::LookCloser,
            "nothing to touch"
        );
        let ended = batcher.ended();
        let copy = batcher.clone();
        drop(batcher);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!ended.is_set(), "a handle is left: the thread must go on");
        drop(copy);
        assert!(
            ended.wait(Duration::from_secs(5)).await,
            "the thread did not end"
        );
    }

    #[test]
    fn a_batch_is_in_the_order_of_its_ids() {
        let mut waiting: VecDeque<_> = ["c", "a", "d", "b", "a"].map(poll).into();
        assert_eq!(ids(&take_batch(&mut waiting)), ["a", "b", "c", "d"]);
        assert_eq!(ids(&waiting.drain(..).collect::<Vec<_>>()), ["a"]);
    }

    #[test]
    fn a_batch_is_bounded() {
        let names: Vec<String> = (0..MAX_BATCH + 5).map(|i| i.to_string()).collect();
        let mut waiting: VecDeque<_> = names.iter().map(|n| poll(n)).collect();
        assert_eq!(take_batch(&mut waiting).len(), MAX_BATCH);
        assert_eq!(waiting.len(), 5);
        assert_eq!(waiting[0].0.id, MAX_BATCH.to_string());
    }
}
