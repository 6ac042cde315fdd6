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
    /// The key being replaced, during a rotation (`CIBA_KEY_ENCRYPTION_KEY_PREVIOUS`): it
    /// still opens what it sealed; it never seals.
    previous: Option<std::sync::Arc<Kek>>,
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
            previous: None,
        }
    }

    /// This key, also opening what `previous` sealed (a key-encryption-key rotation).
    pub fn with_previous(mut self, previous: Option<&[u8; 32]>) -> Self {
        self.previous = previous.map(|k| std::sync::Arc::new(Kek::new(k)));
        self
    }

    /// The id of the key being replaced, if any.
    pub fn previous_id(&self) -> Option<&str> {
        self.previous.as_deref().map(Kek::id)
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
        if let Some(previous) = self.previous.as_deref().filter(|p| p.id == stored_kek_id) {
            return previous.open(sealed, aad, stored_kek_id);
        }
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

    #[test]
    fn a_rotation_opens_the_old_and_seals_with_the_new() {
        let (old, new) = ([1u8; 32], [2u8; 32]);
        let sealed_old = Kek::new(&old).seal(b"secret", "kid");
        let both = Kek::new(&new).with_previous(Some(&old));
        let old_id = Kek::new(&old).id().to_owned();
        assert_eq!(both.open(&sealed_old, "kid", &old_id).unwrap(), b"secret");
        assert_eq!(both.previous_id(), Some(old_id.as_str()));
        let resealed = both.seal(b"secret", "kid");
        assert!(Kek::new(&old).open(&resealed, "kid", both.id()).is_err());
        assert_eq!(
            Kek::new(&new).open(&resealed, "kid", both.id()).unwrap(),
            b"secret"
        );
    }
}
