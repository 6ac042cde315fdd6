//! A test PKI for mutual TLS (RFC 8705): a CA, the server's certificate for 127.0.0.1, client
//! certificates signed by the CA or by themselves, and HTTP clients that present them.
#![allow(dead_code, clippy::unwrap_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;

pub struct Pki {
    dir: PathBuf,
    ca: Certificate,
    ca_key: KeyPair,
}

/// A client certificate and its key.
pub struct ClientIdentity {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    key: KeyPair,
}

fn params(cn: &str, org: &str) -> CertificateParams {
    let mut params = CertificateParams::new(vec![]).unwrap();
    let mut dn = DistinguishedName::new();
    // Most general first in the certificate: its RFC 4514 form reads `CN=…,O=…`.
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params
}

fn client_params(cn: &str, org: &str) -> CertificateParams {
    let mut p = params(cn, org);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p
}

impl Pki {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("ciba-pki-{}", super::app::jti()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = params("Test CA", "Test PKI");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let pki = Self { dir, ca, ca_key };
        let server_key = KeyPair::generate().unwrap();
        let mut server = params("127.0.0.1", "CIBA test server");
        server.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &pki.ca, &pki.ca_key).unwrap();
        std::fs::write(pki.path("server.pem"), server_cert.pem()).unwrap();
        std::fs::write(pki.path("server-key.pem"), server_key.serialize_pem()).unwrap();
        std::fs::write(pki.path("ca.pem"), pki.ca.pem()).unwrap();
        pki
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    /// The server's environment for TLS with client certificates from this CA.
    pub fn server_env(&self) -> Vec<(String, String)> {
        vec![
            ("CIBA_TLS_CERT".into(), self.path("server.pem")),
            ("CIBA_TLS_KEY".into(), self.path("server-key.pem")),
            ("CIBA_TLS_CLIENT_CA".into(), self.path("ca.pem")),
        ]
    }

    /// A client certificate for `CN=cn,O=org` signed by the CA.
    pub fn client(&self, cn: &str, org: &str) -> ClientIdentity {
        let key = KeyPair::generate().unwrap();
        let cert = client_params(cn, org)
            .signed_by(&key, &self.ca, &self.ca_key)
            .unwrap();
        ClientIdentity::new(cert, key)
    }

    /// An HTTPS client that trusts this CA and presents `identity`, if any.
    pub fn http(&self, identity: Option<&ClientIdentity>) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca.pem().as_bytes()).unwrap();
        let mut b =
            ciba_runtime::outbound::builder(Duration::from_secs(5), Duration::from_secs(30))
                .tls_certs_only([ca])
                .pool_idle_timeout(Duration::from_secs(4));
        if let Some(id) = identity {
            let pem = format!("{}{}", id.cert_pem, id.key_pem);
            b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        b.build().unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl ClientIdentity {
    fn new(cert: Certificate, key: KeyPair) -> Self {
        Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            key,
        }
    }

    /// A certificate for `CN=cn,O=org` signed by its own key.
    pub fn self_signed(cn: &str, org: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let cert = client_params(cn, org).self_signed(&key).unwrap();
        Self::new(cert, key)
    }

    /// A JWT signed (ES256) with the certificate's key.
    pub fn sign_es256(&self, claims: &Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_ec_der(&self.key.serialize_der());
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            claims,
            &key,
        )
        .unwrap()
    }

    /// `x5t#S256` of the certificate.
    pub fn thumbprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(&self.der))
    }

    /// The certificate's public key as a JWK set (for `self_signed_tls_client_auth`).
    pub fn jwks(&self) -> Value {
        let point = self.key.public_key_raw();
        json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "tls",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])}]})
    }

    /// The certificate as ingress-nginx passes it (`ssl-client-cert`: URL-encoded PEM).
    pub fn header_value(&self) -> String {
        percent_encoding::utf8_percent_encode(&self.cert_pem, percent_encoding::NON_ALPHANUMERIC)
            .to_string()
    }
}
