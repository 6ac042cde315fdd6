//! Envelope encryption of private keys at rest: AES-256-GCM under the operator's key
//! (`CIBA_KEY_ENCRYPTION_KEY`), a fresh 96-bit nonce per seal, the key id as associated data.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ciba_domain::ids::random_bytes;
use ciba_domain::secret::sha256;

#[derive(Clone)]
pub struct Kek {
    cipher: Aes256Gcm,
    id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error("stored key is malformed")]
    Malformed,
    #[error("stored key was encrypted under another CIBA_KEY_ENCRYPTION_KEY (kek id {stored}, configured {configured})")]
    WrongKey { stored: String, configured: String },
    #[error("decryption failed: wrong CIBA_KEY_ENCRYPTION_KEY or tampered data")]
    Decrypt,
}

impl Kek {
    pub fn new(key: &[u8; 32]) -> Self {
        let mut tagged = b"ciba-kek-id:".to_vec();
        tagged.extend_from_slice(key);
        let id = URL_SAFE_NO_PAD.encode(&sha256(&tagged)[..9]);
        Self {
            cipher: Aes256Gcm::new(key.into()),
            id,
        }
    }

    /// A short public fingerprint of the key, stored beside what it encrypts.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn seal(&self, plaintext: &[u8], aad: &str) -> String {
        let nonce = random_bytes::<12>();
        // Encryption with a valid key and nonce size cannot fail.
        let ct = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        STANDARD.encode(out)
    }

    pub fn open(&self, sealed: &str, aad: &str, stored_kek_id: &str) -> Result<Vec<u8>, KekError> {
        if stored_kek_id != self.id {
            return Err(KekError::WrongKey {
                stored: stored_kek_id.to_owned(),
                configured: self.id.clone(),
            });
        }
        let raw = STANDARD.decode(sealed).map_err(|_| KekError::Malformed)?;
        if raw.len() < 12 + 16 {
            return Err(KekError::Malformed);
        }
        let (nonce, ct) = raw.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| KekError::Malformed)?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| KekError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_binds_aad() {
        let k = Kek::new(&[1u8; 32]);
        let sealed = k.seal(b"private", "kid-1");
        assert_eq!(k.open(&sealed, "kid-1", k.id()).unwrap(), b"private");
        assert!(matches!(
            k.open(&sealed, "kid-2", k.id()),
            Err(KekError::Decrypt)
        ));
        assert_ne!(sealed, k.seal(b"private", "kid-1"), "nonces must differ");
    }

    #[test]
    fn another_key_is_detected_by_id() {
        let a = Kek::new(&[1u8; 32]);
        let b = Kek::new(&[2u8; 32]);
        let sealed = a.seal(b"x", "k");
        assert!(matches!(
            b.open(&sealed, "k", a.id()),
            Err(KekError::WrongKey { .. })
        ));
        assert!(matches!(
            b.open(&sealed, "k", b.id()),
            Err(KekError::Decrypt)
        ));
    }
}
