#![allow(clippy::unwrap_used)]
//! Every migration reverts and applies again, on both backends. Migration 000005 drops the
//! unused one-poll function (its down migration brings it back); 000006 makes the poll batch
//! function keep its generic plan, 000007 keeps that plan to key look-ups, 000008 rewrites the
//! function as a plain UPDATE with a lock timeout (restating the settings before it).

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

/// The poll batch function's settings once every migration is applied (000006-000008).
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
         WHERE proname = 'ciba_touch_pending_batch'",
    )
    .get_result::<Config>(conn)
    .unwrap()
    .config
}

fn one_poll_functions(conn: &mut PgConnection) -> i64 {
    diesel::sql_query("SELECT count(*) AS n FROM pg_proc WHERE proname = 'ciba_touch_pending'")
        .get_result::<Count>(conn)
        .unwrap()
        .n
}

#[test]
fn postgres_migrations_revert_and_reapply() {
    let db = TestDatabase::create(Backend::Postgres);
    let mut conn = PgConnection::establish(&db.url).unwrap();
    let applied = conn.run_pending_migrations(PG_MIGRATIONS).unwrap().len();
    assert!(applied >= 9);
    assert_eq!(one_poll_functions(&mut conn), 0, "000005 drops it");
    assert_eq!(batch_function_config(&mut conn), ALL_SETTINGS);
    let mut reverted = 0;
    loop {
        let version = conn
            .revert_last_migration(PG_MIGRATIONS)
            .unwrap()
            .to_string();
        reverted += 1;
        if version.contains("000008") {
            assert_eq!(
                batch_function_config(&mut conn),
                "plan_cache_mode=force_generic_plan,enable_hashjoin=off,enable_mergejoin=off",
                "000008's down keeps the settings of 000006 and 000007"
            );
        }
        if version.contains("000007") {
            assert_eq!(
                batch_function_config(&mut conn),
                "plan_cache_mode=force_generic_plan",
                "000007's down resets only its own"
            );
        }
        if version.contains("000006") {
            assert_eq!(
                batch_function_config(&mut conn),
                "",
                "000006's down resets it"
            );
        }
        if version.contains("000005") {
            break;
        }
    }
    assert_eq!(
        one_poll_functions(&mut conn),
        1,
        "000005's down restores it"
    );
    for _ in reverted..applied {
        conn.revert_last_migration(PG_MIGRATIONS).unwrap();
    }
    assert_eq!(
        conn.run_pending_migrations(PG_MIGRATIONS).unwrap().len(),
        applied
    );
    assert_eq!(one_poll_functions(&mut conn), 0);
    assert_eq!(batch_function_config(&mut conn), ALL_SETTINGS);
}

#[test]
fn sqlite_migrations_revert_and_reapply() {
    let db = TestDatabase::create(Backend::Sqlite);
    let path = db.url.trim_start_matches("sqlite://").to_owned();
    let mut conn = SqliteConnection::establish(&path).unwrap();
    let applied = conn
        .run_pending_migrations(SQLITE_MIGRATIONS)
        .unwrap()
        .len();
    assert!(applied >= 9);
    for _ in 0..applied {
        conn.revert_last_migration(SQLITE_MIGRATIONS).unwrap();
    }
    assert_eq!(
        conn.run_pending_migrations(SQLITE_MIGRATIONS)
            .unwrap()
            .len(),
        applied
    );
}
