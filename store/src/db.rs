//! Connections, the pool, per-connection SQLite pragmas and embedded migrations.
//!
//! PostgreSQL and SQLite sit behind one [`DbConnection`] type; the backend is chosen by the
//! URL scheme. SQLite allows one writer at a time, so writes on SQLite go through a process
//! mutex ([`Store::write`]) instead of failing with `SQLITE_BUSY`; readers run in parallel (WAL).

use crate::checkpoint::Checkpointer;
use crate::connect::{Conn, Health, LogConnectErrors, Manager};
use crate::error::{StoreError, StoreResult};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{CustomizeConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// A database URL split into its backend and the string diesel connects with.
#[derive(Clone)]
pub struct DatabaseUrl {
    pub backend: Backend,
    connect: String,
}

impl std::fmt::Debug for DatabaseUrl {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({})", self.backend.as_str())
    }
}

impl DatabaseUrl {
    /// What diesel connects with: the PostgreSQL URL or the SQLite path.
    pub(crate) fn connect_str(&self) -> &str {
        &self.connect
    }

    /// The password in a PostgreSQL URL, to keep it out of error messages.
    pub(crate) fn password(&self) -> Option<&str> {
        if self.backend != Backend::Postgres {
            return None;
        }
        let rest = self.connect.split_once("://")?.1;
        let userinfo = rest.split_once('@')?.0;
        userinfo.split_once(':').map(|(_, p)| p)
    }

    /// The file of a SQLite database (`None` for PostgreSQL).
    pub fn sqlite_path(&self) -> Option<&str> {
        (self.backend == Backend::Sqlite).then_some(self.connect.as_str())
    }

    /// Accepts `postgres://…`, `postgresql://…`, `sqlite://PATH` and `sqlite:PATH`.
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self {
                backend: Backend::Postgres,
                connect: url.to_owned(),
            });
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| "must start with postgres://, postgresql:// or sqlite://".to_owned())?;
        if path.is_empty() || path == ":memory:" {
            return Err("sqlite needs a file path, e.g. sqlite://ciba.db".to_owned());
        }
        Ok(Self {
            backend: Backend::Sqlite,
            connect: path.to_owned(),
        })
    }
}

/// Connections for soft state (poll pacing): on PostgreSQL their commits do not wait for
/// the WAL flush. Losing the last few such writes in a crash only relaxes `slow_down`.
#[derive(Debug)]
struct AsyncCommit;

