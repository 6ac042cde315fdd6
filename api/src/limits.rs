//! Abuse limits (contract §10). Counts live in the database (`rate_limits`), so a limit holds
//! for the whole deployment however many replicas run. Each refusal is 429
//! `too_many_requests` with `Retry-After` and counted in `ciba_rate_limited_total`.
//!
//! Failed client authentications are counted per source address; once an address is over
//! its limit, this replica refuses its client authentications from memory until the window
//! ends, without a database read or a password hash. Another replica learns the same at the
//! address's next failure there, so the deployment lets at most one more attempt through per
//! replica.

use crate::error::{ApiError, ApiResult};
use crate::group_commit::{Batch, Reply};
use crate::limit_leases::{run_length, Next};
use crate::state::AppState;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_domain::audit::{action, Actor, Origin, Outcome};
use ciba_domain::error::{ErrorCode, OAuthError};
use ciba_domain::rate::Rate;
use ciba_domain::secret::sha256;
use ciba_store::{audit, rate_limits};
use ciba_store::{Backend, Store, StoreError};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    ClientRegistrations,
    ClientStarts,
    ClientUserExists,
    UserStarts,
    AuthFailures,
}

impl Limit {
    /// The `limit` label of the metric and the prefix of the stored bucket.
    pub fn name(self) -> &'static str {
        match self {
            Self::ClientRegistrations => "client_registrations",
            Self::ClientStarts => "client_starts",
            Self::ClientUserExists => "client_user_exists",
            Self::UserStarts => "user_starts",
            Self::AuthFailures => "auth_failures",
        }
    }

    fn rate(self, state: &AppState) -> Rate {
        let l = &state.config.limits;
        match self {
            Self::ClientRegistrations => l.client_registrations,
            Self::ClientStarts => l.client_starts,
            Self::ClientUserExists => l.client_user_exists,
            Self::UserStarts => l.user_starts,
            Self::AuthFailures => l.auth_failures,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::ClientRegistrations => "too many permission registrations by this client",
            Self::ClientStarts => "too many authentication requests started by this client",
            Self::ClientUserExists => "too many user-exists questions by this client",
            Self::UserStarts => "too many authentication requests for this user",
            Self::AuthFailures => "too many failed client authentications from this address",
        }
    }
}

/// The answer to a request over a limit, counted in `ciba_rate_limited_total`.
pub fn refused(
    state: &AppState,
    endpoint: &str,
    limit: &str,
    description: &'static str,
    retry_after: i64,
) -> ApiError {
    state
        .metrics
        .rate_limited
        .with_label_values(&[endpoint, limit])
        .inc();
    ApiError::new(OAuthError::new(ErrorCode::TooManyRequests, description))
        .with_retry_after(retry_after)
}

/// The metric label of refusals at client authentication, which serves every endpoint.
pub const CLIENT_AUTHENTICATION: &str = "client authentication";

/// The stored name of a window: the limit, the window's start and a hash of the subject (a
/// client id, a user's `sub` or an address: never stored in the clear).
pub(crate) fn bucket(limit: Limit, subject: &str, window_start: i64) -> String {
    let tagged = format!("{}\u{0}{subject}", limit.name());
    let digest = URL_SAFE_NO_PAD.encode(&sha256(tagged.as_bytes())[..16]);
    format!("{}:{window_start}:{digest}", limit.name())
}

/// Count one event of `limit` for `subject`; 429 when it goes over the limit.
pub async fn check(
    state: &AppState,
    limit: Limit,
    subject: &str,
    endpoint: &'static str,
    now: i64,
) -> ApiResult<()> {
    let rate = limit.rate(state);
    if rate.is_off() {
        return Ok(());
    }
    let count = hit(state, limit, rate, subject, now).await?;
    if rate.exceeded_by(count) {
        record_first_refusal(state, limit, rate, subject, count).await;
        let wait = rate.retry_after(now);
        return Err(refused(
            state,
            endpoint,
            limit.name(),
            limit.describe(),
            wait,
        ));
    }
    Ok(())
}

