//! The one typed configuration, built once in `main` from the environment and passed down.
//! Every variable is documented in README.md with its default.

mod env;
mod server;
mod worker;

pub use env::{parse_flag, parse_networks, ConfigError};
pub use server::{LimitSettings, ServerSettings};
pub use worker::WorkerSettings;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ciba_store::DatabaseUrl;
use env::{err, Env};
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
    /// PostgreSQL: the threads that commit the flows' write steps together
    /// (`CIBA_DB_WRITERS`), each with a connection of its own.
    pub db_writers: usize,
    pub issuer: String,
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub worker_listen: SocketAddr,
    pub app_link_base_url: String,
    pub key_encryption_key: [u8; 32],
    /// The key-encryption key being replaced (`CIBA_KEY_ENCRYPTION_KEY_PREVIOUS`), during a
    /// rotation (`admin kek rotate`).
    pub key_encryption_key_previous: Option<[u8; 32]>,
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
    /// Active devices one user may have (`CIBA_MAX_DEVICES_PER_USER`).
    pub max_devices_per_user: i64,
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
    /// Sandbox mode (`CIBA_SANDBOX`, contract §12): test users with simulated apps and the
    /// `/sandbox` page. Never on a production database.
    pub sandbox: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database", &self.database_url)
            .field("issuer", &self.issuer)
            .field("listen", &self.listen)
            .field("key_encryption_key", &"<redacted>")
            .field("key_encryption_key_previous", &"<redacted>")
            .finish_non_exhaustive()
    }
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

/// `http://HOST:PORT` of the listening address: the host as written in `CIBA_LISTEN`, or the
/// loopback address when it is a wildcard (`0.0.0.0`, `[::]`).
fn default_issuer(listen: SocketAddr, host: &str) -> String {
    let port = listen.port();
    if listen.ip().is_unspecified() {
        return match listen {
            SocketAddr::V4(_) => format!("http://127.0.0.1:{port}"),
            SocketAddr::V6(_) => format!("http://[::1]:{port}"),
        };
    }
    format!("http://{host}:{port}")
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
        let (listen, listen_host) = match env.get("CIBA_LISTEN") {
            Some(raw) => env::listen_addr(raw).map_err(|m| err("CIBA_LISTEN", m))?,
            None => (SocketAddr::from(([127, 0, 0, 1], 8080)), "127.0.0.1".into()),
        };
        // Unset, the issuer is where this server listens, as it was written there.
        let issuer = match env.get("CIBA_ISSUER") {
            Some(raw) => base_url("CIBA_ISSUER", raw)?,
            None => default_issuer(listen, &listen_host),
        };
        let app_link_base_url = match env.get("CIBA_APP_LINK_BASE_URL") {
            Some(raw) => base_url("CIBA_APP_LINK_BASE_URL", raw)?,
            None => issuer.clone(),
        };
        let (key_encryption_key, key_file) = match env.get("CIBA_KEY_ENCRYPTION_KEY") {
            Some(raw) => (aes_key("CIBA_KEY_ENCRYPTION_KEY", raw)?, None),
            None => match database_url.sqlite_path() {
                Some(db) => {
                    // The key file goes beside the database: a missing folder is the
                    // database's problem, said as such.
                    let dir = std::path::Path::new(db)
                        .parent()
                        .filter(|d| !d.as_os_str().is_empty());
                    if let Some(dir) = dir.filter(|d| !d.is_dir()) {
                        return Err(err(
                            "DATABASE_URL",
                            format!(
                                "the folder {} of the SQLite database does not exist",
                                dir.display()
                            ),
                        ));
                    }
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
        let sandbox = env.flag("CIBA_SANDBOX", false)?;
        if sandbox
            && database_url.sqlite_path().is_none()
            && !env.flag("CIBA_SANDBOX_ALLOW_POSTGRES", false)?
        {
            return Err(err(
                "CIBA_SANDBOX",
                "sandbox mode makes test users whose approvals the server signs itself: it is \
                 refused on PostgreSQL (a production database) unless \
                 CIBA_SANDBOX_ALLOW_POSTGRES=true",
            ));
        }
        Ok(Self {
            sandbox,
            worker: WorkerSettings::from_env(&env)?,
            server: ServerSettings::from_env(&env)?,
            limits: LimitSettings::from_env(&env)?,
            db_max_connections: env.int("CIBA_DB_MAX_CONNECTIONS", 16, 1, 512)? as u32,
            db_writers: env.int("CIBA_DB_WRITERS", 2, 1, 64)? as usize,
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
            max_devices_per_user: env.int("CIBA_MAX_DEVICES_PER_USER", 5, 1, 100)?,
            client_cache_ttl: env.int("CIBA_CLIENT_CACHE_TTL", 5, 0, 300)?,
            key_publish_lead: env.int("CIBA_KEY_PUBLISH_LEAD", 3_600, 0, 30 * 86_400)?,
            key_refresh_interval: env.int("CIBA_KEY_REFRESH_INTERVAL", 60, 1, 3_600)?,
            external_jwks_ttl: env.int("CIBA_EXTERNAL_JWKS_TTL", 600, 10, 86_400)?,
            shutdown_timeout_secs: env.int("CIBA_SHUTDOWN_TIMEOUT", 25, 1, 600)? as u64,
            trusted_proxies: env.networks("CIBA_TRUSTED_PROXIES")?,
            database_url,
            issuer,
            listen,
            app_link_base_url,
            key_encryption_key,
            key_encryption_key_previous: env
                .get("CIBA_KEY_ENCRYPTION_KEY_PREVIOUS")
                .map(|raw| aes_key("CIBA_KEY_ENCRYPTION_KEY_PREVIOUS", raw))
                .transpose()?,
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

/// A 32-byte key in standard base64 (`openssl rand -base64 32`).
fn aes_key(var: &'static str, raw: &str) -> Result<[u8; 32], ConfigError> {
    let bytes = STANDARD
        .decode(raw.trim())
        .map_err(|_| err(var, "must be standard base64 (openssl rand -base64 32)"))?;
    bytes
        .try_into()
        .map_err(|_| err(var, "must decode to exactly 32 bytes"))
}

impl Config {
    /// The key-encryption key, with the one being replaced during a rotation.
    pub fn kek(&self) -> crate::crypto::kek::Kek {
        crate::crypto::kek::Kek::new(&self.key_encryption_key)
            .with_previous(self.key_encryption_key_previous.as_ref())
    }
}
