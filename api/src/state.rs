//! Shared state, injected into handlers by `with_state()`.

use crate::auth::external::ExternalIssuers;
use crate::auth::remembered::Remembered;
use crate::cache::TtlCache;
use crate::crypto::hash_pool::HashPool;
use crate::crypto::password::SecretVerifier;
use crate::error::{ApiError, ApiResult};
use crate::group_commit::{GroupCommit, ThreadEnded};
use crate::limits::BlockedAddresses;
use crate::limits::Counts;
use crate::metrics::Metrics;
use crate::pg_writer::PgWriters;
use crate::poll_batch::PollBatcher;
use crate::sqlite_writer::{self, SqliteWriter};
use ciba_domain::error::OAuthError;
pub use ciba_domain::ids::MAX_ID_LEN;
use ciba_runtime::config::Config;
use ciba_runtime::crypto::kek::Kek;
use ciba_runtime::crypto::keyring::KeyRing;
use ciba_store::auth_requests::AuthRequestRow;
use ciba_store::clients::{self, ClientRow};
use ciba_store::permissions::PermissionRow;
use ciba_store::{Backend, DbConnection, Store, StoreError, StoreResult};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use ciba_runtime::clock::{now, now_ms};

/// The longest a request waits for the database (a connection, its statements, the poll
/// batch): past it, the answer is 503 `temporarily_unavailable` with `Retry-After`, never a
/// hang while the database is unreachable or its network black-holes packets. A transaction
/// whose caller has given up rolls back instead of committing (see [`AppState::db_write`]).
pub const DB_DEADLINE: Duration = Duration::from_secs(3);

/// What a write transaction fails with when its request has given up on it.
const ABANDONED: &str = "the request gave up waiting for the database";

const CLIENT_CACHE_ENTRIES: usize = 10_000;
const CLIENT_CACHE_BYTES: usize = 16 << 20;

pub struct Inner {
    pub config: Config,
    pub store: Store,
    pub kek: Kek,
    pub keys: KeyRing,
    pub metrics: Metrics,
    pub secrets: SecretVerifier,
    pub external: ExternalIssuers,
    /// JWK sets clients publish at their `jwks_uri`.
    pub client_jwks: crate::auth::remote_jwks::RemoteJwks,
    /// Source addresses over their failed-authentication limit (contract §10).
    pub blocked: BlockedAddresses,
    /// Abuse-limit numbers reserved ahead ([`crate::limit_leases`]).
    pub leases: crate::limit_leases::Leases,
    client_cache: TtlCache<ClientRow>,
    /// Ids looked up and not found, apart from the rows: a flood of made-up ids churns this
    /// cache only, never the registered clients' rows.
    unknown_clients: TtlCache<()>,
    /// Our own access tokens whose signature was verified, by their SHA-256, with their
    /// claims and size: a merchant presents one token for many calls (twice per flow), and
    /// an ES256 verification was a tenth of a flow's API time. Kept as long as client rows
    /// (`CIBA_CLIENT_CACHE_TTL`); the claims' time checks run on every use.
    pub(crate) verified_tokens: Remembered,
    /// Permission tokens this process signed and has not seen back yet, by their SHA-256,
    /// with their claims: app-authorize (or bc-authorize) takes the entry out instead of
    /// verifying the signature it knows it made. A token presented to another replica, or
    /// after the entry left (`CIBA_CLIENT_CACHE_TTL`, or the cache full), is verified. Never
    /// consulted for any other kind of token.
    pub(crate) issued_permission_tokens: Remembered,
    /// Requests decided through this process and not polled since, by id: their next poll
    /// skips the poll batch (which only records polls of pending requests) and tries to
    /// redeem at once. A hint that picks the path, never the answer (the redemption's
    /// conditions and the stored row decide; a request decided through another replica
    /// takes the batch first).
    pub(crate) decided_here: TtlCache<()>,
    /// Requests started through this process and not decided yet, by link reference, with
    /// their permission: a decision here checks against them instead of reading them again.
    /// What they hold never changes once stored, but for the request's status, which the
    /// decision's write checks (see [`crate::service::device_app::context_for`]).
    pub(crate) started_here: TtlCache<Arc<StartedHere>>,
    /// Permissions registered through this process and not used yet, by id, with the user
    /// their hint named and that user's active devices then: app-authorize here matches the
    /// phone against them and claims the token and starts the request in one step, which
    /// checks the devices are still those ([`crate::service::authorize::start_known`]).
    pub(crate) registered_here: TtlCache<Arc<RegisteredHere>>,
    /// Active devices read lately, with their parsed keys, by id ([`devices_read_ttl`]):
    /// only for the decision, whose write checks the device is still active
    /// ([`crate::auth::device`]).
    pub(crate) devices_read: TtlCache<Arc<crate::auth::device::AuthenticatedDevice>>,
    schema_ready: AtomicBool,
    poll_batcher: OnceLock<Result<PollBatcher, String>>,
    counters: OnceLock<Result<GroupCommit<Counts>, String>>,
    /// SQLite only: the write steps' group commit ([`crate::sqlite_writer`]).
    writer: OnceLock<Result<SqliteWriter, String>>,
    /// PostgreSQL only: the single-statement write steps' group commit
    /// ([`crate::pg_writer`]).
    pg_writers: OnceLock<Result<PgWriters, String>>,
}