/// The audit trail records a limit's first refusal in each window (what it limited: a client
/// id, a user's `sub`, an address), not every refused request: a flood must not become a
/// flood of writes.
async fn record_first_refusal(
    state: &AppState,
    limit: Limit,
    rate: Rate,
    subject: &str,
    count: i64,
) {
    if count != i64::from(rate.limit) + 1 {
        return;
    }
    let (object, at_ms) = (
        format!("{}:{subject}", limit.name()),
        crate::state::now_ms(),
    );
    let write = state.db_write_one(move |c| {
        let origin = Origin::default();
        let by = audit::By {
            actor: Actor::System,
            origin: &origin,
            at_ms,
        };
        audit::record(
            c,
            &by,
            action::RATE_LIMITED,
            Some(&object),
            Outcome::Refused,
        )
    });
    if let Err(e) = write.await {
        tracing::warn!(error = ?e.error, "recording a rate-limit refusal failed");
    }
}

/// Count one event of `limit` for `subject`: its number in the window. Limits large enough
/// for runs ([`crate::limit_leases`]) take it from a run this replica reserved before, or
/// reserve the next run (one event at a time per window; the others wait for its run).
pub(crate) async fn hit(
    state: &AppState,
    limit: Limit,
    rate: Rate,
    subject: &str,
    now: i64,
) -> ApiResult<i64> {
    let key = bucket(limit, subject, rate.window_start(now));
    let ends_at = rate.window_end(now);
    if run_length(rate.limit, 0) == 1 {
        return count(state, key, 1, ends_at).await;
    }
    // Waiting for another event's run counts against the database deadline too: when the
    // database is gone, waiting events fail by then as one counting alone would, rather
    // than each in turn after its own wait.
    crate::state::bounded(async {
        loop {
            match state.leases.next(&key, ends_at, now) {
                Next::Number(n) => return Ok(n),
                Next::Wait(reserved) => reserved.await,
                Next::Reserve(claim) => {
                    let run = run_length(rate.limit, claim.seen);
                    let first = count(state, key, run, ends_at).await?;
                    claim.keep((first + 1, first + run - 1));
                    return Ok(first);
                }
            }
        }
    })
    .await
}

/// Add `run` events to the stored count of `key`; the first of their numbers.
async fn count(state: &AppState, key: String, run: i64, ends_at: i64) -> ApiResult<i64> {
    if state.store.backend() == Backend::Sqlite {
        // A job of SQLite's writer thread, committed with the writes of its batch: counted
        // through a thread of its own, the counts had been a commit of their own and a
        // second writer queueing on SQLite's one lock.
        let counts = [(key, run, ends_at)];
        let totals = state
            .db_write_one(move |c| rate_limits::hit_many(c, &counts))
            .await?;
        let total = totals.first().copied().ok_or_else(|| {
            tracing::error!("a rate-limit count came back without its total");
            ApiError::new(OAuthError::server_error())
        })?;
        return Ok(total - run + 1);
    }
    state.counters()?.submit((key, ends_at, run)).await
}

/// The most counts one batch writes.
const MAX_COUNTS: usize = 256;

/// Batches of counted events (group commit; PostgreSQL: SQLite counts in its writer
/// thread's batches instead): one statement adds every waiting count to its window, however
/// many flows start at once, instead of one transaction per count queueing on the lock of
/// the same counter row. Each count of `n` events still gets numbers of its own, as if
/// counted alone: the answer is the first of its `n`, the counts of one window in the order
/// they came. Counters are soft state (asynchronous commit): a crash may forget the last
/// few, which only relaxes a limit.
pub struct Counts;

/// Events to count: their bucket, when the bucket's window ends, and how many.
pub type Count = (String, i64, i64);

impl Batch for Counts {
    type Item = Count;
    type Out = i64;

    fn take(waiting: &mut VecDeque<(Count, Reply<i64>)>) -> Vec<(Count, Reply<i64>)> {
        crate::group_commit::oldest(waiting, MAX_COUNTS)
    }

