#![allow(clippy::unwrap_used)]
//! SQLite is built with the query-planner stability guarantee (`.cargo/config.toml`): since
//! SQLite 3.53 a statement whose plan read a bound `LIMIT ?` expires each time that
//! parameter is bound again, and diesel binds `.first()`'s limit on every run of a cached
//! statement, so without it each such query was parsed and planned again on every use.

use ciba_store::testing::TestDatabase;
use ciba_store::{Backend, DatabaseUrl, DbConnection, Store};
use diesel::{QueryableByName, RunQueryDsl};

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[test]
fn the_store_s_sqlite_keeps_plans_independent_of_bound_values() {
    let db = TestDatabase::create(Backend::Sqlite);
    let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 2).unwrap();
    let n = store
        .read(|c| {
            let DbConnection::Sqlite(c) = c else {
                unreachable!("a SQLite store")
            };
            Ok(diesel::sql_query(
                "SELECT count(*) AS n FROM pragma_compile_options \
                 WHERE compile_options = 'ENABLE_QPSG'",
            )
            .get_result::<Count>(c)?
            .n)
        })
        .unwrap();
    assert_eq!(n, 1, "SQLite built without SQLITE_ENABLE_QPSG");
}
