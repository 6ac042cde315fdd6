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

/// The pool's connection manager.
#[derive(Debug, Clone)]
pub struct Manager {
    url: DatabaseUrl,
}

impl Manager {
    pub fn new(url: DatabaseUrl) -> Self {
        Self { url }
    }
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = Error;

    fn connect(&self) -> Result<DbConnection, Error> {
        establish(&self.url).map_err(|e| {
            Error::ConnectionError(ConnectionError::BadConnection(describe(&self.url, &e)))
        })
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Error> {
        conn.ping().map_err(Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        conn.is_broken()
    }
}

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
        Backend::Postgres => PgConnection::establish(url.connect_str()).map(DbConnection::Pg),
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
    fn a_bad_option_is_permanent() {
        let url = DatabaseUrl::parse("postgres://u@127.0.0.1:1/db?nonsense=1").unwrap();
        let f = probe(&url).unwrap_err();
        assert!(f.permanent, "{f}");
    }
}