    fn write(store: &Store, counts: Vec<Count>) -> Result<Vec<i64>, StoreError> {
        let mut windows: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for (bucket, expires_at, n) in &counts {
            windows.entry(bucket).or_insert((0, *expires_at)).0 += n;
        }
        let sums: Vec<(String, i64, i64)> = windows
            .iter()
            .map(|(bucket, (n, expires_at))| ((*bucket).to_owned(), *n, *expires_at))
            .collect();
        let totals = store.write_soft(|c| rate_limits::hit_many(c, &sums))?;
        // The first count of a window in this batch starts after what the window had before.
        let mut next: HashMap<&str, i64> = sums
            .iter()
            .zip(totals)
            .map(|((bucket, n, _), total)| (bucket.as_str(), total - n + 1))
            .collect();
        Ok(counts
            .iter()
            .map(|(bucket, _, n)| {
                next.get_mut(bucket.as_str()).map_or(0, |next| {
                    *next += n;
                    *next - n
                })
            })
            .collect())
    }
}

/// The key an address is counted under: IPv6 by its /64 (one subscriber's usual share).
fn address_subject(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

const MAX_BLOCKED: usize = 100_000;

/// Addresses over their failed-authentication limit, until their window ends.
#[derive(Default)]
pub struct BlockedAddresses {
    any: AtomicBool,
    until: RwLock<HashMap<String, i64>>,
}

impl BlockedAddresses {
    /// Seconds until `ip` may authenticate again, if it is blocked now.
    pub fn retry_after(&self, ip: IpAddr, now: i64) -> Option<i64> {
        if !self.any.load(Ordering::Relaxed) {
            return None;
        }
        let map = self.until.read().unwrap_or_else(|p| p.into_inner());
        map.get(&address_subject(ip))
            .filter(|until| **until > now)
            .map(|until| until - now)
    }

    fn block(&self, ip: IpAddr, until: i64, now: i64) {
        let mut map = self.until.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_BLOCKED {
            map.retain(|_, u| *u > now);
        }
        // Still full: the database count keeps refusing each failure of a new address.
        if map.len() < MAX_BLOCKED {
            map.insert(address_subject(ip), until);
            self.any.store(true, Ordering::Relaxed);
        }
    }
}

fn address_refused(state: &AppState, wait: i64) -> ApiError {
    let limit = Limit::AuthFailures;
    refused(
        state,
        CLIENT_AUTHENTICATION,
        limit.name(),
        limit.describe(),
        wait,
    )
}

/// Refuse at once a client authentication from an address over its limit.
pub fn refuse_blocked(state: &AppState, ip: Option<IpAddr>, now: i64) -> ApiResult<()> {
    let Some(ip) = ip else { return Ok(()) };
    match state.blocked.retry_after(ip, now) {
        Some(wait) => Err(address_refused(state, wait)),
        None => Ok(()),
    }
}

/// Count a failed client authentication from `ip`. Over the limit, the failure becomes
/// 429 and the address is refused until its window ends.
pub async fn auth_failed(
    state: &AppState,
    ip: Option<IpAddr>,
    failure: ApiError,
    now: i64,
) -> ApiError {
    let rate = Limit::AuthFailures.rate(state);
    let Some(ip) = ip.filter(|_| !rate.is_off()) else {
        return failure;
    };
    let subject = address_subject(ip);
    match hit(state, Limit::AuthFailures, rate, &subject, now).await {
        Ok(count) if rate.exceeded_by(count) => {
            record_first_refusal(state, Limit::AuthFailures, rate, &subject, count).await;
            state.blocked.block(ip, rate.window_end(now), now);
            address_refused(state, rate.retry_after(now))
        }
        Ok(_) => failure,
        Err(e) => {
            tracing::warn!(error = ?e.error, "counting a failed authentication failed");
            failure
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hide_the_subject_and_part_by_window() {
        let a = bucket(Limit::UserStarts, "user-sub-1", 60);
        assert!(a.starts_with("user_starts:60:"));
        assert!(!a.contains("user-sub-1"));
        assert_ne!(a, bucket(Limit::UserStarts, "user-sub-1", 120));
        assert_ne!(a, bucket(Limit::UserStarts, "user-sub-2", 60));
        assert_ne!(a, bucket(Limit::ClientStarts, "user-sub-1", 60));
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_subject(a), address_subject(b));
        assert_ne!(address_subject(a), address_subject(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_subject(mapped), "192.0.2.1");
    }

    fn counters(backend: ciba_store::Backend) -> (ciba_store::testing::TestDatabase, Store) {
        let db = ciba_store::testing::TestDatabase::create(backend);
        let url = ciba_store::DatabaseUrl::parse(&db.url).expect("url");
        let store = Store::open(&url, 4).expect("store");
        store.migrate().expect("migrate");
        (db, store)
    }

    /// One batch counts each event as if alone: events of one window get consecutive counts
    /// in their order, other windows their own, and the next batch goes on from there.
    fn a_batch_counts_each_event_on_its_own(backend: ciba_store::Backend) {
        let (_db, store) = counters(backend);
        let e = |b: &str| (b.to_owned(), 4_000_000_000, 1);
        let first = Counts::write(&store, vec![e("a"), e("b"), e("a"), e("a")]).expect("batch");
        assert_eq!(first, [1, 1, 2, 3]);
        let second = Counts::write(&store, vec![e("b"), e("c"), e("a")]).expect("batch");
        assert_eq!(second, [2, 1, 4]);
        // A run of n events gets the first of its n numbers; the next count starts after.
        let run = |b: &str, n| (b.to_owned(), 4_000_000_000, n);
        let third = Counts::write(&store, vec![run("a", 10), e("a"), run("c", 5)]).expect("batch");
        assert_eq!(third, [5, 15, 2]);
    }

    #[test]
    fn a_batch_counts_each_event_on_its_own_sqlite() {
        a_batch_counts_each_event_on_its_own(ciba_store::Backend::Sqlite);
    }

    #[test]
    fn a_batch_counts_each_event_on_its_own_postgres() {
        a_batch_counts_each_event_on_its_own(ciba_store::Backend::Postgres);
    }

    /// Concurrent events through the group commit and a second "replica" (its own batcher
    /// on the same database) each get a distinct count: the counts are exactly 1..=n, so a
    /// limit refuses exactly the events past it.
    async fn concurrent_events_get_distinct_counts(backend: ciba_store::Backend) {
        let (_db, store) = counters(backend);
        let sizes = || {
            prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("t", "t"))
                .expect("histogram")
        };
        let replicas = [
            crate::group_commit::GroupCommit::<Counts>::start("t1", store.clone(), sizes())
                .expect("thread"),
            crate::group_commit::GroupCommit::<Counts>::start("t2", store.clone(), sizes())
                .expect("thread"),
        ];
        let events = (0..300).map(|i| {
            let batcher = replicas[i % 2].clone();
            tokio::spawn(async move { batcher.submit(("w".into(), 4_000_000_000, 1)).await })
        });
        let mut counts: Vec<i64> = futures_util::future::join_all(events)
            .await
            .into_iter()
            .map(|r| r.expect("task").expect("counted"))
            .collect();
        counts.sort_unstable();
        assert_eq!(counts, (1..=300).collect::<Vec<i64>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_events_get_distinct_counts_sqlite() {
        concurrent_events_get_distinct_counts(ciba_store::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_events_get_distinct_counts_postgres() {
        concurrent_events_get_distinct_counts(ciba_store::Backend::Postgres).await;
    }

    #[test]
    fn blocks_until_the_window_ends() {
        let b = BlockedAddresses::default();
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(b.retry_after(ip, 100), None);
        b.block(ip, 120, 100);
        assert_eq!(b.retry_after(ip, 100), Some(20));
        assert_eq!(b.retry_after("192.0.2.10".parse().unwrap(), 100), None);
        assert_eq!(b.retry_after(ip, 120), None);
    }
}
