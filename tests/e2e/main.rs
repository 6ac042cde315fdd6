//! The end-to-end suite: real `ciba-api` and `ciba-worker` processes on their own databases
//! (SQLite and PostgreSQL), spoken to over HTTP. One test binary; one module per section of
//! the contract (s01 discovery and the server's foundation, s02 client authentication, s03
//! the token endpoint, s04 permissions, s05 App2App, s07 the authenticating app, s09 the
//! worker, s10 abuse limits, s11 the FAPI-CIBA profile and a standard relying party, openid-client
//! from `tests/rp`, s12 the chart's dashboard and alert rules against the metrics) and one for
//! the loopholes closed across them. The harness is in
//! `support`. Run it with `cargo nextest run -p ciba-api --test e2e`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

mod loopholes;
mod s01_docs;
mod s01_foundation;
mod s01_start;
mod s02_client_auth;
mod s02_token_auth;
mod s03_ciba_token;
mod s03_redeem_path;
mod s04_permissions;
mod s05_app2app;
mod s05_grouped_writes;
mod s05_known_user;
mod s07_app_api;
mod s07_decision_jti;
mod s07_decision_trips;
mod s08_admin;
mod s09_worker_jobs;
mod s09_worker_ping;
mod s10_abuse;
mod s11_client_methods;
mod s11_fapi;
mod s11_mtls;
mod s11_openid_client;
mod s12_merchant;
mod s12_observability;
mod s12_sandbox;
mod s13_faults;
