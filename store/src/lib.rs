//! Persistence through diesel on PostgreSQL (production) and SQLite (embedded default).
//! Knows nothing of HTTP. Every function takes the connection and `now` where time matters.

pub mod audit;
pub mod auth_requests;
pub mod checkpoint;
pub mod clients;
pub mod connect;
pub mod db;
pub mod error;
pub mod jobs;
pub mod jtis;
pub mod keys;
pub mod permissions;
pub mod polling;
mod prepared;
pub mod rate_limits;
pub mod sandbox;
pub mod schema;
#[cfg(feature = "testing")]
pub mod testing;
pub mod users;

pub use db::{
    is_lock_timeout, still_open, transaction, Backend, DatabaseUrl, DbConnection, Store,
    BATCH_LOCK_TIMEOUT,
};
pub use error::{StoreError, StoreResult};
