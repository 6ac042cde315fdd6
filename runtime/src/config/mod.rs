//! The one typed configuration, built once in `main` from the environment and passed down.
//! Every variable is documented in README.md with its default.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ciba_domain::rate::Rate;
use ciba_store::DatabaseUrl;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A trusted external issuer of access tokens (e.g. the merchant-facing OIDC provider).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalIssuer {
    pub issuer: String,
    pub jwks_uri: String,
    /// Audience the token must carry; defaults to our issuer.
    #[serde(default)]
    pub audience: Option<String>,
}

#[derive(Clone)]
pub struct Config {
    pub database_url: DatabaseUrl,
    pub db_max_connections: u32,
    pub issuer: String,
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub worker_listen: SocketAddr,
    pub app_link_base_url: String,
    pub key_encryption_key: [u8; 32],
    /// SQLite without `CIBA_KEY_ENCRYPTION_KEY`: the file the key was read from, and whether
    /// this start created it.
    pub key_file: Option<(std::path::PathBuf, bool)>,
    pub access_token_ttl: i64,
    pub auth_request_ttl: i64,
    pub auth_request_max_ttl: i64,
    pub poll_interval: i64,
    pub apple_app_ids: Vec<String>,
    pub android_package: Option<String>,
    pub android_cert_fingerprints: Vec<String>,
    pub id_token_ttl: i64,
    pub enrollment_code_ttl: i64,
    pub client_cache_ttl: i64,
    pub key_publish_lead: i64,
    pub key_refresh_interval: i64,
    pub external_issuers: Vec<ExternalIssuer>,
    pub external_jwks_ttl: i64,
    pub shutdown_timeout_secs: u64,
    pub log_format: LogFormat,
    pub worker: WorkerSettings,
    pub server: ServerSettings,
    pub limits: LimitSettings,
    /// Direct peers whose `X-Forwarded-For` is believed (an ingress, a load balancer).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// What bounds one API process against slow or hostile clients (contract §10).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub header_timeout_secs: u64,
    pub body_timeout_secs: u64,
    pub max_header_bytes: usize,
    /// Threads that verify client secrets (argon2), apart from database work.
    pub hash_threads: usize,
    /// Verifications that may wait for a hashing thread; more are refused with 429.
    pub hash_queue: usize,
    /// How long a refused client authentication waits before it is answered.
    pub auth_failure_delay_ms: u64,
}

/// The abuse limits of contract §10, shared by every replica through the database.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// Permission registrations per client.
    pub client_registrations: Rate,
    /// `bc-authorize` and app-authorize starts per client.
    pub client_starts: Rate,
    /// `user-exists` questions per client.
    pub client_user_exists: Rate,
    /// Authentication requests started for one user, across all clients (push-bombing).
    pub user_starts: Rate,
    /// Failed client authentications per source address.
    pub auth_failures: Rate,
}

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

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database", &self.database_url)
            .field("issuer", &self.issuer)
            .field("listen", &self.listen)
            .field("key_encryption_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration error in {var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

fn err(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        message: message.into(),
    }
}

struct Env<'a>(&'a HashMap<String, String>);

impl Env<'_> {
    fn get(&self, var: &str) -> Option<&str> {
        self.0
            .get(var)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    fn int(&self, var: &'static str, default: i64, min: i64, max: i64) -> Result<i64, ConfigError> {
        let Some(raw) = self.get(var) else {
            return Ok(default);
        };
        let v: i64 = raw
            .trim()
            .parse()
            .map_err(|_| err(var, format!("expected a whole number, got {raw:?}")))?;
        if !(min..=max).contains(&v) {
            return Err(err(
                var,
                format!("must be between {min} and {max}, got {v}"),
            ));
        }
        Ok(v)
    }

    /// A comma-separated list (empty when unset).
    fn list(&self, var: &str) -> Vec<String> {
        self.get(var)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A rate `N/SECONDS` (or `0`: off).
    fn rate(&self, var: &'static str, default: Rate) -> Result<Rate, ConfigError> {
        self.get(var)
            .map_or(Ok(default), |raw| Rate::parse(raw).map_err(|m| err(var, m)))
    }

    /// A comma-separated list of CIDR blocks or single addresses (empty when unset).
    fn networks(&self, var: &'static str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        parse_networks(self.get(var).unwrap_or("")).map_err(|m| err(var, m))
    }

    /// `true` or `false` (`default` when unset).
    fn flag(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        self.get(var)
            .map_or(Ok(default), |raw| parse_flag(raw).map_err(|m| err(var, m)))
    }

    fn addr(&self, var: &'static str) -> Result<Option<SocketAddr>, ConfigError> {
        self.get(var)
            .map(|raw| {
                raw.trim()
                    .parse()
                    .map_err(|_| err(var, format!("expected HOST:PORT, got {raw:?}")))
            })
            .transpose()
    }
}

/// `true`/`1`/`yes` or `false`/`0`/`no`, in any case.
pub fn parse_flag(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("expected true or false, got {raw:?}")),
    }
}

