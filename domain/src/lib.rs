//! Pure domain logic of the CIBA authorization server: no I/O, no HTTP, no SQL.
//! Time is always a parameter (`now`, UNIX seconds); only the edges read the clock.

pub mod assurance;
pub mod audit;
pub mod auth_request;
pub mod claims;
pub mod client;
pub mod device;
pub mod error;
pub mod ids;
pub mod json;
pub mod nnin;
pub mod permission;
pub mod rate;
pub mod sandbox;
pub mod scope;
pub mod secret;
pub mod status;
pub mod text;

/// UNIX time in whole seconds.
pub type UnixTime = i64;
