//! Use cases shared by the API and the worker: each runs inside the caller's transaction,
//! asks the domain what follows, and writes through the store — one conditional update of
//! the thing that changes plus the events it causes. Neither HTTP nor SQL lives here.

pub mod requests;