/// Comma-separated CIDR blocks (a bare address is one host), e.g. `10.1.0.0/16, 192.0.2.7`.
pub fn parse_networks(raw: &str) -> Result<Vec<ipnet::IpNet>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| format!("expected comma-separated CIDRs like 10.1.0.0/16, got {s:?}"))
        })
        .collect()
}

/// An absolute http(s) URL without query or fragment; trailing slashes removed.
fn base_url(var: &'static str, raw: &str) -> Result<String, ConfigError> {
    let url = url::Url::parse(raw.trim()).map_err(|e| err(var, format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(err(var, "must be an absolute http or https URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(err(var, "must not have a query or fragment"));
    }
    Ok(raw.trim().trim_end_matches('/').to_owned())
}

/// Half the CPUs (at least one) verify client secrets; the rest serve requests.
fn default_hash_threads() -> i64 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus / 2).max(1) as i64
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_map(&std::env::vars().collect())
    }

    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = Env(vars);
        let database_url =
            DatabaseUrl::parse(env.get("DATABASE_URL").unwrap_or("sqlite://ciba.db"))
                .map_err(|m| err("DATABASE_URL", m))?;
        let issuer = base_url(
            "CIBA_ISSUER",
            env.get("CIBA_ISSUER").unwrap_or("http://127.0.0.1:8080"),
        )?;
        let app_link_base_url = match env.get("CIBA_APP_LINK_BASE_URL") {
            Some(raw) => base_url("CIBA_APP_LINK_BASE_URL", raw)?,
            None => issuer.clone(),
        };
        let listen = env
            .addr("CIBA_LISTEN")?
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let (key_encryption_key, key_file) = match env.get("CIBA_KEY_ENCRYPTION_KEY") {
            Some(raw) => {
                let bytes = STANDARD.decode(raw.trim()).map_err(|_| {
                    err(
                        "CIBA_KEY_ENCRYPTION_KEY",
                        "must be standard base64 (openssl rand -base64 32)",
                    )
                })?;
                let key: [u8; 32] = bytes.try_into().map_err(|_| {
                    err("CIBA_KEY_ENCRYPTION_KEY", "must decode to exactly 32 bytes")
                })?;
                (key, None)
            }
            None => match database_url.sqlite_path() {
                Some(db) => {
                    let path = crate::crypto::kek_file::path_for(db);
                    let (key, created) = crate::crypto::kek_file::load_or_create(&path)
                        .map_err(|m| err("CIBA_KEY_ENCRYPTION_KEY", m))?;
                    (key, Some((path, created)))
                }
                None => {
                    return Err(err(
                        "CIBA_KEY_ENCRYPTION_KEY",
                        "is required with PostgreSQL (openssl rand -base64 32)",
                    ))
                }
            },
        };
        let external_issuers: Vec<ExternalIssuer> = match env.get("CIBA_EXTERNAL_ISSUERS") {
            Some(raw) => serde_json::from_str(raw).map_err(|e| {
                err(
                    "CIBA_EXTERNAL_ISSUERS",
                    format!("expected a JSON array of {{issuer, jwks_uri, audience?}}: {e}"),
                )
            })?,
            None => Vec::new(),
        };
        for ext in &external_issuers {
            base_url("CIBA_EXTERNAL_ISSUERS", &ext.issuer)?;
            url::Url::parse(&ext.jwks_uri)
                .map_err(|e| err("CIBA_EXTERNAL_ISSUERS", format!("bad jwks_uri: {e}")))?;
            if ext.issuer == issuer {
                return Err(err(
                    "CIBA_EXTERNAL_ISSUERS",
                    "an external issuer cannot be this server's issuer",
                ));
            }
        }
        let log_format = match env.get("CIBA_LOG_FORMAT").unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(err(
                    "CIBA_LOG_FORMAT",
                    format!("expected text or json, got {other:?}"),
                ))
            }
        };
        Ok(Self {
            db_max_connections: env.int("CIBA_DB_MAX_CONNECTIONS", 16, 1, 512)? as u32,
            metrics_listen: env.addr("CIBA_METRICS_LISTEN")?,
            worker_listen: env
                .addr("CIBA_WORKER_LISTEN")?
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9091))),
            access_token_ttl: env.int("CIBA_ACCESS_TOKEN_TTL", 600, 60, 86_400)?,
            auth_request_ttl: env.int("CIBA_AUTH_REQUEST_TTL", 300, 10, 3_600)?,
            auth_request_max_ttl: env.int("CIBA_AUTH_REQUEST_MAX_TTL", 600, 10, 3_600)?,
            poll_interval: env.int("CIBA_POLL_INTERVAL", 2, 1, 60)?,
            apple_app_ids: env.list("CIBA_APPLE_APP_IDS"),
            android_package: env.get("CIBA_ANDROID_PACKAGE").map(str::to_owned),
            android_cert_fingerprints: env.list("CIBA_ANDROID_CERT_FINGERPRINTS"),
            id_token_ttl: env.int("CIBA_ID_TOKEN_TTL", 600, 60, 86_400)?,
            enrollment_code_ttl: env.int("CIBA_ENROLLMENT_CODE_TTL", 900, 60, 604_800)?,
            client_cache_ttl: env.int("CIBA_CLIENT_CACHE_TTL", 5, 0, 300)?,
            key_publish_lead: env.int("CIBA_KEY_PUBLISH_LEAD", 3_600, 0, 30 * 86_400)?,
            key_refresh_interval: env.int("CIBA_KEY_REFRESH_INTERVAL", 60, 1, 3_600)?,
            external_jwks_ttl: env.int("CIBA_EXTERNAL_JWKS_TTL", 600, 10, 86_400)?,
            shutdown_timeout_secs: env.int("CIBA_SHUTDOWN_TIMEOUT", 25, 1, 600)? as u64,
            worker: WorkerSettings {
                job_max_attempts: env.int("CIBA_JOB_MAX_ATTEMPTS", 10, 1, 100)? as i32,
                job_backoff_base: env.int("CIBA_JOB_BACKOFF_BASE", 2, 1, 3_600)?,
                job_backoff_max: env.int("CIBA_JOB_BACKOFF_MAX", 3_600, 1, 86_400)?,
                job_lease: env.int("CIBA_JOB_LEASE", 60, 5, 3_600)?,
                poll_ms: env.int("CIBA_WORKER_POLL_MS", 500, 10, 60_000)? as u64,
                concurrency: env.int("CIBA_WORKER_CONCURRENCY", 16, 1, 256)? as usize,
                expiry_interval: env.int("CIBA_EXPIRY_INTERVAL", 5, 1, 3_600)?,
                retention: env.int("CIBA_RETENTION", 30 * 86_400, 3_600, 3_650 * 86_400)?,
                retention_interval: env.int("CIBA_RETENTION_INTERVAL", 3_600, 1, 86_400)?,
                retention_batch: env.int("CIBA_RETENTION_BATCH", 1_000, 1, 100_000)?,
                key_rotation_period: env.int(
                    "CIBA_KEY_ROTATION_PERIOD",
                    90 * 86_400,
                    0,
                    3_650 * 86_400,
                )?,
                ping_connect_timeout_ms: env.int(
                    "CIBA_PING_CONNECT_TIMEOUT_MS",
                    2_000,
                    10,
                    60_000,
                )? as u64,
                ping_timeout_ms: env.int("CIBA_PING_TIMEOUT_MS", 10_000, 100, 120_000)? as u64,
                ping_per_client_concurrency: env.int(
                    "CIBA_PING_PER_CLIENT_CONCURRENCY",
                    4,
                    1,
                    256,
                )? as usize,
                allow_insecure_callbacks: env.flag("CIBA_ALLOW_INSECURE_CALLBACKS", false)?,
                ping_allowed_networks: env.networks("CIBA_PING_ALLOWED_NETWORKS")?,
            },
            server: ServerSettings {
                max_connections: env.int("CIBA_MAX_CONNECTIONS", 4_096, 1, 1_000_000)? as usize,
                max_connections_per_address: env.int(
                    "CIBA_MAX_CONNECTIONS_PER_ADDRESS",
                    256,
                    1,
                    1_000_000,
                )? as usize,
                header_timeout_secs: env.int("CIBA_HEADER_TIMEOUT", 10, 1, 600)? as u64,
                body_timeout_secs: env.int("CIBA_BODY_TIMEOUT", 10, 1, 600)? as u64,
                max_header_bytes: env.int("CIBA_MAX_HEADER_BYTES", 16_384, 8_192, 1_048_576)?
                    as usize,
                hash_threads: env.int("CIBA_HASH_THREADS", default_hash_threads(), 1, 64)? as usize,
                hash_queue: env.int("CIBA_HASH_QUEUE", 32, 0, 10_000)? as usize,
                auth_failure_delay_ms: env.int("CIBA_AUTH_FAILURE_DELAY_MS", 250, 0, 10_000)?
                    as u64,
            },
            limits: LimitSettings {
                client_registrations: env
                    .rate("CIBA_LIMIT_CLIENT_REGISTRATIONS", Rate::new(3_000, 60))?,
                client_starts: env.rate("CIBA_LIMIT_CLIENT_STARTS", Rate::new(3_000, 60))?,
                client_user_exists: env
                    .rate("CIBA_LIMIT_CLIENT_USER_EXISTS", Rate::new(600, 60))?,
                user_starts: env.rate("CIBA_LIMIT_USER_STARTS", Rate::new(10, 60))?,
                auth_failures: env.rate("CIBA_LIMIT_AUTH_FAILURES", Rate::new(30, 60))?,
            },
            trusted_proxies: env.networks("CIBA_TRUSTED_PROXIES")?,
            database_url,
            issuer,
            listen,
            app_link_base_url,
            key_encryption_key,
            key_file,
            external_issuers,
            log_format,
        })
    }

    /// The longest any token we sign stays valid: keys must outlive it in the JWKS.
    pub fn max_token_lifetime(&self) -> i64 {
        // Permission tokens live at most an hour (contract: exp <= iat + 3600) plus skew.
        self.access_token_ttl
            .max(self.id_token_ttl)
            .max(3_600 + 300)
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}

#[cfg(test)]
mod tests;
