//! Issue 24's cluster: two `ciba-api` and two `ciba-worker` processes on one PostgreSQL
//! database, every process behind a [`Proxy`] that can delay, cut or black-hole its database
//! connections; merchants send each request to a random replica (and, as a load balancer
//! does, to the other one when a replica refuses the connection).

use super::pg::PrivatePg;
use super::proxy::{Mode, Proxy};
use super::worker::{Receiver, WorkerProcess};
use super::{free_port, terminate, Reply, TestServer};
use ciba_store::testing::{pg_admin_url, TestDatabase};
use ciba_store::Backend;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Short timings, so that hundreds of flows finish within a scenario's minute.
pub const ENV: &[(&str, &str)] = &[
    ("CIBA_POLL_INTERVAL", "1"),
    ("CIBA_AUTH_REQUEST_TTL", "12"),
    ("CIBA_EXPIRY_INTERVAL", "1"),
    ("CIBA_JOB_LEASE", "5"),
    ("CIBA_JOB_BACKOFF_BASE", "1"),
    ("CIBA_JOB_MAX_ATTEMPTS", "20"),
    ("CIBA_ALLOW_INSECURE_CALLBACKS", "true"),
    ("CIBA_LIMIT_USER_STARTS", "100000/60"),
    ("CIBA_LIMIT_CLIENT_STARTS", "100000/60"),
    ("CIBA_MAX_CONNECTIONS_PER_ADDRESS", "4096"),
    ("CIBA_DB_MAX_CONNECTIONS", "8"),
    ("CIBA_SHUTDOWN_TIMEOUT", "10"),
];

/// A merchant's request timeout: the API answers within its 3 s database deadline, and
/// this leaves slack for a loaded 2-core CI machine.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);

/// One more `ciba-api` process on the cluster's database.
pub struct Api {
    pub port: u16,
    child: Option<Child>,
    log_path: PathBuf,
}

impl Api {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM without waiting.
    pub fn term(&self) {
        if let Some(c) = &self.child {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
    }

    /// Wait for the process to exit (after [`Api::term`]); whether it exited cleanly.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        match self.child.take() {
            Some(mut c) => terminate(&mut c, limit),
            None => true,
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

pub struct Cluster {
    /// Replica 0 (its process), the admin CLI, the issuer, the clock.
    pub srv: TestServer,
    /// Replica 1.
    pub api: Api,
    pub workers: Vec<WorkerProcess>,
    pub proxy: Proxy,
    /// The private PostgreSQL server, when the scenario restarts it.
    pub pg: Option<PrivatePg>,
    pub receiver: Receiver,
    pub http: reqwest::Client,
}

impl Cluster {
    /// On the shared PostgreSQL (`private` false), or on a private server it may restart.
    pub async fn start(private: bool) -> Self {
        let pg = private.then(PrivatePg::start);
        let admin = pg.as_ref().map_or_else(pg_admin_url, |p| p.admin_url());
        let db = TestDatabase::create_on(Backend::Postgres, &admin);
        let proxy = Proxy::start(upstream_of(&db.url)).await;
        let through = proxy.url_for(&db.url);
        let mut env: Vec<(&str, &str)> = ENV.to_vec();
        env.push(("DATABASE_URL", &through));
        let srv = TestServer::start_on(db, &env).await;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap();
        let api = start_api(&srv, &http, free_port()).await;
        let mut workers = Vec::new();
        for _ in 0..2 {
            workers.push(srv.worker(&[]).await);
        }
        Self {
            srv,
            api,
            workers,
            proxy,
            pg,
            receiver: Receiver::start().await,
            http,
        }
    }

    pub fn bases(&self) -> Vec<String> {
        vec![self.srv.base.clone(), self.api.base()]
    }

    pub async fn restart_api(&mut self) {
        let port = self.api.port;
        self.api = start_api(&self.srv, &self.http, port).await;
    }

    pub async fn restart_worker(&mut self, i: usize) {
        self.workers[i] = self.srv.worker(&[]).await;
    }

    pub fn set_db(&self, mode: Mode) {
        self.proxy.set(mode);
    }

    /// The readiness of every replica: (status of replica 0, of replica 1).
    pub async fn readiness(&self) -> Vec<u16> {
        let mut out = Vec::new();
        for b in self.bases() {
            let r = self.http.get(format!("{b}/readyz")).send().await;
            out.push(r.map(|r| r.status().as_u16()).unwrap_or(0));
        }
        out
    }

    /// Wait until both replicas are ready; how long it took.
    pub async fn wait_ready(&self, limit: Duration) -> Duration {
        let started = Instant::now();
        while self.readiness().await != [200, 200] {
            assert!(
                started.elapsed() < limit,
                "not ready after {limit:?}: {:?}\n{}",
                self.readiness().await,
                self.api.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        started.elapsed()
    }
}

async fn start_api(srv: &TestServer, http: &reqwest::Client, port: u16) -> Api {
    let log_path = std::env::temp_dir().join(format!("ciba-cluster-api-{port}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let child = srv
        .command()
        .env("CIBA_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let api = Api {
        port,
        child: Some(child),
        log_path,
    };
    super::await_ready(http, &format!("{}/readyz", api.base()), || api.logs()).await;
    api
}

fn upstream_of(url: &str) -> SocketAddr {
    let host = url.split_once('@').unwrap().1.split_once('/').unwrap().0;
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    host.replace("localhost", "127.0.0.1").parse().unwrap()
}

/// What a merchant saw of one request.
pub enum Sent {
    Answered(Reply),
    /// Refused by every replica (none listening).
    Refused,
    /// Sent, but no answer: the connection broke, or [`REQUEST_TIMEOUT`] passed.
    Lost(String),
}

impl std::fmt::Debug for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sent::Answered(r) => write!(f, "answered {r}"),
            Sent::Refused => f.write_str("refused"),
            Sent::Lost(e) => write!(f, "lost: {e}"),
        }
    }
}

/// Send a request to a random replica; on a refused connection, to the others in turn.
pub async fn send(
    http: &reqwest::Client,
    bases: &[String],
    build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
) -> Sent {
    let first = random_below(bases.len());
    for k in 0..bases.len() {
        let base = &bases[(first + k) % bases.len()];
        match build(http, base).send().await {
            Ok(resp) => return Sent::Answered(Reply::read(resp).await),
            Err(e) if e.is_connect() => continue,
            Err(e) => return Sent::Lost(e.to_string()),
        }
    }
    Sent::Refused
}

/// Every 5xx must be 503 `temporarily_unavailable` with `Retry-After`.
pub fn check_5xx(r: &Reply) -> Result<(), String> {
    if r.status < 500 {
        return Ok(());
    }
    if r.status == 503
        && r.error() == "temporarily_unavailable"
        && r.header("retry-after").is_some()
    {
        return Ok(());
    }
    Err(format!("{r} retry-after={:?}", r.header("retry-after")))
}

/// A random number below `n` (from std's randomly keyed hasher: no extra dependency).
pub fn random_below(n: usize) -> usize {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    (h.finish() % n as u64) as usize
}
