//! Store errors, classified so callers can answer 503 for an unavailable database,
//! a precise error for a uniqueness conflict, and a generic 500 for everything else.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or is busy; the caller may retry.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A unique constraint refused the write.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    #[error("database error: {0}")]
    Other(String),
}

impl From<DieselError> for StoreError {
    fn from(e: DieselError) -> Self {
        match &e {
            DieselError::NotFound => StoreError::NotFound,
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                StoreError::Conflict(info.message().to_owned())
            }
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => StoreError::Unavailable(info.message().to_owned()),
            DieselError::DatabaseError(_, info) if is_transient(info.message()) => {
                StoreError::Unavailable(info.message().to_owned())
            }
            _ => StoreError::Other(e.to_string()),
        }
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

fn is_transient(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("database is locked")
        || m.contains("database is busy")
        || m.contains("terminating connection")
        || m.contains("server closed the connection")
        || m.contains("could not serialize")
        || m.contains("deadlock detected")
}

pub type StoreResult<T> = Result<T, StoreError>;
