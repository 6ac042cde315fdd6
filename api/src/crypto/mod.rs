//! Client-secret hashing on its own bounded pool.

pub mod hash_pool;
pub mod password;