impl CustomizeConnection<Conn, diesel::r2d2::Error> for AsyncCommit {
    fn on_acquire(&self, conn: &mut Conn) -> Result<(), diesel::r2d2::Error> {
        if let DbConnection::Pg(c) = &mut conn.inner {
            c.batch_execute("SET synchronous_commit = off")
                .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// A PostgreSQL pool of at most `max` connections, made as they are needed, set up by
/// `settings`.
fn pg_pool(
    url: &DatabaseUrl,
    health: &Arc<Health>,
    max: u32,
    settings: Box<dyn CustomizeConnection<Conn, diesel::r2d2::Error>>,
) -> Pool<Manager> {
    Pool::builder()
        .max_size(max)
        .min_idle(Some(0))
        .connection_timeout(CHECKOUT_TIMEOUT)
        .test_on_check_out(false)
        .connection_customizer(settings)
        .error_handler(Box::new(LogConnectErrors))
        .build_unchecked(Manager::new(url.clone(), health.clone()))
}

/// Whether `e` is a statement's wait for a lock given up after its `lock_timeout`.
pub fn is_lock_timeout(e: &StoreError) -> bool {
    matches!(e, StoreError::Other(m) if m.contains("lock timeout"))
}

/// Fails if the transaction on `conn` was aborted by a statement that failed, whether or not
/// its error was handled (PostgreSQL; one statement, which fails in an aborted transaction).
pub fn still_open(conn: &mut DbConnection) -> StoreResult<()> {
    if let DbConnection::Pg(pg) = conn {
        pg.batch_execute("SELECT 1")?;
    }
    Ok(())
}

/// How long a statement of a batch ([`Store::on_batch_connection`]) waits for a row lock. The steps
/// committed together change rows of their own flows, so a wait means two callers raced for
/// one row; two batches that each hold a row the other wants would otherwise wait for
/// PostgreSQL's deadlock check (a second), and every other step of both with them.
pub const BATCH_LOCK_TIMEOUT: &str = "50ms";

#[derive(Debug)]
struct BatchSettings;

impl CustomizeConnection<Conn, diesel::r2d2::Error> for BatchSettings {
    fn on_acquire(&self, conn: &mut Conn) -> Result<(), diesel::r2d2::Error> {
        if let DbConnection::Pg(c) = &mut conn.inner {
            c.batch_execute(&format!("SET lock_timeout = '{BATCH_LOCK_TIMEOUT}'"))
                .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<Conn, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut Conn) -> Result<(), diesel::r2d2::Error> {
        if let DbConnection::Sqlite(c) = &mut conn.inner {
            c.batch_execute(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; \
                 PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;",
            )
            .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

pub type PooledConn = PooledConnection<Manager>;

/// How long a checkout waits for a connection while the database answers (all connections
/// busy). r2d2 retries a failed connection attempt after at most half of this.
pub const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(3);
/// While the last attempt to connect failed, a checkout waits no longer than this: the
/// caller answers "unavailable" at once instead of after [`CHECKOUT_TIMEOUT`].
const CHECKOUT_SLICE: Duration = Duration::from_millis(100);

/// A pool's connections at one moment ([`Store::pool_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub connections: u32,
    pub idle: u32,
    pub max: u32,
}

/// The shared handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool<Manager>,
    /// PostgreSQL only: connections with asynchronous commit, for soft state.
    soft_pool: Option<Pool<Manager>>,
    /// PostgreSQL only, set by [`Store::with_batch_pool`]: connections for batches of
    /// steps, with a short lock wait.
    batch_pool: Option<Pool<Manager>>,
    url: DatabaseUrl,
    /// Shared by both pools: is the database reachable, which connections to re-check.
    health: Arc<Health>,
    backend: Backend,
    sqlite_writer: Arc<Mutex<()>>,
    /// SQLite only: WAL checkpoints on their own thread ([`crate::checkpoint`]).
    _checkpointer: Option<Checkpointer>,
}

impl Store {
    /// Open a pool. Does not fail when the database is down: connections are made lazily,
    /// so the process can start and report not-ready instead of crashing.
    pub fn open(url: &DatabaseUrl, max_connections: u32) -> StoreResult<Self> {
        let health = Arc::new(Health::default());
        let manager = Manager::new(url.clone(), health.clone());
        let max = match url.backend {
            Backend::Postgres => max_connections.max(1),
            Backend::Sqlite => max_connections.clamp(1, 8),
        };
        let pool = Pool::builder()
            .max_size(max)
            .min_idle(Some(0))
            .connection_timeout(CHECKOUT_TIMEOUT)
            // no ping round trip per checkout; a connection that broke in use is discarded
            .test_on_check_out(false)
            .connection_customizer(Box::new(SqlitePragmas))
            .error_handler(Box::new(LogConnectErrors))
            .build_unchecked(manager);
        let soft_pool = (url.backend == Backend::Postgres)
            .then(|| pg_pool(url, &health, max, Box::new(AsyncCommit)));
        let sqlite_writer = Arc::new(Mutex::new(()));
        let checkpointer = match url.backend {
            Backend::Sqlite => Some(
                Checkpointer::start(url.connect.clone(), sqlite_writer.clone())
                    .map_err(|e| StoreError::Other(format!("cannot start checkpoints: {e}")))?,
            ),
            Backend::Postgres => None,
        };
        Ok(Self {
            pool,
            soft_pool,
            batch_pool: None,
            url: url.clone(),
            health,
            backend: url.backend,
            sqlite_writer,
            _checkpointer: checkpointer,
        })
    }

    /// This store, whose batches ([`Store::on_batch_connection`]) take connections of a pool
    /// of their own on PostgreSQL, at most `size`, with a short lock wait
    /// ([`BATCH_LOCK_TIMEOUT`]).
    pub fn with_batch_pool(&self, size: u32) -> Store {
        let pool = (self.backend == Backend::Postgres).then(|| {
            pg_pool(
                &self.url,
                &self.health,
                size.max(1),
                Box::new(BatchSettings),
            )
        });
        Store {
            batch_pool: pool,
            ..self.clone()
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The main pool's connections now (open, of which idle) and its size limit, for the
    /// metrics.
    pub fn pool_status(&self) -> PoolStatus {
        let state = self.pool.state();
        PoolStatus {
            connections: state.connections,
            idle: state.idle_connections,
            max: self.pool.max_size(),
        }
    }

    pub fn conn(&self) -> StoreResult<PooledConn> {
        self.checkout(&self.pool)
    }

    /// A connection of `pool`: at once "unavailable" while the database cannot be reached;
    /// one made before the last failure in use is checked first (see [`Health`]).
    fn checkout(&self, pool: &Pool<Manager>) -> StoreResult<PooledConn> {
        let deadline = Instant::now() + CHECKOUT_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut conn = match pool.get_timeout(CHECKOUT_SLICE.min(left)) {
                Ok(c) => c,
                Err(e) if self.health.is_down() || left <= CHECKOUT_SLICE => return Err(e.into()),
                Err(_) => continue,
            };
            let epoch = self.health.epoch();
            if conn.epoch == epoch || self.backend != Backend::Postgres {
                return Ok(conn);
            }
            match conn.inner.batch_execute("SELECT 1") {
                Ok(()) => {
                    conn.epoch = epoch;
                    return Ok(conn);
                }
                // dropped by the pool; the next one is checked in turn
                Err(_) => conn.broken = true,
            }
        }
    }

    /// Run `f` on `conn`; when it fails as unavailable, the connection is not trusted again.
    fn run<R>(
        &self,
        mut conn: PooledConn,
        f: impl FnOnce(&mut Conn) -> StoreResult<R>,
    ) -> StoreResult<R> {
        let result = f(&mut conn);
        if let Err(StoreError::Unavailable(_)) = &result {
            if self.backend == Backend::Postgres {
                conn.broken = true;
                self.health.suspect_all();
            }
        }
        result
    }

    /// Run `f` on a pooled connection (reads, or single-statement conditional writes).
    pub fn read<R>(&self, f: impl FnOnce(&mut DbConnection) -> StoreResult<R>) -> StoreResult<R> {
        self.run(self.conn()?, |c| f(c))
    }

    fn sqlite_guard(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite => Some(self.sqlite_writer.lock().unwrap_or_else(|p| p.into_inner())),
            Backend::Postgres => None,
        }
    }

    /// Run a single-statement write without a transaction. SQLite writers queue in-process
    /// (instead of sleeping in SQLite's busy handler).
    pub fn write_one<R>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> StoreResult<R>,
    ) -> StoreResult<R> {
        let _guard = self.sqlite_guard();
        self.run(self.conn()?, |c| f(c))
    }

    /// A write of soft state that may be lost in a crash (poll pacing): asynchronous commit
    /// on PostgreSQL, the queued writer on SQLite.
    pub fn write_soft<R>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> StoreResult<R>,
    ) -> StoreResult<R> {
        match &self.soft_pool {
            Some(pool) => self.run(self.checkout(pool)?, |c| f(c)),
            None => self.write_one(f),
        }
    }

    /// Run `f` in a transaction. On SQLite, writers are serialised in-process first.
    pub fn write<R>(&self, f: impl FnOnce(&mut DbConnection) -> StoreResult<R>) -> StoreResult<R> {
        let _guard = self.sqlite_guard();
        self.run(self.conn()?, |c| c.inner.transaction(f))
    }

    /// Run `f`, steps of a batch, on a connection of the batch pool ([`Store::with_batch_pool`],
    /// else the main pool), outside a transaction: `f` opens one for several steps. On
    /// PostgreSQL a statement that failed leaves that transaction aborted even if its error
    /// was handled, and `COMMIT` then rolls back without saying so: check [`still_open`]
    /// before it.
    pub fn on_batch_connection<R>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> StoreResult<R>,
    ) -> StoreResult<R> {
        let _guard = self.sqlite_guard();
        let pool = self.batch_pool.as_ref().unwrap_or(&self.pool);
        self.run(self.checkout(pool)?, |c| f(c))
    }

    /// Apply pending migrations; returns the versions applied.
    pub fn migrate(&self) -> StoreResult<Vec<String>> {
        let _guard = self.sqlite_writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut conn = self.conn()?;
        let applied = match &mut conn.inner {
            DbConnection::Pg(c) => run_pending(c, PG_MIGRATIONS)?,
            DbConnection::Sqlite(c) => run_pending(c, SQLITE_MIGRATIONS)?,
        };
        Ok(applied)
    }

    /// How many embedded migrations are not applied yet.
    pub fn pending_migrations(&self) -> StoreResult<usize> {
        let mut conn = self.conn()?;
        let n = match &mut conn.inner {
            DbConnection::Pg(c) => c.pending_migrations(PG_MIGRATIONS).map(|v| v.len()),
            DbConnection::Sqlite(c) => c.pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        };
        n.map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// A cheap round trip, for readiness.
    pub fn ping(&self) -> StoreResult<()> {
        self.run(self.conn()?, |c| Ok(c.inner.batch_execute("SELECT 1")?))
    }
}

fn run_pending<C>(conn: &mut C, migrations: EmbeddedMigrations) -> StoreResult<Vec<String>>
where
    C: MigrationHarness<C::Backend> + Connection,
{
    conn.run_pending_migrations(migrations)
        .map(|v| v.iter().map(|m| m.to_string()).collect())
        .map_err(|e| StoreError::Other(format!("migration failed: {e}")))
}

/// Advisory lock keys of the periodic tasks (one runs at a time across all workers).
pub const LOCK_KEY_ROTATION: i64 = 0x6369_6261_0001;
pub const LOCK_EXPIRY: i64 = 0x6369_6261_0002;
pub const LOCK_RETENTION: i64 = 0x6369_6261_0003;

/// Run `f` in a transaction on `conn` (a savepoint inside one already open), for callers
/// outside this crate that have a connection and no diesel of their own.
pub fn transaction<R>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> StoreResult<R>,
) -> StoreResult<R> {
    conn.transaction(f)
}

/// Take a transaction-scoped advisory lock without waiting (PostgreSQL); false when another
/// session holds it. On SQLite writers are serialized already: always true.
pub fn try_advisory_xact_lock(conn: &mut DbConnection, key: i64) -> StoreResult<bool> {
    diesel::define_sql_function! {
        fn pg_try_advisory_xact_lock(key: diesel::sql_types::BigInt) -> diesel::sql_types::Bool;
    }
    match conn {
        DbConnection::Pg(pg) => {
            use diesel::RunQueryDsl;
            Ok(diesel::select(pg_try_advisory_xact_lock(key)).get_result(pg)?)
        }
        DbConnection::Sqlite(_) => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://ciba.db").unwrap().backend,
            Backend::Sqlite
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:/tmp/x.db").unwrap().connect,
            "/tmp/x.db"
        );
        assert_eq!(
            DatabaseUrl::parse("postgres://u:p@h/db").unwrap().backend,
            Backend::Postgres
        );
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert!(
            !format!("{:?}", DatabaseUrl::parse("postgres://u:pw@h/db").unwrap()).contains("pw")
        );
    }
}
