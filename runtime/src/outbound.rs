//! Outbound HTTP (external issuers' JWKS, and later ping notifications): one way to build a
//! client, with rustls on the ring provider, bounded timeouts and redirects never followed.

use std::time::Duration;

/// Install the process-wide TLS crypto provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn client(
    connect_timeout: Duration,
    total_timeout: Duration,
) -> Result<reqwest::Client, String> {
    builder(connect_timeout, total_timeout)
        .build()
        .map_err(|e| e.to_string())
}

/// The settings every outbound client shares, for a caller that adds its own (the worker's
/// ping client adds a resolver that refuses internal addresses).
pub fn builder(connect_timeout: Duration, total_timeout: Duration) -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(total_timeout)
        .redirect(reqwest::redirect::Policy::none())
}
