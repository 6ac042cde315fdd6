#![allow(clippy::unwrap_used)]
//! Both migration folders must define the same tables and columns, and both must apply.

use ciba_store::testing::TestDatabase;
use ciba_store::{Backend, DatabaseUrl, Store};
use diesel::prelude::*;
use diesel::sql_types::Text;
use std::collections::BTreeSet;

#[derive(QueryableByName)]
struct Col {
    #[diesel(sql_type = Text)]
    t: String,
    #[diesel(sql_type = Text)]
    c: String,
}

fn columns(backend: Backend) -> BTreeSet<(String, String)> {
    let db = TestDatabase::create(backend);
    let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 2).unwrap();
    let applied = store.migrate().unwrap();
    assert!(!applied.is_empty());
    assert_eq!(store.pending_migrations().unwrap(), 0);
    let sql = match backend {
        Backend::Postgres => {
            "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'"
        }
        Backend::Sqlite => {
            "SELECT m.name AS t, p.name AS c FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
             AND m.name <> '__diesel_schema_migrations'"
        }
    };
    let rows: Vec<Col> = store.read(|c| Ok(diesel::sql_query(sql).load(c)?)).unwrap();
    rows.into_iter().map(|r| (r.t, r.c)).collect()
}

#[test]
fn postgres_and_sqlite_migrations_define_the_same_columns() {
    let pg = columns(Backend::Postgres);
    let lite = columns(Backend::Sqlite);
    assert!(pg.len() > 50, "schema looks empty: {}", pg.len());
    assert_eq!(pg, lite);
}
