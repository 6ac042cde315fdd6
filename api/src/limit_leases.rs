//! Counts reserved ahead for the abuse limits (issue 21). Counting each event in the
//! database had been one statement per event or batch (1.5 per flow on PostgreSQL, each an
//! asynchronous commit waking the WAL writer; three writer jobs per flow on SQLite). Now a
//! replica that counts an event of a window reserves a run of numbers at once, adding the
//! whole run to the stored count in one statement, and hands out the rest of the run to the
//! next events of that window from memory. One event per window reserves at a time; the
//! others wait for its run instead of each reserving its own (a burst at a window's start
//! would otherwise reserve a run per event and find most numbers past the limit).
//!
//! Every event still gets a number of its own, distinct across replicas (each run is a
//! disjoint range of the stored count), so no more than the limit's events are ever let
//! through. A run is a sixteenth of what the window had left by the last count this replica
//! saw, at most [`MAX_RUN`]: near the limit runs are single numbers, as before, and small
//! limits (under 32 a window) are counted one by one. What a run costs is the numbers its
//! replica does not use before the window ends (another replica's events may be refused
//! while they wait there; a replica that stops takes them with it): a limit may refuse a
//! little early when several replicas share it, never late.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

/// The longest run reserved at once.
pub const MAX_RUN: i64 = 64;

/// The most windows a replica keeps runs of; past it, an event reserves a run of its own and
/// its rest goes unused (a limit refuses earlier, never later).
const MAX_WINDOWS: usize = 10_000;

/// How many numbers to reserve for a window of `limit` events whose stored count was `seen`
/// when this replica last looked.
pub fn run_length(limit: u32, seen: i64) -> i64 {
    ((i64::from(limit) - seen) / 16).clamp(1, MAX_RUN)
}

/// One window's numbers reserved here and not handed out yet.
struct Reserved {
    /// Unused runs `(next, last)`, oldest first.
    runs: Vec<(i64, i64)>,
    /// The highest number reserved here: the least the stored count can be.
    seen: i64,
    /// When the window ends (its numbers are no use after).
    ends_at: i64,
    /// Set while an event of this replica reserves the next run: the others wait for it
    /// rather than each reserving a run of its own (a burst at a window's start would
    /// reserve a run per event and refuse most of them).
    reserving: Option<Arc<Notify>>,
}

/// What an event of a window does next.
pub enum Next<'a> {
    /// Its number, from a run reserved before.
    Number(i64),
    /// Reserve the next run (the window's count was `claim.seen` when last seen here).
    Reserve(Claim<'a>),
    /// Another event is reserving: wait for it, then ask again.
    Wait(OwnedNotified),
}

/// The right to reserve a window's next run; dropped unused (the reservation failed or its
/// request went away), it lets the next waiting event try.
pub struct Claim<'a> {
    leases: &'a Leases,
    bucket: String,
    pub seen: i64,
    run: Option<(i64, i64)>,
}

impl Claim<'_> {
    /// Keep numbers `first..=last` (`first > last`: none left) for the window's next events.
    pub fn keep(mut self, run: (i64, i64)) {
        self.run = Some(run);
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut windows = self.leases.lock();
        let Some(w) = windows.get_mut(&self.bucket) else {
            return;
        };
        if let Some((first, last)) = self.run {
            w.seen = w.seen.max(last);
            if first <= last {
                w.runs.push((first, last));
            }
        }
        if let Some(waiting) = w.reserving.take() {
            waiting.notify_waiters();
        }
    }
}

/// The runs a replica holds, by window (bucket).
#[derive(Default)]
pub struct Leases {
    windows: Mutex<HashMap<String, Reserved>>,
}

