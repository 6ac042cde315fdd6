//! Cryptography: keys at rest, signing keys, JWTs and client-secret hashing.

pub mod hash_pool;
pub mod jwt;
pub mod kek;
pub mod kek_file;
pub mod keygen;
pub mod keyring;
pub mod password;
pub mod provider;
