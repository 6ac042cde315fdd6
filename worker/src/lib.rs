//! The worker's work, callable in-process (tests run one pass of a loop without a process):
//! ping notifications from the job queue ([`queue`]), the expiry sweep, retention and key
//! rotation ([`periodic`]). The `ciba-worker` binary runs them on their schedules.

pub mod health;
pub mod metrics;
pub mod periodic;
pub mod ping;
pub mod queue;
pub mod slots;
pub mod target;

use ciba_runtime::config::{Config, WorkerSettings};
use ciba_runtime::crypto::kek::Kek;
use ciba_runtime::ping_target::TargetPolicy;
use ciba_store::Store;
use metrics::WorkerMetrics;
use std::sync::Arc;

/// What every task of the worker shares.
pub struct Ctx {
    pub store: Store,
    pub settings: WorkerSettings,
    pub metrics: WorkerMetrics,
    /// The ping client: refuses notification targets on this network (see `target`).
    pub http: reqwest::Client,
    pub ping_policy: Arc<TargetPolicy>,
    /// Ping deliveries in flight per client, under `CIBA_PING_PER_CLIENT_CONCURRENCY`.
    pub client_slots: Arc<slots::ClientSlots>,
    pub kek: Kek,
    pub key_publish_lead: i64,
    pub max_token_lifetime: i64,
    /// This process's name on the jobs it claims.
    pub worker_id: String,
    /// The time every job and pass runs at (tests move an in-process worker's).
    pub clock: ciba_runtime::clock::Clock,
}

impl Ctx {
    /// The worker's shared state for `config` on `store`; fails only when the ping client
    /// cannot be built.
    pub fn new(config: &Config, store: Store) -> Result<Self, String> {
        let s = &config.worker;
        let ping_policy = Arc::new(TargetPolicy::from_settings(s));
        let http = target::ping_client(s, ping_policy.clone())?;
        Ok(Self {
            store,
            settings: s.clone(),
            metrics: WorkerMetrics::new(),
            http,
            ping_policy,
            client_slots: slots::ClientSlots::new(s.ping_per_client_concurrency),
            kek: config.kek(),
            key_publish_lead: config.key_publish_lead,
            max_token_lifetime: config.max_token_lifetime(),
            worker_id: format!("{}-{}", std::process::id(), ciba_domain::ids::random_id()),
            clock: ciba_runtime::clock::Clock::default(),
        })
    }
}
