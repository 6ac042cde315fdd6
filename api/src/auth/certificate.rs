//! Mutual-TLS client authentication (RFC 8705 §2): `tls_client_auth` (a certificate from a
//! trusted CA whose subject is the registered DN) and `self_signed_tls_client_auth` (a
//! certificate whose public key is one of the client's registered JWKs). The TLS layer has
//! already checked that the caller holds the certificate's key.

use super::{invalid_client, load_client, Authenticated, Method};
use crate::error::ApiResult;
use crate::http::tls::ClientCert;
use crate::state::AppState;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_domain::client::{AuthMethod, Client};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use std::str::FromStr;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::Decode;
use x509_cert::name::Name;
use x509_cert::Certificate;

const ID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const SECP256R1: &str = "1.2.840.10045.3.1.7";
const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";

/// `s` without the whitespace around it that is not part of a value: leading whitespace,
/// and trailing whitespace unless a backslash escapes it (`a\ ` ends in a space).
fn trim_unescaped(s: &str) -> &str {
    let s = s.trim_start();
    let mut end = s.len();
    while let Some(c) = s[..end].chars().next_back().filter(|c| c.is_whitespace()) {
        let before = &s[..end - c.len_utf8()];
        let backslashes = before.bytes().rev().take_while(|b| *b == b'\\').count();
        if backslashes % 2 == 1 {
            break;
        }
        end -= c.len_utf8();
    }
    &s[..end]
}

/// A subject DN in one canonical RFC 4514 form (`None`: not a DN). Spaces around the
/// separators, as people and RFC 2253 write them (`CN=a, O=b`), are not part of it.
pub fn canonical_dn(dn: &str) -> Option<String> {
    let mut parts = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, ch) in dn.char_indices() {
        match ch {
            '\\' if !escaped => escaped = true,
            ',' | '+' if !escaped => {
                parts.push((trim_unescaped(&dn[start..i]), ch));
                start = i + 1;
            }
            _ => escaped = false,
        }
    }
    parts.push((trim_unescaped(&dn[start..]), ' '));
    let mut tight = String::with_capacity(dn.len());
    for (part, sep) in parts {
        let (attr, value) = part.split_once('=')?;
        tight.push_str(attr.trim());
        tight.push('=');
        tight.push_str(value.trim_start());
        if sep != ' ' {
            tight.push(sep);
        }
    }
    Name::from_str(&tight).ok().map(|n| n.to_string())
}

/// The canonical form of a DN to register: refused when reading it back would give another
/// DN (escapes the parser does not keep), so what is stored means one subject only.
pub fn registrable_dn(dn: &str) -> Option<String> {
    let canonical = canonical_dn(dn)?;
    (canonical_dn(&canonical).as_deref() == Some(canonical.as_str())).then_some(canonical)
}

/// The subject DN of a DER certificate, in the form of [`canonical_dn`].
pub fn subject_dn(der: &[u8]) -> Option<String> {
    let cert = Certificate::from_der(der).ok()?;
    Some(cert.tbs_certificate.subject.to_string())
}

/// Is the certificate's public key one of the keys of `jwks`?
pub fn key_in_jwks(der: &[u8], jwks: &str) -> bool {
    let Ok(cert) = Certificate::from_der(der) else {
        return false;
    };
    let Ok(set) = serde_json::from_str::<JwkSet>(jwks) else {
        return false;
    };
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let Some(raw) = spki.subject_public_key.as_bytes() else {
        return false;
    };
    let oid = spki.algorithm.oid.to_string();
    set.keys
        .iter()
        .any(|jwk| match (&jwk.algorithm, oid.as_str()) {
            // The named curve P-256 on both sides: the same x and y on another curve are
            // another key.
            (AlgorithmParameters::EllipticCurve(ec), ID_EC_PUBLIC_KEY)
                if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256
                    && spki
                        .algorithm
                        .parameters
                        .as_ref()
                        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
                        .is_some_and(|c| c.to_string() == SECP256R1) =>
            {
                let point = [
                    &[0x04u8][..],
                    &URL_SAFE_NO_PAD.decode(&ec.x).unwrap_or_default(),
                    &URL_SAFE_NO_PAD.decode(&ec.y).unwrap_or_default(),
                ]
                .concat();
                point.len() == 65 && point == raw
            }
            (AlgorithmParameters::RSA(rsa), RSA_ENCRYPTION) => {
                use rsa::pkcs1::DecodeRsaPublicKey;
                use rsa::traits::PublicKeyParts;
                let Ok(key) = rsa::RsaPublicKey::from_pkcs1_der(raw) else {
                    return false;
                };
                let same = |jwk_b64: &str, value: Vec<u8>| {
                    let bytes = URL_SAFE_NO_PAD.decode(jwk_b64).unwrap_or_default();
                    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
                    bytes[start..] == value[..]
                };
                same(&rsa.n, key.n().to_bytes_be()) && same(&rsa.e, key.e().to_bytes_be())
            }
            _ => false,
        })
}

