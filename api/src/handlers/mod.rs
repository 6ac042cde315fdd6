//! Request handlers. Each converts its own errors into responses so warp never backtracks.

pub mod app;
pub mod authorize;
pub mod discovery;
pub mod docs;
pub mod health;
pub mod links;
pub mod permissions;
pub mod token;
