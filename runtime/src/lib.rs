//! What both binaries (and the bench) run on: configuration, the clock, keys at rest and the
//! signing keyring, logging, shutdown, outbound HTTP and the crypto provider. Nothing here
//! knows HTTP routes or the admin CLI; `ciba-worker` links this crate, not `ciba-api`.

pub mod clock;
pub mod config;
pub mod crypto;
pub mod database;
pub mod logging;
pub mod outbound;
pub mod ping_target;
pub mod shutdown;