/// Does `cert` authenticate `client` by the client's registered TLS method?
pub fn proves(client: &Client, cert: &ClientCert) -> bool {
    match client.auth_method {
        // The registered DN is stored in canonical form (see `registrable_dn`).
        AuthMethod::TlsClientAuth => {
            cert.chain_trusted
                && client
                    .tls_subject_dn
                    .as_deref()
                    .is_some_and(|dn| subject_dn(&cert.der).as_deref() == Some(dn))
        }
        AuthMethod::SelfSignedTlsClientAuth => client
            .jwks
            .as_deref()
            .is_some_and(|jwks| key_in_jwks(&cert.der, jwks)),
        _ => false,
    }
}

/// Authenticate client `id` by the certificate of the connection.
pub async fn tls_client(state: &AppState, id: &str, cert: &ClientCert) -> ApiResult<Authenticated> {
    const FAILED: &str = "client authentication failed";
    let client = load_client(state, id)
        .await?
        .filter(|c| proves(c, cert))
        .ok_or_else(|| invalid_client(FAILED, false, false))?;
    Ok(Authenticated {
        scopes: client.scopes.clone(),
        client,
        method: Method::Certificate,
        via_bearer: false,
        bound_to: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    fn cert(cn: &str, org: &str) -> (Vec<u8>, KeyPair) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec![]).unwrap();
        let mut dn = DistinguishedName::new();
        // Most general first in the certificate: its RFC 4514 form reads `CN=…,O=…`.
        dn.push(DnType::OrganizationName, org);
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        (params.self_signed(&key).unwrap().der().to_vec(), key)
    }

    #[test]
    fn the_subject_matches_its_registered_dn_in_any_spacing() {
        let (der, _) = cert("bank-client", "Bank ASA");
        let subject = subject_dn(&der).unwrap();
        assert_eq!(
            canonical_dn("CN=bank-client, O=Bank ASA"),
            Some(subject.clone())
        );
        assert_ne!(canonical_dn("CN=other,O=Bank ASA"), Some(subject));
        assert_eq!(canonical_dn("not a dn"), None);
        assert_eq!(
            canonical_dn("CN=a\\, b,O=c"),
            canonical_dn("CN=a\\, b, O=c")
        );
    }

    #[test]
    fn an_escaped_space_stays_part_of_its_value() {
        // CN "a " and O "b": trimming the escaped space would make `CN=a\,O=b`, one RDN.
        let dn = registrable_dn("CN=a\\20,O=b").unwrap();
        assert_eq!(canonical_dn(&dn).as_deref(), Some(dn.as_str()));
        assert_ne!(Some(dn), canonical_dn("CN=a\\,O=b"));
        assert_eq!(trim_unescaped("  a\\ "), "a\\ ");
        assert_eq!(trim_unescaped(" a\\\\ "), "a\\\\");
    }

    #[test]
    fn a_certificate_key_is_found_in_a_jwk_set() {
        let (der, key) = cert("self", "Signed");
        let raw = key.public_key_raw();
        let jwk = |point: &[u8]| {
            serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])}]})
            .to_string()
        };
        assert!(key_in_jwks(&der, &jwk(raw)));
        let (_, other) = cert("other", "Signed");
        assert!(!key_in_jwks(&der, &jwk(other.public_key_raw())));
        assert!(!key_in_jwks(b"not a certificate", &jwk(raw)));
    }
}
