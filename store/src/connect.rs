//! Connections made for the backend the URL names. diesel's multi-backend connection tries
//! each backend in turn and reports only `Invalid connection url for multiconnection`; this
//! manager connects with the one backend and keeps libpq's or SQLite's own message, so every
//! log line and CLI error says why the database cannot be reached, and start-up can tell an
//! error that retrying fixes (PostgreSQL still starting) from one it never will (a wrong role,
//! a missing database, a SQLite path in a missing folder).

use crate::db::{Backend, DatabaseUrl, DbConnection};
use diesel::connection::Connection;
use diesel::pg::PgConnection;
use diesel::r2d2::{Error, HandleError, ManageConnection, R2D2Connection};
use diesel::sqlite::SqliteConnection;
use diesel::ConnectionError;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// What the pools know of the database's health, shared by a store's pools.
///
/// diesel's `is_broken` looks only at its transaction manager: a PostgreSQL connection the
/// server closed (a restart, a failover, a cut network) goes back to the pool as if healthy
/// and fails every later checkout with `no connection to the server`. So a use that fails as
/// unavailable marks its connection broken (the pool drops it) and starts a new epoch: every
/// connection idle from before is checked with a round trip at its next checkout, and only
/// then, so there is no ping per checkout while all is well.
#[derive(Debug, Default)]
pub struct Health {
    /// The last attempt to connect failed (cleared by the next that succeeds).
    down: AtomicBool,
    epoch: AtomicU64,
}

impl Health {
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// A connection failed in use: suspect every other connection made before now.
    pub fn suspect_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

/// A pooled connection and what the pool needs to know about it.
pub struct Conn {
    pub inner: DbConnection,
    /// It failed in a way that says the session is gone: the pool drops it.
    pub broken: bool,
    /// The [`Health::epoch`] in which it was last known good.
    pub epoch: u64,
}

impl std::ops::Deref for Conn {
    type Target = DbConnection;

    fn deref(&self) -> &DbConnection {
        &self.inner
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut DbConnection {
        &mut self.inner
    }
}

/// The pool's connection manager.
#[derive(Debug, Clone)]
pub struct Manager {
    url: DatabaseUrl,
    health: Arc<Health>,
}

impl Manager {
    pub fn new(url: DatabaseUrl, health: Arc<Health>) -> Self {
        Self { url, health }
    }
}

impl ManageConnection for Manager {
    type Connection = Conn;
    type Error = Error;

    fn connect(&self) -> Result<Conn, Error> {
        let epoch = self.health.epoch();
        match establish(&self.url) {
            Ok(inner) => {
                self.health.down.store(false, Ordering::Release);
                Ok(Conn {
                    inner,
                    broken: false,
                    epoch,
                })
            }
            Err(e) => {
                self.health.down.store(true, Ordering::Release);
                Err(Error::ConnectionError(ConnectionError::BadConnection(
                    describe(&self.url, &e),
                )))
            }
        }
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), Error> {
        conn.inner.ping().map_err(Error::QueryError)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken || conn.inner.is_broken()
    }
}

/// libpq waits for an unanswered connection attempt forever unless told otherwise: a URL
/// without `connect_timeout` gets one, so a black-holed network fails attempts instead of
/// holding the pool's connecting threads.
pub(crate) fn with_connect_timeout(url: &str) -> String {
    if url.contains("connect_timeout=") {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}connect_timeout={CONNECT_TIMEOUT_SECS}")
}

/// Seconds libpq waits for a connection to be made (its minimum is 2).
pub const CONNECT_TIMEOUT_SECS: u32 = 2;

/// Why a connection could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectFailure {
    /// The database's own message, without the URL's password.
    pub message: String,
    /// Retrying will not help: wrong credentials, no such database or role, a bad URL or path.
    pub permanent: bool,
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// One connection, made and dropped: does the database answer, and if not, why.
pub fn probe(url: &DatabaseUrl) -> Result<(), ConnectFailure> {
    establish(url).map(drop).map_err(|e| {
        let message = describe(url, &e);
        let permanent = is_permanent(&e, &message);
        ConnectFailure { message, permanent }
    })
}

fn establish(url: &DatabaseUrl) -> Result<DbConnection, ConnectionError> {
    match url.backend {
        Backend::Postgres => {
            PgConnection::establish(&with_connect_timeout(url.connect_str())).map(DbConnection::Pg)
        }
        Backend::Sqlite => {
            let path = Path::new(url.connect_str());
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                if !dir.is_dir() {
                    return Err(ConnectionError::BadConnection(format!(
                        "unable to open database file: the folder {} does not exist",
                        dir.display()
                    )));
                }
            }
            SqliteConnection::establish(url.connect_str()).map(DbConnection::Sqlite)
        }
    }
}

/// The error as one line, never with the URL's password in it.
fn describe(url: &DatabaseUrl, e: &ConnectionError) -> String {
    let text = match e {
        ConnectionError::BadConnection(m) => m.clone(),
        other => other.to_string(),
    };
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match url.password() {
        Some(p) if !p.is_empty() => line.replace(p, "***"),
        _ => line,
    }
}

fn is_permanent(e: &ConnectionError, message: &str) -> bool {
    if !matches!(e, ConnectionError::BadConnection(_)) {
        return true; // a malformed URL or setup: the same every time
    }
    let m = message.to_ascii_lowercase();
    [
        "password authentication failed",
        "does not exist", // database or role
        "no pg_hba.conf entry",
        "invalid connection option",
        "invalid uri",
        "invalid sslmode",
        "server does not support ssl",
        "unable to open database file",
        "file is not a database",
        "permission denied",
        "readonly database",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// The pool's own connection errors (it retries in the background), as warnings with their
/// cause instead of the `log` crate's unformatted lines.
#[derive(Debug)]
pub struct LogConnectErrors;

impl HandleError<Error> for LogConnectErrors {
    fn handle_error(&self, error: Error) {
        tracing::warn!(error = %error, "database connection failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sqlite_file_in_a_missing_folder_is_named_and_permanent() {
        let url = DatabaseUrl::parse("sqlite:///nonexistent-ciba-folder/x/ciba.db").unwrap();
        let f = probe(&url).unwrap_err();
        assert!(f.permanent);
        assert!(
            f.message
                .contains("/nonexistent-ciba-folder/x does not exist"),
            "{f}"
        );
    }

    #[test]
    fn a_closed_port_is_worth_retrying_and_says_so() {
        let url = DatabaseUrl::parse("postgres://u:s3cret-pw@127.0.0.1:1/db").unwrap();
        let f = probe(&url).unwrap_err();
        assert!(!f.permanent, "{f}");
        assert!(f.message.to_ascii_lowercase().contains("refused"), "{f}");
        assert!(!f.message.contains("s3cret-pw"));
    }

    #[test]
    fn a_url_gets_a_connect_timeout_unless_it_has_one() {
        assert_eq!(
            with_connect_timeout("postgres://h/db"),
            "postgres://h/db?connect_timeout=2"
        );
        assert_eq!(
            with_connect_timeout("postgres://h/db?sslmode=disable"),
            "postgres://h/db?sslmode=disable&connect_timeout=2"
        );
        assert_eq!(
            with_connect_timeout("postgres://h/db?connect_timeout=9"),
            "postgres://h/db?connect_timeout=9"
        );
    }

    #[test]
    fn a_bad_option_is_permanent() {
        let url = DatabaseUrl::parse("postgres://u@127.0.0.1:1/db?nonsense=1").unwrap();
        let f = probe(&url).unwrap_err();
        assert!(f.permanent, "{f}");
    }
}
