//! Group commit for the polling hot path. Every well-paced poll of a pending request writes
//! its time to the database, and a too-early one its longer interval until it reaches its
//! maximum, after which it only reads (that is how every replica agrees on `slow_down`, and
//! why `slow_down` costs no more than `authorization_pending`).
//! Instead of one round trip and two thread hand-offs per poll, polls that arrive while a
//! batch is in the database wait for the next one, and each batch is one call, sent by one
//! dedicated thread. Under light load a batch is a single poll and goes at once; under heavy load
//! batches grow to [`MAX_BATCH`], and the thread goes from one to the next without sleeping.
//!
//! Semantics are those of one conditional UPDATE per poll: a batch holds each request at most
//! once (a second poll of the same request waits for the next batch, where it is too early),
//! and the database applies each poll's own conditions and time.

use crate::group_commit::{Batch, GroupCommit, Reply};
use ciba_store::polling::{self, Paced, Poll};
use ciba_store::{Store, StoreError};
use std::collections::{HashSet, VecDeque};

/// Polls up to this much earlier than the interval are tolerated (clock and network jitter),
/// so a well-behaved client is never told to slow down.
pub const POLL_GRACE_MS: i64 = 500;
/// The most polls one statement records.
pub const MAX_BATCH: usize = 128;

/// Batches of polls: each request at most once per batch, in the order of their ids.
pub struct Polls;

impl Batch for Polls {
    type Item = Poll;
    type Out = Paced;

    fn take(waiting: &mut VecDeque<(Poll, Reply<Paced>)>) -> Vec<(Poll, Reply<Paced>)> {
        take_batch(waiting)
    }

    fn write(store: &Store, polls: Vec<Poll>) -> Result<Vec<Paced>, StoreError> {
        store.write_soft(|conn| polling::record_polls(conn, &polls, POLL_GRACE_MS))
    }
}

/// Hands polls to the batching thread (`ciba-poll-batch`); cheap to clone. `submit` records a
/// poll of a pending request: well paced, or too early (slowed down); or "look closer".
pub type PollBatcher = GroupCommit<Polls>;

/// Up to [`MAX_BATCH`] waiting polls of distinct requests, oldest first; the rest keep their
/// order for the next batch. The batch is in the order of its ids: batches from every replica
/// lock their rows in the same order, so they can wait for each other but not deadlock.
fn take_batch(waiting: &mut VecDeque<(Poll, Reply<Paced>)>) -> Vec<(Poll, Reply<Paced>)> {
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
    use prometheus::Histogram;
    use std::time::Duration;
    use tokio::sync::oneshot;

    fn poll(id: &str) -> (Poll, Reply<Paced>) {
        let (tx, _rx) = oneshot::channel();
        let p = Poll {
            id: id.into(),
            client_id: "c".into(),
            now_ms: 0,
        };
        (p, tx)
    }

    fn ids(items: &[(Poll, Reply<Paced>)]) -> Vec<String> {
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
        let batcher = PollBatcher::start("t", store.clone(), sizes).expect("thread");
        let p = Poll {
            id: "unknown".into(),
            client_id: "c".into(),
            now_ms: 1,
        };
        assert_eq!(
            batcher.submit(p).await.expect("a batch"),
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
