//! Request handlers. Each converts its own errors into responses so warp never backtracks.

pub mod authorize;
pub mod discovery;
pub mod health;
pub mod permissions;
pub mod token;
