//! HTTP surface: filters, the route table and rejection handling.

pub mod caller;
pub mod form;
pub mod guard;
pub mod recover;
pub mod reply;
pub mod routes;
pub mod serve;
pub mod tls;
