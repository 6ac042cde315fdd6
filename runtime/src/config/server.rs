//! The API process's part of the configuration: its bounds against slow or hostile clients
//! and the abuse limits it enforces.

use super::env::{err, ConfigError, Env};
use ciba_domain::rate::Rate;

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
    /// TLS terminated by the server itself (contract §11), with client certificates.
    pub tls: Option<TlsFiles>,
    /// CAs whose client certificates `tls_client_auth` accepts, however they arrive.
    pub client_ca: Option<std::path::PathBuf>,
    /// The header (lower case) in which a trusted proxy passes the client's certificate
    /// (URL-encoded PEM, as ingress-nginx's `ssl-client-cert`).
    pub client_cert_header: Option<String>,
}

/// PEM files of the server's own TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
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

impl ServerSettings {
    pub(super) fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let tls = tls_files(env)?;
        let client_cert_header = env
            .get("CIBA_CLIENT_CERT_HEADER")
            .map(|h| h.trim().to_ascii_lowercase());
        // A certificate in a header proves nothing about its key; it is believed only where
        // a proxy terminated the client's TLS. On a connection TLS-terminated here, the
        // handshake is the only source: both at once would let a client without a
        // certificate name someone else's.
        if tls.is_some() && client_cert_header.is_some() {
            return Err(err(
                "CIBA_CLIENT_CERT_HEADER",
                "cannot be used with CIBA_TLS_CERT: either the API terminates TLS or a proxy does",
            ));
        }
        Ok(Self {
            max_connections: env.int("CIBA_MAX_CONNECTIONS", 4_096, 1, 1_000_000)? as usize,
            max_connections_per_address: env.int(
                "CIBA_MAX_CONNECTIONS_PER_ADDRESS",
                256,
                1,
                1_000_000,
            )? as usize,
            header_timeout_secs: env.int("CIBA_HEADER_TIMEOUT", 10, 1, 600)? as u64,
            body_timeout_secs: env.int("CIBA_BODY_TIMEOUT", 10, 1, 600)? as u64,
            max_header_bytes: env.int("CIBA_MAX_HEADER_BYTES", 16_384, 8_192, 1_048_576)? as usize,
            hash_threads: env.int("CIBA_HASH_THREADS", default_hash_threads(), 1, 64)? as usize,
            hash_queue: env.int("CIBA_HASH_QUEUE", 32, 0, 10_000)? as usize,
            auth_failure_delay_ms: env.int("CIBA_AUTH_FAILURE_DELAY_MS", 250, 0, 10_000)? as u64,
            tls,
            client_ca: env
                .get("CIBA_TLS_CLIENT_CA")
                .map(|p| std::path::PathBuf::from(p.trim())),
            client_cert_header,
        })
    }
}

fn tls_files(env: &Env<'_>) -> Result<Option<TlsFiles>, ConfigError> {
    let path = |var| env.get(var).map(|p| std::path::PathBuf::from(p.trim()));
    match (path("CIBA_TLS_CERT"), path("CIBA_TLS_KEY")) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(err("CIBA_TLS_KEY", "is needed with CIBA_TLS_CERT")),
        (None, Some(_)) => Err(err("CIBA_TLS_CERT", "is needed with CIBA_TLS_KEY")),
    }
}

impl LimitSettings {
    pub(super) fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            client_registrations: env
                .rate("CIBA_LIMIT_CLIENT_REGISTRATIONS", Rate::new(3_000, 60))?,
            client_starts: env.rate("CIBA_LIMIT_CLIENT_STARTS", Rate::new(3_000, 60))?,
            client_user_exists: env.rate("CIBA_LIMIT_CLIENT_USER_EXISTS", Rate::new(600, 60))?,
            user_starts: env.rate("CIBA_LIMIT_USER_STARTS", Rate::new(10, 60))?,
            auth_failures: env.rate("CIBA_LIMIT_AUTH_FAILURES", Rate::new(30, 60))?,
        })
    }
}

/// Half the CPUs (at least one) verify client secrets; the rest serve requests.
fn default_hash_threads() -> i64 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus / 2).max(1) as i64
}
