#![allow(clippy::unwrap_used)]
//! libpq is built from source and linked in (pq-sys `bundled`): it must still speak TLS, so
//! `sslmode=require` in DATABASE_URL works. (Debian's PostgreSQL serves TLS by default.)

use ciba_store::testing::TestDatabase;
use ciba_store::{Backend, DatabaseUrl, Store};
use diesel::prelude::*;

#[derive(QueryableByName)]
struct Ssl {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ssl: bool,
}

#[test]
fn the_store_reaches_postgres_over_tls_with_sslmode_require() {
    let db = TestDatabase::create(Backend::Postgres);
    let url = format!("{}?sslmode=require", db.url);
    let store = Store::open(&DatabaseUrl::parse(&url).unwrap(), 1).unwrap();
    store.migrate().unwrap();
    let ssl = store
        .read(|c| {
            Ok(
                diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                    .get_result::<Ssl>(c)?,
            )
        })
        .unwrap();
    assert!(ssl.ssl, "the connection is encrypted");
}
