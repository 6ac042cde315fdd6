//! End-to-end harness: a real `ciba-api` process on its own database, spoken to over HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod app;
pub mod cluster;
pub mod keys;
pub mod pg;
pub mod proxy;
mod reply;
pub mod tls;
pub mod worker;

pub use reply::Reply;

use ciba_store::testing::TestDatabase;
pub use ciba_store::Backend;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Run an async scenario `fn(Backend)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$scenario($crate::support::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$scenario($crate::support::Backend::Postgres).await
                }
            }
        )*
    };
}

pub const TEST_KEK: &str = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=";

pub struct TestServer {
    pub db: TestDatabase,
    pub base: String,
    pub port: u16,
    pub http: reqwest::Client,
    pub log_path: PathBuf,
    /// `http` or `https` (the server terminates TLS itself).
    scheme: &'static str,
    /// Milliseconds the server's clock runs ahead of the wall clock (`CIBA_TEST_CLOCK_FILE`,
    /// honoured by the binaries cargo builds for tests): tests move time instead of sleeping.
    clock_file: PathBuf,
    extra_env: Vec<(String, String)>,
    child: Option<Child>,
}

/// `client_assertion_type` of a JWT client assertion (RFC 7523), our own access token
/// presented as one included.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A form authenticated by the JWT `assertion`, with `fields` after it.
pub fn with_assertion<'a>(
    assertion: &'a str,
    fields: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    form.extend_from_slice(fields);
    form
}

/// SIGTERM `child` and wait up to `limit`; returns whether it exited cleanly (else it is killed).
pub fn terminate(child: &mut Child, limit: Duration) -> bool {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    false
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, &[]).await
    }

    pub async fn start_with(backend: Backend, env: &[(&str, &str)]) -> Self {
        Self::start_on(TestDatabase::create(backend), env).await
    }

    /// [`TestServer::start_with`] on a database made by the caller (another server's).
    pub async fn start_on(db: TestDatabase, env: &[(&str, &str)]) -> Self {
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        // Idle connections are dropped well before the server's 10 s header deadline closes
        // them: a request sent on one the server is closing fails (`IncompleteMessage`), as
        // a sandbox test once did on a loaded CI machine after a slow CLI call.
        let http = ciba_runtime::outbound::builder(Duration::from_secs(5), Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(4))
            .build()
            .unwrap();
        Self::start_full(db, env, "http", http).await
    }

    /// A server that terminates TLS with `pki`'s certificates and asks for client
    /// certificates from its CA; `http` trusts the CA and presents no certificate.
    pub async fn start_tls(backend: Backend, pki: &tls::Pki, env: &[(&str, &str)]) -> Self {
        let mut all = pki.server_env();
        all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        Self::start_full(TestDatabase::create(backend), all, "https", pki.http(None)).await
    }

    async fn start_full(
        db: TestDatabase,
        extra_env: Vec<(String, String)>,
        scheme: &'static str,
        http: reqwest::Client,
    ) -> Self {
        let port = free_port();
        let log_path =
            std::env::temp_dir().join(format!("ciba-test-log-{port}-{}.log", std::process::id()));
        let mut server = Self {
            db,
            base: format!("{scheme}://127.0.0.1:{port}"),
            port,
            http,
            clock_file: std::env::temp_dir().join(format!(
                "ciba-test-clock-{port}-{}-{}",
                std::process::id(),
                app::jti()
            )),
            log_path,
            scheme,
            extra_env,
            child: None,
        };
        let out = server.command().arg("migrate").output().unwrap();
        assert!(
            out.status.success(),
            "migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The port was free when chosen; another process may take it before the server binds.
        for _ in 0..5 {
            if server.try_spawn().await {
                return server;
            }
            server.port = free_port();
            server.base = format!("{}://127.0.0.1:{}", server.scheme, server.port);
            let _ = std::fs::remove_file(&server.log_path);
        }
        panic!("could not start the server: {}", server.logs());
    }

    /// A command for the binary with this server's environment.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ciba-api"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.db.url)
            .env("CIBA_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("CIBA_ISSUER", &self.base)
            .env("CIBA_KEY_ENCRYPTION_KEY", TEST_KEK)
            .env("CIBA_TEST_CLOCK_FILE", &self.clock_file)
            .env("CIBA_LOG_FORMAT", "json")
            .env("RUST_LOG", "info");
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    async fn spawn(&mut self) {
        assert!(
            self.try_spawn().await,
            "server could not listen: {}",
            self.logs()
        );
    }

    /// Start the server and wait until it is ready. False when its port was taken.
    async fn try_spawn(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let child = self
            .command()
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.http.get(self.url("/readyz")).send().await {
                if r.status() == 200 {
                    return true;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                if self.logs().contains("cannot listen") {
                    return false;
                }
                panic!("server exited with {status}: {}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "server not ready: {}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Set (or replace) a variable of this server's environment, for its next start and its
    /// admin CLI.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.extra_env.retain(|(k, _)| k != name);
        self.extra_env.push((name.to_owned(), value.to_owned()));
    }

    /// Move the server's clock (and its admin CLI's) forward by `by`.
    pub fn advance(&self, by: Duration) {
        let offset = self.clock_offset_ms() + by.as_millis() as i64;
        std::fs::write(&self.clock_file, offset.to_string()).unwrap();
    }

    fn clock_offset_ms(&self) -> i64 {
        std::fs::read_to_string(&self.clock_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The server's clock, in milliseconds.
    pub fn now_ms(&self) -> i64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        wall + self.clock_offset_ms()
    }

    /// Move the server's clock to 100 ms into the next fixed window of `window` (the abuse
    /// limits count in windows aligned to the clock).
    pub fn fresh_window(&self, window: Duration) {
        let w = window.as_millis() as i64;
        let into = self.now_ms().rem_euclid(w);
        self.advance(Duration::from_millis((w - into + 100) as u64));
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Send SIGTERM without waiting.
    pub fn signal_term(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
    }

    /// Send SIGTERM and wait for the process to exit; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        match self.child.take() {
            Some(mut child) => terminate(&mut child, Duration::from_secs(15)),
            None => true,
        }
    }

    pub async fn restart(&mut self) {
        assert!(self.stop(), "server did not stop cleanly");
        self.spawn().await;
    }

    /// Stop the server and start it again with its present environment, which must make it
    /// refuse to start (`ok` false: it exits with an error naming the key-encryption key)
    /// or start. Left stopped when refused.
    pub async fn restart_refused_or_ok(&mut self, ok: bool) {
        assert!(self.stop(), "server did not stop cleanly");
        if ok {
            return self.spawn().await;
        }
        let out = self.command().output().unwrap();
        assert!(!out.status.success(), "the server started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("CIBA_KEY_ENCRYPTION_KEY"), "{stderr}");
    }

    /// `ciba-api admin --json ARGS`; panics with stderr on failure.
    pub fn admin(&self, args: &[&str]) -> Value {
        let out = self.admin_raw(args);
        assert!(
            out.status.success(),
            "admin {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn admin_raw(&self, args: &[&str]) -> std::process::Output {
        self.command()
            .arg("admin")
            .arg("--json")
            .args(args)
            .output()
            .unwrap()
    }

    /// A store on this server's database, for arranging state the API cannot reach yet.
    pub fn store(&self) -> ciba_store::Store {
        ciba_store::Store::open(&ciba_store::DatabaseUrl::parse(&self.db.url).unwrap(), 2).unwrap()
    }

    pub async fn post_json(&self, path: &str, bearer: Option<&str>, body: &Value) -> Reply {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        Reply::read(req.send().await.unwrap()).await
    }

    pub async fn get_bearer(&self, path: &str, bearer: &str) -> Reply {
        let req = self.http.get(self.url(path)).bearer_auth(bearer);
        Reply::read(req.send().await.unwrap()).await
    }

    /// Register a client; returns (client_id, client_secret).
    pub fn create_client(&self, scope: &str, extra: &[&str]) -> (String, String) {
        let mut args = vec!["clients", "create", "--name", "Test Shop", "--scope", scope];
        args.extend_from_slice(extra);
        let v = self.admin(&args);
        (
            v["client_id"].as_str().unwrap().to_owned(),
            v["client_secret"].as_str().unwrap().to_owned(),
        )
    }

    /// Register a client whose method has no secret; returns its client_id.
    pub fn create_client_without_secret(&self, scope: &str, extra: &[&str]) -> String {
        let mut args = vec!["clients", "create", "--name", "Test Shop", "--scope", scope];
        args.extend_from_slice(extra);
        let v = self.admin(&args);
        assert!(v.get("client_secret").is_none(), "{v}");
        v["client_id"].as_str().unwrap().to_owned()
    }

    /// POST `form` url-encoded (as the OAuth endpoints take it), with Basic `auth`.
    pub async fn post(
        &self,
        path: &str,
        auth: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> Reply {
        let mut req = self.http.post(self.url(path)).form(form);
        if let Some((id, secret)) = auth {
            req = req.basic_auth(id, Some(secret));
        }
        Reply::read(req.send().await.unwrap()).await
    }

    /// The body of a GET of a full URL (this server's, or a worker's), as text.
    pub async fn get_text(&self, url: &str) -> String {
        let resp = self.http.get(url).send().await.unwrap();
        resp.text().await.unwrap()
    }

    /// This server's Prometheus text.
    pub async fn metrics(&self) -> String {
        self.get_text(&self.url("/metrics")).await
    }

    /// What `send` answered, and the database reads and writes it made (`ciba_db_trips_total`).
    pub async fn trips_of(
        &self,
        send: impl std::future::Future<Output = Reply>,
    ) -> (Reply, f64, f64) {
        let (r0, w0) = (self.db_trips("read").await, self.db_trips("write").await);
        let reply = send.await;
        let (r1, w1) = (self.db_trips("read").await, self.db_trips("write").await);
        (reply, r1 - r0, w1 - w0)
    }

    /// `ciba_db_trips_total` of `kind` (read, write, soft) so far.
    pub async fn db_trips(&self, kind: &str) -> f64 {
        let prefix = format!("ciba_db_trips_total{{kind=\"{kind}\"}} ");
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    }

    pub async fn get(&self, path: &str) -> Reply {
        Reply::read(self.http.get(self.url(path)).send().await.unwrap()).await
    }

    /// An access token by `client_credentials` with Basic authentication.
    pub async fn access_token(&self, id: &str, secret: &str, scope: &str) -> String {
        let r = self
            .post(
                "/oidc/v1/token",
                Some((id, secret)),
                &[("grant_type", "client_credentials"), ("scope", scope)],
            )
            .await;
        r.ok();
        r.str("access_token").to_owned()
    }
}

/// Another `ciba-api` process on a server's database, with the same issuer and keys.
pub struct Replica {
    pub base: String,
    child: Child,
    log_path: PathBuf,
}

impl Replica {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

impl TestServer {
    /// Start a second API process on this server's database and wait until it is ready.
    pub async fn replica(&self) -> Replica {
        let port = free_port();
        let log_path = std::env::temp_dir().join(format!(
            "ciba-test-replica-{port}-{}.log",
            std::process::id()
        ));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = self
            .command()
            .env("CIBA_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let replica = Replica {
            base: format!("http://127.0.0.1:{port}"),
            child,
            log_path,
        };
        await_ready(&self.http, &replica.url("/readyz"), || replica.logs()).await;
        replica
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.log_path);
        let _ = std::fs::remove_file(&self.clock_file);
    }
}

/// Wait (at most 30 s) until `readyz` answers 200; panics with `logs()` otherwise.
pub async fn await_ready(http: &reqwest::Client, readyz: &str, logs: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(readyz).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "replica not ready: {}", logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
