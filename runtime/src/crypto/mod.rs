//! Keys: the key-encryption key, signing-key generation and the keyring, JWT signatures and
//! the process-wide crypto provider. (Client-secret hashing lives with the API.)

pub mod jwk_set;
pub mod jwt;
pub mod kek;
pub mod kek_file;
pub mod key;
pub mod keygen;
pub mod keyring;
pub mod provider;
