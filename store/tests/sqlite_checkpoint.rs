#![allow(clippy::unwrap_used)]
//! SQLite: no checkpoint inside a writer's commit; the store's own thread copies the WAL back
//! into the database file while the connections stay open.

use ciba_store::testing::TestDatabase;
use ciba_store::{Backend, DatabaseUrl, DbConnection, Store};
use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, QueryableByName, RunQueryDsl};
use std::time::{Duration, Instant};

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct AutoCheckpoint {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    wal_autocheckpoint: i32,
}

/// Clients as the database file alone holds them (a copy without the WAL beside it).
fn clients_in_main_file(db_file: &std::path::Path) -> i64 {
    let dir = tempfile_dir();
    let copy = dir.join("copy.db");
    std::fs::copy(db_file, &copy).unwrap();
    let mut c = SqliteConnection::establish(copy.to_str().unwrap()).unwrap();
    let n = diesel::sql_query("SELECT count(*) AS n FROM clients")
        .get_result::<Count>(&mut c)
        .map_or(0, |r| r.n);
    drop(c);
    let _ = std::fs::remove_dir_all(dir);
    n
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ciba-ckpt-{}", ciba_domain::ids::random_id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_wal_reaches_the_database_file_without_a_writer_doing_it() {
    let db = TestDatabase::create(Backend::Sqlite);
    let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 4).unwrap();
    store.migrate().unwrap();
    let db_file = std::path::PathBuf::from(db.url.strip_prefix("sqlite://").unwrap());

    let auto = store
        .read(|c| match c {
            DbConnection::Sqlite(c) => Ok(diesel::sql_query("PRAGMA wal_autocheckpoint")
                .get_result::<AutoCheckpoint>(c)?
                .wal_autocheckpoint),
            DbConnection::Pg(_) => unreachable!(),
        })
        .unwrap();
    assert_eq!(auto, 0, "writers must not checkpoint in their commits");

    let mut sql = String::new();
    for i in 0..50 {
        sql += &format!(
            "INSERT INTO clients (id, name, secret_hash, scopes, callback_uris, sub_nnin, \
             id_token_alg, delivery_mode, disabled, created_at, updated_at) VALUES \
             ('c{i}','n','x','openid','[]',false,'ES256','poll',false,0,0);"
        );
    }
    store.write(|c| Ok(c.batch_execute(&sql)?)).unwrap();
    // The store (and its pooled connections) stay open: only its checkpoint thread can
    // have copied the rows into the database file.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = clients_in_main_file(&db_file);
    while seen != 50 && Instant::now() < deadline {
        std::thread::sleep(ciba_store::checkpoint::EVERY);
        seen = clients_in_main_file(&db_file);
    }
    assert_eq!(seen, 50, "the WAL was not checkpointed");
    drop(store);
}

/// The checkpoint thread never takes a connection the writers need: with a pool of one,
/// writers keep writing through many checkpoint rounds.
#[test]
fn checkpoints_never_hold_up_a_one_connection_store() {
    let db = TestDatabase::create(Backend::Sqlite);
    let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 1).unwrap();
    store.migrate().unwrap();
    let until = Instant::now() + ciba_store::checkpoint::EVERY * 8;
    let mut i = 0;
    while Instant::now() < until {
        let sql = format!(
            "INSERT INTO clients (id, name, secret_hash, scopes, callback_uris, sub_nnin, \
             id_token_alg, delivery_mode, disabled, created_at, updated_at) VALUES \
             ('w{i}','n','x','openid','[]',false,'ES256','poll',false,0,0);"
        );
        store.write(|c| Ok(c.batch_execute(&sql)?)).unwrap();
        i += 1;
    }
    assert!(i > 100, "only {i} writes");
}
