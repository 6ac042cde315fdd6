//! Fresh, isolated databases for tests: one SQLite file or one PostgreSQL database each.
//! PostgreSQL is reached through `CIBA_TEST_PG_URL` (default: local trust auth as `postgres`).

use crate::db::Backend;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::Connection;
use std::path::PathBuf;

pub const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn pg_admin_url() -> String {
    std::env::var("CIBA_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_ADMIN_URL.to_owned())
}

/// A database that exists for the lifetime of this value.
pub struct TestDatabase {
    pub backend: Backend,
    pub url: String,
    pg_name: Option<String>,
    /// The server the PostgreSQL database was made on (`CIBA_TEST_PG_URL`, or another).
    pg_admin: String,
    sqlite_dir: Option<PathBuf>,
}

impl TestDatabase {
    /// # Panics
    /// When the database cannot be created: a test cannot run without one.
    #[allow(clippy::expect_used)]
    pub fn create(backend: Backend) -> Self {
        Self::create_on(backend, &pg_admin_url())
    }

    /// [`TestDatabase::create`], a PostgreSQL one on the server `admin` names (a
    /// maintenance-database URL).
    ///
    /// # Panics
    /// As [`TestDatabase::create`].
    #[allow(clippy::expect_used)]
    pub fn create_on(backend: Backend, admin: &str) -> Self {
        let tag = ciba_domain::ids::random_id()
            .to_ascii_lowercase()
            .replace(['-', '_'], "");
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("ciba-test-{}", &tag[..16]));
                std::fs::create_dir_all(&dir).expect("create temp dir");
                let url = format!("sqlite://{}", dir.join("ciba.db").display());
                Self {
                    backend,
                    url,
                    pg_name: None,
                    pg_admin: admin.to_owned(),
                    sqlite_dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let admin = admin.to_owned();
                let name = format!("ciba_test_{}", &tag[..20]);
                let mut conn = PgConnection::establish(&admin)
                    .expect("PostgreSQL for tests (set CIBA_TEST_PG_URL)");
                conn.batch_execute(&format!("CREATE DATABASE {name}"))
                    .expect("create test database");
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                let url = format!("{base}/{name}");
                Self {
                    backend,
                    url,
                    pg_name: Some(name),
                    pg_admin: admin,
                    sqlite_dir: None,
                }
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            if let Ok(mut conn) = PgConnection::establish(&self.pg_admin) {
                let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
        if let Some(dir) = &self.sqlite_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
