//! Prometheus metrics, owned by a struct (no global statics), labelled by route template.
//! The chart's dashboard and alert rules (`helm/ciba/dashboards`, `helm/ciba/alerts`) query
//! them; the e2e suite checks every metric they name is here after a flow.

use ciba_runtime::crypto::keyring::{KeyRing, REQUIRED_KEYS};
use ciba_store::Store;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    /// Polls recorded per statement by the polling hot path's group commit.
    pub poll_batch_size: Histogram,
    pub limit_batch_size: Histogram,
    pub write_batch_size: Histogram,
    pub pg_write_batch_size: Histogram,
    /// Connections closed at once because the process had `CIBA_MAX_CONNECTIONS` open.
    pub connections_refused: IntCounter,
    pub connections_open: IntGauge,
    /// Requests refused with 429 (contract §10), by route template and limit.
    pub rate_limited: IntCounterVec,
    /// Entries and bytes held by the in-memory caches, by cache.
    pub cache_entries: IntGaugeVec,
    pub cache_bytes: IntGaugeVec,
    /// Authentication requests started and decided, by flow (`ciba`, `app2app`) and event.
    pub flows: IntCounterVec,
    /// Answers to the CIBA grant at the token endpoint: `issued` or the error code.
    pub polls: IntCounterVec,
    /// The last readiness check's answer: 1 ready, 0 not.
    pub ready: IntGauge,
    /// The database pool's connections by state (`idle`, `in_use`), and its maximum.
    pub db_pool_connections: IntGaugeVec,
    pub db_pool_max: IntGauge,
    /// Hand-offs of a request's database work to a database thread, by kind: the trips a
    /// request makes, whatever each one runs.
    pub db_trips: DbTrips,
    /// Seconds since the key signing now for each (purpose, alg) was activated.
    pub signing_key_age: IntGaugeVec,
}

/// `ciba_db_trips_total` by kind (`read`, `write`, `soft`).
pub struct DbTrips {
    pub read: IntCounter,
    pub write: IntCounter,
    pub soft: IntCounter,
}

