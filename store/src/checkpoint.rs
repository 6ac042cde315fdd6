//! SQLite WAL checkpoints off the request path. By default SQLite checkpoints inside the
//! commit that pushes the WAL past 1,000 pages: that writer (and every writer queued behind
//! it) waits for the pages to be copied back and the database file to be synced. Under the
//! polling load this was the whole of SQLite's p99 (7–9 ms; 2.6–3 ms without it). So
//! connections turn automatic checkpoints off, and one thread per [`crate::Store`], on a
//! connection of its own, checkpoints every [`EVERY`]: first `PASSIVE` (copies what it can
//! without waiting for, or blocking, readers and writers), then `PASSIVE` again with this
//! process's writers held back for the few frames appended meanwhile, so the WAL is complete
//! in the database file and starts over. When the last connection closes, SQLite
//! checkpoints the rest itself.

use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the WAL is copied back into the database file.
pub const EVERY: Duration = Duration::from_millis(200);

/// The checkpointing thread runs while any clone of this lives, and ends within [`EVERY`]
/// of the last one's drop.
#[derive(Clone)]
pub struct Checkpointer {
    _running: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Checkpoint the database at `path` on a connection of the thread's own: never one of
    /// the pool's, which a writer holding `writer` may be waiting for.
    pub fn start(path: String, writer: Arc<Mutex<()>>) -> std::io::Result<Self> {
        let (running, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("ciba-sqlite-checkpoint".into())
            .spawn(move || {
                let mut conn: Option<SqliteConnection> = None;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    if let Err(e) = checkpoint(&mut conn, &path, &writer) {
                        conn = None;
                        // the next round tries again; nothing is lost meanwhile (it is in the WAL)
                        tracing::warn!(error = %e, "SQLite checkpoint failed");
                    }
                }
            })?;
        Ok(Self { _running: running })
    }
}

fn checkpoint(
    conn: &mut Option<SqliteConnection>,
    path: &str,
    writer: &Mutex<()>,
) -> Result<(), String> {
    let c = match conn {
        Some(c) => c,
        None => {
            let mut c = SqliteConnection::establish(path).map_err(|e| e.to_string())?;
            c.batch_execute("PRAGMA busy_timeout = 5000;")
                .map_err(|e| e.to_string())?;
            conn.insert(c)
        }
    };
    // Most of the WAL, while writers go on appending to it.
    c.batch_execute("PRAGMA wal_checkpoint(PASSIVE)")
        .map_err(|e| e.to_string())?;
    // The few frames appended meanwhile, with our writers held back, so that the whole WAL
    // is in the database file and the next writer starts it over (else it grows without end).
    let _writers = writer.lock().unwrap_or_else(|p| p.into_inner());
    c.batch_execute("PRAGMA wal_checkpoint(PASSIVE)")
        .map_err(|e| e.to_string())
}
