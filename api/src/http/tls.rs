//! Client certificates (RFC 8705, contract §11): TLS terminated by the server, which asks
//! every client for a certificate (none is required) and proves it holds the key, or a
//! certificate a trusted proxy passes in a header. Which client a certificate authenticates
//! is decided later, by the client's registered method ([`crate::auth::certificate`]); here a
//! certificate is only read, fingerprinted and checked against the configured CAs.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

/// The longest client certificate chain (leaf and intermediates) checked against the CAs.
pub const MAX_CHAIN: usize = 4;

/// A client certificate that came with a request.
#[derive(Debug)]
pub struct ClientCert {
    /// The leaf certificate (DER).
    pub der: Vec<u8>,
    /// `x5t#S256`: unpadded base64url SHA-256 of the DER (RFC 8705 §3.1).
    pub thumbprint: String,
    /// Whether the chain leads to one of the configured client CAs (`tls_client_auth`).
    pub chain_trusted: bool,
}

/// A request's client certificate, as a request extension.
#[derive(Debug, Clone)]
pub struct PeerCert(pub Arc<ClientCert>);

/// Reads certificates and judges their chains against the configured CAs.
pub struct CertPolicy {
    roots: Option<Arc<dyn ClientCertVerifier>>,
    hints: Vec<DistinguishedName>,
}

impl CertPolicy {
    /// No CA: no chain is trusted (`self_signed_tls_client_auth` still works).
    pub fn none() -> Self {
        Self {
            roots: None,
            hints: Vec::new(),
        }
    }

    /// `client_ca`: the PEM file of the CAs `tls_client_auth` trusts (none: no certificate
    /// chain is trusted, `self_signed_tls_client_auth` still works).
    pub fn new(client_ca: Option<&Path>) -> Result<Self, String> {
        let Some(path) = client_ca else {
            return Ok(Self::none());
        };
        let mut store = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("CIBA_TLS_CLIENT_CA {}: {e}", path.display()))?
        {
            let cert = cert.map_err(|e| format!("CIBA_TLS_CLIENT_CA {}: {e}", path.display()))?;
            store
                .add(cert)
                .map_err(|e| format!("CIBA_TLS_CLIENT_CA {}: {e}", path.display()))?;
        }
        if store.is_empty() {
            return Err(format!(
                "CIBA_TLS_CLIENT_CA {}: no certificate",
                path.display()
            ));
        }
        let hints = store.subjects();
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(store),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| format!("CIBA_TLS_CLIENT_CA {}: {e}", path.display()))?;
        Ok(Self {
            roots: Some(verifier),
            hints,
        })
    }

    /// The certificate `chain` (leaf first) presented by a client. A chain longer than
    /// [`MAX_CHAIN`] is not judged (a client's intermediates are the verifier's work).
    pub fn inspect(&self, chain: &[CertificateDer<'_>]) -> Option<ClientCert> {
        let (leaf, intermediates) = chain.split_first()?;
        let chain_trusted = chain.len() <= MAX_CHAIN
            && self.roots.as_ref().is_some_and(|v| {
                v.verify_client_cert(leaf, intermediates, UnixTime::now())
                    .is_ok()
            });
        Some(ClientCert {
            der: leaf.to_vec(),
            thumbprint: thumbprint(leaf),
            chain_trusted,
        })
    }

    /// A certificate passed by a trusted proxy: URL-encoded PEM (ingress-nginx's
    /// `ssl-client-cert`), leaf first, or plain PEM. Anything unreadable counts as none.
    pub fn from_header(&self, value: &str) -> Option<ClientCert> {
        let pem = percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .ok()?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .ok()?;
        self.inspect(&chain)
    }
}

/// `x5t#S256` of a DER certificate.
pub fn thumbprint(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

/// The server's TLS: its certificate and key from PEM files; HTTP/1.1; every client asked
/// for a certificate, none required.
pub fn server_config(
    cert: &Path,
    key: &Path,
    policy: &CertPolicy,
) -> Result<rustls::ServerConfig, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("CIBA_TLS_CERT {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("CIBA_TLS_CERT {}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("CIBA_TLS_KEY {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyClientCert {
        hints: policy.hints.clone(),
        algs: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("CIBA_TLS_CERT/CIBA_TLS_KEY: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Takes any client certificate whose key signs the handshake (proof of possession); the
/// chain is judged per client method afterwards (self-signed certificates are legitimate for
/// `self_signed_tls_client_auth`).
#[derive(Debug)]
struct AnyClientCert {
    hints: Vec<DistinguishedName>,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