/// A request as it was stored when it started here, and its permission.
pub type StartedHere = (AuthRequestRow, PermissionRow);

/// How long a device read stays in `devices_read`: what the app does between its view and
/// its decision (the user reads and approves) takes longer than a client row is cached,
/// and what may change of a device (its status) is checked by the decision's write; as
/// long as a device JWT may live, unless caching is off (`CIBA_CLIENT_CACHE_TTL=0`).
fn devices_read_ttl(client_cache_ttl: i64) -> Duration {
    let secs = match client_cache_ttl {
        0 => 0,
        ttl => ttl.max(crate::auth::device::MAX_DEVICE_JWT_LIFETIME),
    };
    Duration::from_secs(secs as u64)
}

/// A permission as it was registered here, its user and their active devices then.
pub struct RegisteredHere {
    pub permission: PermissionRow,
    pub user_sub: String,
    pub devices: Vec<ciba_store::users::DeviceRow>,
}

/// What a [`RegisteredHere`] weighs, roughly.
fn registered_size(r: &Arc<RegisteredHere>) -> usize {
    std::mem::size_of::<RegisteredHere>()
        + 8 * 64
        + permission_size(&r.permission)
        + r.devices
            .iter()
            .map(|d| {
                256 + d.public_jwk.len()
                    + d.model.len()
                    + d.platform.len()
                    + d.manufacturer.len()
                    + d.name.as_ref().map_or(0, String::len)
            })
            .sum::<usize>()
}

/// The longer texts of a permission row.
fn permission_size(p: &PermissionRow) -> usize {
    let opt = |o: &Option<String>| o.as_ref().map_or(0, String::len);
    p.statement.len()
        + p.digest.len()
        + p.login_hint.len()
        + p.intents.len()
        + opt(&p.app_callback_uri)
        + opt(&p.acr_values)
}

