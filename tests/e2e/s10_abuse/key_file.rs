//! No key-encryption key is compiled into the program: a SQLite server without one makes its
//! own and keeps it beside the database; a PostgreSQL server refuses to start without one.

use crate::support::{Backend, TestServer};
use ciba_store::testing::TestDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_sqlite_server_writes_its_own_key_file() {
    // An empty value is as unset.
    let mut srv = TestServer::start_with(Backend::Sqlite, &[("CIBA_KEY_ENCRYPTION_KEY", "")]).await;
    let db_path = srv.db.url.strip_prefix("sqlite://").unwrap().to_owned();
    let key_path = format!("{db_path}.kek");
    let text = std::fs::read_to_string(&key_path).expect("no key file beside the database");
    assert_eq!(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text.trim())
            .unwrap()
            .len(),
        32
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the key file is readable by others: {mode:o}"
        );
    }
    assert!(
        srv.logs().contains(&key_path),
        "the warning does not name the file"
    );
    // The signing keys were sealed under that key: a restart reads them back and signs.
    srv.restart().await;
    let jwks = srv.get("/oidc/v1/jwks").await;
    assert!(!jwks.ok()["keys"].as_array().unwrap().is_empty());
    let (id, secret) = srv.create_client("permissions/client", &[]);
    srv.access_token(&id, &secret, "permissions/client").await;
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), text);
}

#[test]
fn a_postgres_server_refuses_to_start_without_a_key() {
    let db = TestDatabase::create(Backend::Postgres);
    for command in [
        &["serve"][..],
        &["migrate"][..],
        &["admin", "keys", "rotate"][..],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ciba-api"))
            .env_clear()
            .env("DATABASE_URL", &db.url)
            .env("CIBA_LISTEN", "127.0.0.1:0")
            .args(command)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{command:?} started without a key");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("CIBA_KEY_ENCRYPTION_KEY"),
            "{command:?}: {err}"
        );
    }
}