impl Leases {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Reserved>> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next step of an event of `bucket`, a window ending at `ends_at`.
    pub fn next(&self, bucket: &str, ends_at: i64, now: i64) -> Next<'_> {
        let mut windows = self.lock();
        let claim = |seen| Claim {
            leases: self,
            bucket: bucket.to_owned(),
            seen,
            run: None,
        };
        if !windows.contains_key(bucket) {
            if windows.len() >= MAX_WINDOWS {
                windows.retain(|_, w| w.ends_at > now);
            }
            if windows.len() >= MAX_WINDOWS {
                return Next::Reserve(claim(0));
            }
            windows.insert(
                bucket.to_owned(),
                Reserved {
                    runs: Vec::new(),
                    seen: 0,
                    ends_at,
                    reserving: None,
                },
            );
        }
        let Some(w) = windows.get_mut(bucket) else {
            return Next::Reserve(claim(0));
        };
        if let Some((next, last)) = w.runs.first_mut() {
            let n = *next;
            *next += 1;
            if *next > *last {
                w.runs.remove(0);
            }
            return Next::Number(n);
        }
        if let Some(waiting) = &w.reserving {
            return Next::Wait(waiting.clone().notified_owned());
        }
        w.reserving = Some(Arc::new(Notify::new()));
        Next::Reserve(claim(w.seen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_shrink_to_one_near_the_limit_and_for_small_limits() {
        assert_eq!(run_length(1_000_000, 0), MAX_RUN);
        assert_eq!(run_length(600, 0), 37);
        assert_eq!(run_length(600, 590), 1);
        assert_eq!(run_length(600, 700), 1);
        assert_eq!(run_length(30, 0), 1);
        assert_eq!(run_length(3, 0), 1);
    }

    fn number(n: Next<'_>) -> Option<i64> {
        match n {
            Next::Number(n) => Some(n),
            _ => None,
        }
    }

    #[test]
    fn one_event_reserves_while_the_others_wait_then_take_its_run() {
        let l = Leases::default();
        let Next::Reserve(claim) = l.next("w", 60, 0) else {
            panic!("the first event reserves")
        };
        assert_eq!(claim.seen, 0);
        assert!(
            matches!(l.next("w", 60, 0), Next::Wait(_)),
            "one reservation at a time"
        );
        claim.keep((2, 4));
        let taken: Vec<Option<i64>> = (0..3).map(|_| number(l.next("w", 60, 1))).collect();
        assert_eq!(taken, [Some(2), Some(3), Some(4)]);
        let Next::Reserve(claim) = l.next("w", 60, 1) else {
            panic!("the run is used up")
        };
        assert_eq!(claim.seen, 4, "the count seen is the run's last");
        drop(claim); // a failed reservation lets the next event try
        assert!(matches!(l.next("w", 60, 1), Next::Reserve(_)));
        assert!(matches!(l.next("other", 60, 1), Next::Reserve(_)));
    }

    use crate::limits::{hit, Limit};
    use ciba_domain::rate::Rate;
    use ciba_store::{testing::TestDatabase, Backend};

    const NOW: i64 = 1_900_000_000;

    /// Statements that counted so far: the limits' batches (PostgreSQL) or the writer's
    /// jobs (SQLite, where only counts write here).
    fn counting_statements(state: &crate::state::AppState) -> u64 {
        let m = &state.metrics;
        m.limit_batch_size.get_sample_count() + m.db_trips.write.get()
    }

    /// A window of 1,000 events: 100 events counted in two statements, numbered 1..=100 in
    /// order, and the stored count no further ahead than one run.
    async fn runs_count_many_events_per_statement(backend: Backend) {
        let db = TestDatabase::create(backend);
        let state = crate::state::test_state(&db, &[]);
        let rate = Rate {
            limit: 1000,
            window: 60,
        };
        let mut numbers = Vec::new();
        for _ in 0..100 {
            numbers.push(
                hit(&state, Limit::ClientStarts, rate, "c1", NOW)
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(numbers, (1..=100).collect::<Vec<i64>>());
        assert_eq!(counting_statements(&state), 2, "runs of 62 and 58");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_count_many_events_per_statement_sqlite() {
        runs_count_many_events_per_statement(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_count_many_events_per_statement_postgres() {
        runs_count_many_events_per_statement(Backend::Postgres).await;
    }

    /// An event waiting for another's run gives up by the database deadline (503), as one
    /// counting alone would: in an outage, waiting events do not each wait their turn.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wait_for_a_run_ends_at_the_database_deadline() {
        let db = TestDatabase::create(Backend::Sqlite);
        let state = crate::state::test_state(&db, &[]);
        let rate = Rate {
            limit: 1000,
            window: 60,
        };
        let key = crate::limits::bucket(Limit::ClientStarts, "c1", rate.window_start(NOW));
        // Another event's reservation that never ends (its database call hung).
        let Next::Reserve(_held) = state.leases.next(&key, rate.window_end(NOW), NOW) else {
            panic!("the first event reserves")
        };
        let e = hit(&state, Limit::ClientStarts, rate, "c1", NOW)
            .await
            .expect_err("waited past the deadline");
        assert_eq!(
            e.error.code,
            ciba_domain::error::ErrorCode::TemporarilyUnavailable
        );
    }

    /// Two replicas counting one window of 100 with 400 events at once: every event has a
    /// number of its own, no more than 100 get one within the limit, and hardly fewer (a
    /// burst does not reserve a run per event).
    async fn replicas_never_let_more_than_the_limit_through(backend: Backend) {
        let db = TestDatabase::create(backend);
        let replicas = [
            crate::state::test_state(&db, &[]),
            crate::state::test_state(&db, &[]),
        ];
        let rate = Rate {
            limit: 100,
            window: 60,
        };
        let events = (0..400).map(|i| {
            let state = replicas[i % 2].clone();
            tokio::spawn(async move { hit(&state, Limit::UserStarts, rate, "u1", NOW).await })
        });
        let mut numbers: Vec<i64> = futures_util::future::join_all(events)
            .await
            .into_iter()
            .map(|r| r.unwrap().unwrap())
            .collect();
        numbers.sort_unstable();
        let len = numbers.len();
        numbers.dedup();
        assert_eq!(numbers.len(), len, "a number was handed out twice");
        let within = numbers.iter().filter(|n| !rate.exceeded_by(**n)).count();
        assert!(within <= 100, "{within} events let through");
        // What runs may leave unused below the limit: each replica's last run at most.
        let lost = 2 * (run_length(100, 0) - 1) as usize;
        assert!(
            within >= 100 - lost,
            "{within} events let through: runs wasted"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_never_let_more_than_the_limit_through_sqlite() {
        replicas_never_let_more_than_the_limit_through(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_never_let_more_than_the_limit_through_postgres() {
        replicas_never_let_more_than_the_limit_through(Backend::Postgres).await;
    }
}