/// What a [`StartedHere`] weighs, roughly: its rows and their longer texts.
fn started_size(s: &Arc<StartedHere>) -> usize {
    let (r, p) = &**s;
    let opt = |o: &Option<String>| o.as_ref().map_or(0, String::len);
    std::mem::size_of::<StartedHere>()
        + 8 * MAX_ID_LEN.min(64)
        + permission_size(p)
        + opt(&r.binding_message)
        + opt(&r.client_notification_token)
        + opt(&r.allowed_devices)
        + r.scope.len()
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Fails only when the password-hashing threads cannot be started.
    pub fn new(config: Config, store: Store) -> Result<Self, String> {
        let kek = config.kek();
        let external =
            ExternalIssuers::new(config.external_issuers.clone(), config.external_jwks_ttl);
        let hashing = HashPool::start(config.server.hash_threads, config.server.hash_queue)
            .map_err(|e| format!("cannot start the password hashing threads: {e}"))?;
        Ok(Self(Arc::new(Inner {
            keys: KeyRing::new(kek.clone()),
            kek,
            metrics: Metrics::new(),
            secrets: SecretVerifier::new(hashing),
            external,
            client_jwks: crate::auth::remote_jwks::RemoteJwks::new(config.external_jwks_ttl),
            blocked: BlockedAddresses::default(),
            leases: Default::default(),
            client_cache: TtlCache::new(
                Duration::from_secs(config.client_cache_ttl as u64),
                CLIENT_CACHE_ENTRIES,
                CLIENT_CACHE_BYTES,
                MAX_ID_LEN,
                ClientRow::approximate_size,
            ),
            unknown_clients: TtlCache::new(
                Duration::from_secs(config.client_cache_ttl as u64),
                CLIENT_CACHE_ENTRIES,
                CLIENT_CACHE_BYTES / 4,
                MAX_ID_LEN,
                |_| 0,
            ),
            verified_tokens: Remembered::new(
                Duration::from_secs(config.client_cache_ttl as u64),
                CLIENT_CACHE_ENTRIES,
                CLIENT_CACHE_BYTES / 4,
            ),
            issued_permission_tokens: Remembered::new(
                Duration::from_secs(config.client_cache_ttl as u64),
                CLIENT_CACHE_ENTRIES,
                CLIENT_CACHE_BYTES / 4,
            ),
            decided_here: TtlCache::new(
                Duration::from_secs(config.auth_request_max_ttl.max(1) as u64),
                CLIENT_CACHE_ENTRIES,
                CLIENT_CACHE_BYTES / 16,
                MAX_ID_LEN,
                |_| 0,
            ),
            started_here: TtlCache::new(
                Duration::from_secs(config.auth_request_max_ttl.max(1) as u64),
                CLIENT_CACHE_ENTRIES,
                CLIENT_CACHE_BYTES / 4,
                MAX_ID_LEN,
                started_size,
            ),
            registered_here: TtlCache::new(
                Duration::from_secs(config.client_cache_ttl as u64),
                CLIENT_CACHE_ENTRIES,
                CLIENT_CACHE_BYTES / 4,
                MAX_ID_LEN,
                registered_size,
            ),
            devices_read: TtlCache::new(
                devices_read_ttl(config.client_cache_ttl),
                CLIENT_CACHE_ENTRIES,
                CLIENT_CACHE_BYTES / 8,
                MAX_ID_LEN,
                |d| d.device.public_jwk.len() + 512,
            ),
            store,
            config,
            schema_ready: AtomicBool::new(false),
            poll_batcher: OnceLock::new(),
            counters: OnceLock::new(),
            writer: OnceLock::new(),
            pg_writers: OnceLock::new(),
        })))
    }

    /// Run `f` on a pooled connection in the blocking pool.
    pub async fn db<R, F>(&self, f: F) -> ApiResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut DbConnection) -> StoreResult<R> + Send + 'static,
    {
        self.metrics.db_trips.read.inc();
        let store = self.store.clone();
        bounded(blocking(move || store.read(f).map_err(ApiError::from))).await
    }

    /// A write step that changes only rows of its own flow (one statement, or a few that mean
    /// the same when run again), committed with the others of its batch: a job of SQLite's
    /// writer thread, or of PostgreSQL's writer threads ([`crate::pg_writer`], where a job may
    /// run again after its batch was rolled back for another's failure: hence `FnMut`).
    pub async fn db_write_one<R, F>(&self, f: F) -> ApiResult<R>
    where
        R: Send + 'static,
        F: FnMut(&mut DbConnection) -> StoreResult<R> + Send + 'static,
    {
        self.metrics.db_trips.write.inc();
        if let Some(writer) = self.sqlite_writer()? {
            return sqlite_writer::submit_one(writer, f)
                .await?
                .map_err(ApiError::from);
        }
        self.pg_writers()?.submit(f).await?.map_err(ApiError::from)
    }

    /// PostgreSQL's writer threads, started on first use.
    fn pg_writers(&self) -> ApiResult<&PgWriters> {
        started(&self.pg_writers, || {
            let sizes = &self.metrics.pg_write_batch_size;
            PgWriters::start("ciba-pg-write", self.config.db_writers, &self.store, sizes)
        })
    }

    /// A write of soft state (poll pacing): no durable commit wait on PostgreSQL.
    pub async fn db_soft<R, F>(&self, f: F) -> ApiResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut DbConnection) -> StoreResult<R> + Send + 'static,
    {
        self.metrics.db_trips.soft.inc();
        if let Some(writer) = self.sqlite_writer()? {
            return sqlite_writer::submit(writer, f)
                .await?
                .map_err(ApiError::from);
        }
        let store = self.store.clone();
        bounded(blocking(move || {
            store.write_soft(f).map_err(ApiError::from)
        }))
        .await
    }

    /// SQLite's writer thread, started on first use; `None` on PostgreSQL.
    fn sqlite_writer(&self) -> ApiResult<Option<&SqliteWriter>> {
        if self.store.backend() != Backend::Sqlite {
            return Ok(None);
        }
        started(&self.writer, || {
            let sizes = self.metrics.write_batch_size.clone();
            SqliteWriter::start("ciba-sqlite-write", self.store.clone(), sizes)
        })
        .map(Some)
    }

    /// The polling hot path's group commit, its thread started on first use.
    pub fn poll_batcher(&self) -> ApiResult<&PollBatcher> {
        started(&self.poll_batcher, || {
            let sizes = self.metrics.poll_batch_size.clone();
            PollBatcher::start("ciba-poll-batch", self.store.clone(), sizes)
        })
    }

    /// The abuse limits' counters (group commit), the thread started on first use.
    pub fn counters(&self) -> ApiResult<&GroupCommit<Counts>> {
        started(&self.counters, || {
            let sizes = self.metrics.limit_batch_size.clone();
            GroupCommit::start("ciba-limit-batch", self.store.clone(), sizes)
        })
    }

    /// The batching threads that were started: wait for them to end at shutdown, after the
    /// last handle on the state is gone, so the connection pools close cleanly.
    pub fn batch_threads_ended(&self) -> Vec<ThreadEnded> {
        let polls = self.poll_batcher.get().and_then(|b| b.as_ref().ok());
        let counts = self.counters.get().and_then(|b| b.as_ref().ok());
        let writes = self.writer.get().and_then(|b| b.as_ref().ok());
        let pg_writes = self.pg_writers.get().and_then(|b| b.as_ref().ok());
        polls
            .map(GroupCommit::ended)
            .into_iter()
            .chain(counts.map(GroupCommit::ended))
            .chain(writes.map(GroupCommit::ended))
            .chain(pg_writes.into_iter().flat_map(PgWriters::ended))
            .collect()
    }

    /// The cached answer for client `id`, if memory has one (no database read).
    pub fn client_row_cached(&self, id: &str) -> Option<Option<ClientRow>> {
        match self.client_cache.get(id) {
            Some(row) => Some(Some(row)),
            None => self.unknown_clients.get(id).map(|()| None),
        }
    }

    /// A registered client row, cached for a few seconds (the polling hot path reads it on
    /// every request). Disabling a client takes effect within `CIBA_CLIENT_CACHE_TTL` seconds.
    pub async fn client_row(&self, id: &str) -> ApiResult<Option<ClientRow>> {
        // No client id is this long: refused before any lookup, never cached.
        if id.len() > MAX_ID_LEN {
            return Ok(None);
        }
        if let Some(hit) = self.client_row_cached(id) {
            return Ok(hit);
        }
        let key = id.to_owned();
        let row = self.db(move |c| clients::find(c, &key)).await?;
        match &row {
            Some(r) => self.client_cache.put(id, r.clone()),
            None => self.unknown_clients.put(id, ()),
        }
        Ok(row)
    }

    /// The bounds of every HTTP connection (contract §10).
    pub fn server_limits(&self) -> crate::http::serve::Limits {
        let s = &self.config.server;
        crate::http::serve::Limits {
            max_connections: s.max_connections,
            max_connections_per_address: s.max_connections_per_address,
            header_timeout: Duration::from_secs(s.header_timeout_secs),
            body_timeout: Duration::from_secs(s.body_timeout_secs),
            max_header_bytes: s.max_header_bytes,
            trusted_proxies: Arc::new(self.config.trusted_proxies.clone()),
        }
    }

    /// Publish the caches' sizes to the metrics (at each scrape).
    pub fn observe_caches(&self) {
        let m = &self.metrics;
        for (name, size) in [
            ("clients", self.client_cache.size()),
            ("unknown_clients", self.unknown_clients.size()),
            ("verified_tokens", self.verified_tokens.size()),
            (
                "issued_permission_tokens",
                self.issued_permission_tokens.size(),
            ),
            ("decided_here", self.decided_here.size()),
            ("started_here", self.started_here.size()),
            ("registered_here", self.registered_here.size()),
            ("devices_read", self.devices_read.size()),
        ] {
            m.cache_entries
                .with_label_values(&[name])
                .set(size.entries as i64);
            m.cache_bytes
                .with_label_values(&[name])
                .set(size.bytes as i64);
        }
    }

    /// Run `f` in a write transaction (on SQLite, a job of the writer thread). A transaction
    /// whose request has given up on it by the time `f` is done rolls back.
    pub async fn db_write<R, F>(&self, f: F) -> ApiResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut DbConnection) -> StoreResult<R> + Send + 'static,
    {
        self.metrics.db_trips.write.inc();
        let abandoned = Arc::new(AtomicBool::new(false));
        let given_up = abandoned.clone();
        // Set when this future is dropped: by the deadline, or a client that went away.
        let _abandon = AbandonOnDrop(abandoned);
        let checked = move |conn: &mut DbConnection| {
            let r = f(conn)?;
            if given_up.load(Ordering::Acquire) {
                return Err(StoreError::Other(ABANDONED.into()));
            }
            Ok(r)
        };
        if let Some(writer) = self.sqlite_writer()? {
            return unless_abandoned(sqlite_writer::submit(writer, checked).await?);
        }
        let store = self.store.clone();
        bounded(blocking(move || unless_abandoned(store.write(checked)))).await
    }

    /// Ready when the database answers and every migration is applied (checked once).
    pub async fn ready(&self) -> bool {
        let store = self.store.clone();
        let known = self.schema_ready.load(Ordering::Relaxed);
        let ok = bounded(blocking(move || {
            store.ping()?;
            if !known && store.pending_migrations()? != 0 {
                return Ok(false);
            }
            Ok(true)
        }))
        .await
        .unwrap_or(false);
        if ok {
            self.schema_ready.store(true, Ordering::Relaxed);
        }
        ok
    }
}

