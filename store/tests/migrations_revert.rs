#![allow(clippy::unwrap_used)]
//! The schema reverts to nothing and applies again, on both backends, and the poll batch
//! function keeps the settings its speed depends on (see the migration's comments).

use ciba_store::db::{PG_MIGRATIONS, SQLITE_MIGRATIONS};
use ciba_store::testing::TestDatabase;
use ciba_store::Backend;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel_migrations::MigrationHarness;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// The poll batch function's settings: generic plan, key look-ups, a short lock wait.
const ALL_SETTINGS: &str = "plan_cache_mode=force_generic_plan,enable_hashjoin=off,\
                            enable_mergejoin=off,lock_timeout=20ms";

fn batch_function_config(conn: &mut PgConnection) -> String {
    #[derive(QueryableByName)]
    struct Config {
        #[diesel(sql_type = diesel::sql_types::Text)]
        config: String,
    }
    diesel::sql_query(
        "SELECT coalesce(array_to_string(proconfig, ','), '') AS config FROM pg_proc \
         WHERE proname = 'ciba_record_polls'",
    )
    .get_result::<Config>(conn)
    .unwrap()
    .config
}

fn pg_tables(conn: &mut PgConnection) -> i64 {
    diesel::sql_query(
        "SELECT count(*) AS n FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_name <> '__diesel_schema_migrations'",
    )
    .get_result::<Count>(conn)
    .unwrap()
    .n
}

fn auth_requests_fillfactor(conn: &mut PgConnection) -> String {
    #[derive(QueryableByName)]
    struct Options {
        #[diesel(sql_type = diesel::sql_types::Text)]
        options: String,
    }
    diesel::sql_query(
        "SELECT coalesce(array_to_string(reloptions, ','), '') AS options FROM pg_class \
         WHERE relname = 'auth_requests'",
    )
    .get_result::<Options>(conn)
    .unwrap()
    .options
}

#[test]
fn postgres_migrations_revert_and_reapply() {
    let db = TestDatabase::create(Backend::Postgres);
    let mut conn = PgConnection::establish(&db.url).unwrap();
    let applied = conn.run_pending_migrations(PG_MIGRATIONS).unwrap().len();
    assert!(applied >= 1);
    assert_eq!(batch_function_config(&mut conn), ALL_SETTINGS);
    assert_eq!(auth_requests_fillfactor(&mut conn), "fillfactor=50");
    let tables = pg_tables(&mut conn);
    assert_eq!(tables, 13);
    for _ in 0..applied {
        conn.revert_last_migration(PG_MIGRATIONS).unwrap();
    }
    assert_eq!(pg_tables(&mut conn), 0, "down leaves nothing behind");
    let functions =
        diesel::sql_query("SELECT count(*) AS n FROM pg_proc WHERE proname = 'ciba_record_polls'")
            .get_result::<Count>(&mut conn)
            .unwrap()
            .n;
    assert_eq!(functions, 0, "down drops the poll function");
    assert_eq!(
        conn.run_pending_migrations(PG_MIGRATIONS).unwrap().len(),
        applied
    );
    assert_eq!(pg_tables(&mut conn), tables);
    assert_eq!(batch_function_config(&mut conn), ALL_SETTINGS);
    assert_eq!(auth_requests_fillfactor(&mut conn), "fillfactor=50");
}

#[test]
fn sqlite_migrations_revert_and_reapply() {
    let db = TestDatabase::create(Backend::Sqlite);
    let path = db.url.trim_start_matches("sqlite://").to_owned();
    let mut conn = SqliteConnection::establish(&path).unwrap();
    let tables = |conn: &mut SqliteConnection| {
        diesel::sql_query(
            "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE '\\_\\_diesel%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
        )
        .get_result::<Count>(conn)
        .unwrap()
        .n
    };
    let applied = conn
        .run_pending_migrations(SQLITE_MIGRATIONS)
        .unwrap()
        .len();
    assert!(applied >= 1);
    assert_eq!(tables(&mut conn), 13);
    for _ in 0..applied {
        conn.revert_last_migration(SQLITE_MIGRATIONS).unwrap();
    }
    assert_eq!(tables(&mut conn), 0, "down leaves nothing behind");
    assert_eq!(
        conn.run_pending_migrations(SQLITE_MIGRATIONS)
            .unwrap()
            .len(),
        applied
    );
    assert_eq!(tables(&mut conn), 13);
}