impl Metrics {
    /// # Panics
    /// Only on a programming error in the static metric definitions below.
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("ciba".into()), None).expect("registry");
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route template, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("counter");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route template",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route", "method"],
        )
        .expect("histogram");
        let poll_batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "poll_batch_size",
                "Polls recorded by one database statement (group commit of the polling hot path)",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
        )
        .expect("histogram");
        let limit_batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "limit_batch_size",
                "Events counted by one database statement (group commit of the abuse limits)",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )
        .expect("histogram");
        let write_batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "sqlite_write_batch_size",
                "Write steps committed by one SQLite transaction (group commit of the writer thread)",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
        )
        .expect("histogram");
        let pg_write_batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "pg_write_batch_size",
                "Write steps committed by one PostgreSQL transaction (group commit of the writer threads)",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0]),
        )
        .expect("histogram");
        let connections_refused = IntCounter::new(
            "connections_refused_total",
            "Connections closed on arrival because CIBA_MAX_CONNECTIONS were open",
        )
        .expect("counter");
        let connections_open =
            IntGauge::new("connections_open", "Open HTTP connections").expect("gauge");
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "rate_limited_total",
                "Requests refused with 429 by route template and limit",
            ),
            &["endpoint", "limit"],
        )
        .expect("counter");
        let cache_entries = IntGaugeVec::new(
            Opts::new("cache_entries", "Entries held by an in-memory cache"),
            &["cache"],
        )
        .expect("gauge");
        let cache_bytes = IntGaugeVec::new(
            Opts::new(
                "cache_bytes",
                "Approximate bytes of keys and values held by an in-memory cache",
            ),
            &["cache"],
        )
        .expect("gauge");
        let flows = IntCounterVec::new(
            Opts::new(
                "flows_total",
                "Authentication requests started, approved and declined, by flow and event",
            ),
            &["flow", "event"],
        )
        .expect("counter");
        let polls = IntCounterVec::new(
            Opts::new(
                "polls_total",
                "CIBA grant requests at the token endpoint by outcome (issued or the error code)",
            ),
            &["outcome"],
        )
        .expect("counter");
        let ready = IntGauge::new(
            "ready",
            "The last readiness check's answer (1 ready: database up and migrated)",
        )
        .expect("gauge");
        let db_pool_connections = IntGaugeVec::new(
            Opts::new(
                "db_pool_connections",
                "Database pool connections by state (idle, in_use)",
            ),
            &["state"],
        )
        .expect("gauge");
        let db_pool_max =
            IntGauge::new("db_pool_max_connections", "Database pool size limit").expect("gauge");
        let db_trips = IntCounterVec::new(
            Opts::new(
                "db_trips_total",
                "Requests' trips to the database (one hand-off to a database thread each), by kind",
            ),
            &["kind"],
        )
        .expect("counter");
        let signing_key_age = IntGaugeVec::new(
            Opts::new(
                "signing_key_age_seconds",
                "Seconds since the key signing now was activated, by purpose and algorithm",
            ),
            &["purpose", "alg"],
        )
        .expect("gauge");
        // The kinds' series resolved once: counted on every database call.
        let db_trips_by_kind = DbTrips {
            read: db_trips.with_label_values(&["read"]),
            write: db_trips.with_label_values(&["write"]),
            soft: db_trips.with_label_values(&["soft"]),
        };
        let collectors: [Box<dyn Collector>; 18] = [
            Box::new(poll_batch_size.clone()),
            Box::new(write_batch_size.clone()),
            Box::new(pg_write_batch_size.clone()),
            Box::new(limit_batch_size.clone()),
            Box::new(requests.clone()),
            Box::new(duration.clone()),
            Box::new(connections_refused.clone()),
            Box::new(connections_open.clone()),
            Box::new(rate_limited.clone()),
            Box::new(cache_entries.clone()),
            Box::new(cache_bytes.clone()),
            Box::new(flows.clone()),
            Box::new(polls.clone()),
            Box::new(ready.clone()),
            Box::new(db_pool_connections.clone()),
            Box::new(db_pool_max.clone()),
            Box::new(db_trips.clone()),
            Box::new(signing_key_age.clone()),
        ];
        for c in collectors {
            registry.register(c).expect("register");
        }
        Self {
            registry,
            requests,
            duration,
            poll_batch_size,
            limit_batch_size,
            write_batch_size,
            pg_write_batch_size,
            connections_refused,
            connections_open,
            rate_limited,
            cache_entries,
            cache_bytes,
            flows,
            polls,
            ready,
            db_pool_connections,
            db_pool_max,
            db_trips: db_trips_by_kind,
            signing_key_age,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.duration
            .with_label_values(&[route, method])
            .observe(seconds);
    }

    /// An authentication request of `flow` started, approved or declined.
    pub fn flow(&self, flow: &str, event: &str) {
        self.flows.with_label_values(&[flow, event]).inc();
    }

    /// Publish the database pool's state (at each scrape).
    pub fn observe_pool(&self, store: &Store) {
        let pool = store.pool_status();
        let idle = i64::from(pool.idle);
        self.db_pool_connections
            .with_label_values(&["idle"])
            .set(idle);
        self.db_pool_connections
            .with_label_values(&["in_use"])
            .set(i64::from(pool.connections) - idle);
        self.db_pool_max.set(i64::from(pool.max));
    }

    /// Publish the age of the keys signing at `now` (at each scrape); a pair without a
    /// signing key is left out.
    pub fn observe_signing_keys(&self, keys: &KeyRing, now: i64) {
        self.signing_key_age.reset();
        for (purpose, alg) in REQUIRED_KEYS {
            if let Some(key) = keys.signer(purpose, alg, now) {
                self.signing_key_age
                    .with_label_values(&[purpose.as_str(), alg.as_str()])
                    .set((now - key.activates_at).max(0));
            }
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
