//! The worker's Prometheus metrics (served on `CIBA_WORKER_LISTEN` at `/metrics`). The
//! chart's dashboard and alert rules query them (see the API's `metrics` module).

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct WorkerMetrics {
    registry: Registry,
    pub processed: IntCounterVec,
    pub failed: IntCounterVec,
    pub deferred: IntCounter,
    pub queue_depth: IntGauge,
    pub oldest_job_age: IntGauge,
    /// Dead letters: jobs that used up their attempts.
    pub dead_jobs: IntGauge,
    pub notification_latency: Histogram,
    pub expired: IntCounter,
    pub deleted: IntCounterVec,
    pub rotations: IntCounter,
}

impl WorkerMetrics {
    /// # Panics
    /// Only on a programming error in the static metric definitions below.
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("ciba_worker".into()), None).expect("registry");
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("counter");
            registry.register(Box::new(c.clone())).expect("register");
            c
        };
        let processed = counter_vec("jobs_processed_total", "Jobs completed, by kind", &["kind"]);
        let failed = counter_vec(
            "jobs_failed_total",
            "Failed job attempts, by kind and outcome (retry or dead)",
            &["kind", "outcome"],
        );
        let deleted = counter_vec(
            "retention_deleted_total",
            "Rows deleted by retention",
            &["table"],
        );
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("gauge");
            registry.register(Box::new(g.clone())).expect("register");
            g
        };
        let queue_depth = gauge("queue_depth", "Jobs queued or running");
        let oldest_job_age = gauge(
            "oldest_job_age_seconds",
            "Age of the oldest queued or running job",
        );
        let dead_jobs = gauge(
            "jobs_dead",
            "Dead-lettered jobs (attempts used up), waiting for `admin jobs retry`",
        );
        // Every kind and outcome from the start, at 0: rates and alerts see the first one.
        for kind in [ciba_store::jobs::KIND_PING] {
            processed.with_label_values(&[kind]);
            for outcome in ["retry", "dead"] {
                failed.with_label_values(&[kind, outcome]);
            }
        }
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("counter");
            registry.register(Box::new(c.clone())).expect("register");
            c
        };
        let expired = counter(
            "requests_expired_total",
            "Pending requests the sweep expired",
        );
        let rotations = counter("key_rotations_total", "Scheduled key rotations performed");
        let deferred = counter(
            "jobs_deferred_total",
            "Ping jobs given back for later because their client was at its concurrency cap",
        );
        let notification_latency = Histogram::with_opts(
            HistogramOpts::new(
                "notification_latency_seconds",
                "From the outcome (job queued) to the ping delivered",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
            ]),
        )
        .expect("histogram");
        registry
            .register(Box::new(notification_latency.clone()))
            .expect("register");
        Self {
            registry,
            processed,
            failed,
            deferred,
            queue_depth,
            oldest_job_age,
            dead_jobs,
            notification_latency,
            expired,
            deleted,
            rotations,
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
