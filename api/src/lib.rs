//! The `ciba-api` server: warp HTTP surface, client authentication, token issuance and the
//! admin CLI. Data flows one way: handler → service (transaction, domain, store) → response.

pub mod admin;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod crypto;
pub mod error;
pub mod group_commit;
pub mod handlers;
pub mod http;
pub mod limit_leases;
pub mod limits;
pub mod metrics;
pub mod pg_writer;
pub mod poll_batch;
pub mod sandbox;
pub mod server;
pub mod service;
pub mod sqlite_writer;
pub mod state;

#[cfg(test)]
mod properties;
