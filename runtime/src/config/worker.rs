//! The worker's part of the configuration (the API reads it too: it validates notification
//! endpoints with the same policy).

use super::env::{ConfigError, Env};

/// What `ciba-worker` does and how often (read by the API too: it queues the jobs).
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Attempts before a job goes to the dead letters.
    pub job_max_attempts: i32,
    /// First retry delay in seconds; doubles per attempt up to `job_backoff_max`.
    pub job_backoff_base: i64,
    pub job_backoff_max: i64,
    /// How long a claimed job stays with its worker before others may take it.
    pub job_lease: i64,
    /// How often an idle worker looks for due jobs, in milliseconds.
    pub poll_ms: u64,
    /// Jobs one worker runs at once.
    pub concurrency: usize,
    pub expiry_interval: i64,
    pub retention: i64,
    /// Seconds audit events are kept (`CIBA_AUDIT_RETENTION`, never less than `retention`).
    pub audit_retention: i64,
    pub retention_interval: i64,
    pub retention_batch: i64,
    /// Seconds between automatic key rotations; 0 turns them off.
    pub key_rotation_period: i64,
    pub ping_connect_timeout_ms: u64,
    pub ping_timeout_ms: u64,
    /// Ping deliveries to one client that one worker runs at once.
    pub ping_per_client_concurrency: usize,
    /// Development only: plain `http` notification endpoints on loopback hosts, and
    /// deliveries to loopback addresses.
    pub allow_insecure_callbacks: bool,
    /// Networks pings may reach although they are private, link-local, etc.
    pub ping_allowed_networks: Vec<ipnet::IpNet>,
}

impl WorkerSettings {
    pub(super) fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let retention = env.int("CIBA_RETENTION", 30 * 86_400, 3_600, 3_650 * 86_400)?;
        let audit_retention = env.int(
            "CIBA_AUDIT_RETENTION",
            400 * 86_400,
            86_400,
            36_500 * 86_400,
        )?;
        // The trail outlives what it records: who approved what must be answerable after the
        // request itself is gone.
        if audit_retention < retention {
            return Err(super::env::err(
                "CIBA_AUDIT_RETENTION",
                "must not be shorter than CIBA_RETENTION",
            ));
        }
        Ok(Self {
            job_max_attempts: env.int("CIBA_JOB_MAX_ATTEMPTS", 10, 1, 100)? as i32,
            job_backoff_base: env.int("CIBA_JOB_BACKOFF_BASE", 2, 1, 3_600)?,
            job_backoff_max: env.int("CIBA_JOB_BACKOFF_MAX", 3_600, 1, 86_400)?,
            job_lease: env.int("CIBA_JOB_LEASE", 60, 5, 3_600)?,
            poll_ms: env.int("CIBA_WORKER_POLL_MS", 500, 10, 60_000)? as u64,
            concurrency: env.int("CIBA_WORKER_CONCURRENCY", 16, 1, 256)? as usize,
            expiry_interval: env.int("CIBA_EXPIRY_INTERVAL", 5, 1, 3_600)?,
            retention,
            audit_retention,
            retention_interval: env.int("CIBA_RETENTION_INTERVAL", 3_600, 1, 86_400)?,
            retention_batch: env.int("CIBA_RETENTION_BATCH", 1_000, 1, 100_000)?,
            key_rotation_period: env.int(
                "CIBA_KEY_ROTATION_PERIOD",
                90 * 86_400,
                0,
                3_650 * 86_400,
            )?,
            ping_connect_timeout_ms: env.int("CIBA_PING_CONNECT_TIMEOUT_MS", 2_000, 10, 60_000)?
                as u64,
            ping_timeout_ms: env.int("CIBA_PING_TIMEOUT_MS", 10_000, 100, 120_000)? as u64,
            ping_per_client_concurrency: env.int("CIBA_PING_PER_CLIENT_CONCURRENCY", 4, 1, 256)?
                as usize,
            allow_insecure_callbacks: env.flag("CIBA_ALLOW_INSECURE_CALLBACKS", false)?,
            ping_allowed_networks: env.networks("CIBA_PING_ALLOWED_NETWORKS")?,
        })
    }
}