/// The batching thread(s) in `cell`, started by `start` on first use.
fn started<T>(
    cell: &OnceLock<Result<T, String>>,
    start: impl FnOnce() -> std::io::Result<T>,
) -> ApiResult<&T> {
    let started = cell.get_or_init(|| start().map_err(|e| e.to_string()));
    started.as_ref().map_err(|e| {
        tracing::error!(error = %e, "cannot start a batching thread");
        ApiError::new(OAuthError::server_error())
    })
}

/// A write's result, its rollback for a request that gave up answered as unavailable.
fn unless_abandoned<R>(result: StoreResult<R>) -> ApiResult<R> {
    match result {
        Err(StoreError::Other(m)) if m == ABANDONED => {
            tracing::warn!("{ABANDONED}: rolled back");
            Err(OAuthError::unavailable().into())
        }
        other => other.map_err(ApiError::from),
    }
}

/// Sets its flag when dropped.
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// `work` on the database, or 503 `temporarily_unavailable` after [`DB_DEADLINE`].
pub async fn bounded<R>(work: impl std::future::Future<Output = ApiResult<R>>) -> ApiResult<R> {
    match tokio::time::timeout(DB_DEADLINE, work).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(
                deadline_ms = DB_DEADLINE.as_millis() as u64,
                "database unavailable: no answer within the deadline"
            );
            Err(OAuthError::unavailable().into())
        }
    }
}

/// Run blocking work (diesel, argon2) off the async threads.
pub async fn blocking<R, F>(f: F) -> ApiResult<R>
where
    R: Send + 'static,
    F: FnOnce() -> ApiResult<R> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "blocking task failed");
            Err(OAuthError::server_error().into())
        }
    }
}

/// A state on the test database `db`, with the settings in `vars` besides its URL and a
/// key-encryption key; migrated.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn test_state(
    db: &ciba_store::testing::TestDatabase,
    vars: &[(&str, &str)],
) -> AppState {
    let kek = (
        "CIBA_KEY_ENCRYPTION_KEY",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    );
    let all: std::collections::HashMap<String, String> = [("DATABASE_URL", db.url.as_str()), kek]
        .into_iter()
        .chain(vars.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let config = Config::from_map(&all).unwrap();
    let store = Store::open(&ciba_store::DatabaseUrl::parse(&db.url).unwrap(), 2).unwrap();
    store.migrate().unwrap();
    AppState::new(config, store).unwrap()
}
