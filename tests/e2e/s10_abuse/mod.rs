//! Contract §10 and issue "survive hostile traffic": each test is an attacker's attempt and
//! the server's refusal, on SQLite and PostgreSQL where a database is involved.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod connections;
mod flood;
mod generated;
mod key_file;
mod limits;
mod oversized;
mod probing;
