//! A real `ciba-worker` process beside a [`TestServer`], and a local ping receiver.

use super::app::{nnin, App, Merchant, CALLBACK, IPHONE};
use super::TestServer;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warp::Filter;

/// The worker binary, built beside `ciba-api` (built on demand when only this package was).
pub fn worker_binary() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_ciba-api")).with_file_name("ciba-worker");
    if !bin.exists() {
        let ok = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "ciba-worker"])
            .status()
            .unwrap()
            .success();
        assert!(ok && bin.exists(), "cannot build ciba-worker");
    }
    bin
}

pub struct WorkerProcess {
    child: Option<Child>,
    pub port: u16,
    pub log_path: PathBuf,
}

/// Development mode for notification endpoints: plain http to loopback, and deliveries to
/// loopback addresses (the receivers of these tests listen on 127.0.0.1).
pub const INSECURE_CALLBACKS: (&str, &str) = ("CIBA_ALLOW_INSECURE_CALLBACKS", "true");

/// The worker as in production: https only, nothing on this network.
pub const SECURE_CALLBACKS: (&str, &str) = ("CIBA_ALLOW_INSECURE_CALLBACKS", "false");

impl TestServer {
    /// The worker's work in this process, on this server's database and environment plus
    /// `env`: a test runs one pass of a loop (`ciba_worker::periodic::*`) instead of starting
    /// a worker and waiting for its schedule. It runs on this server's clock: moved by
    /// [`TestServer::advance`] as the server's is.
    pub fn worker_in_process(&self, env: &[(&str, &str)]) -> ciba_worker::Ctx {
        let cmd = self.command();
        let mut vars: HashMap<String, String> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
            .collect();
        vars.insert(INSECURE_CALLBACKS.0.into(), INSECURE_CALLBACKS.1.into());
        for (k, v) in env {
            vars.insert((*k).into(), (*v).into());
        }
        let config = ciba_runtime::config::Config::from_map(&vars).unwrap();
        let store = ciba_store::Store::open(&config.database_url, 2).unwrap();
        let mut ctx = ciba_worker::Ctx::new(&config, store).unwrap();
        ctx.clock = ciba_runtime::clock::Clock::offset_by_file(&self.clock_file);
        ctx
    }

    /// Run `pass` (one of the worker's periodic passes) once, in-process, to its end; the
    /// context it ran in holds its metrics.
    pub async fn worker_pass(
        &self,
        env: &[(&str, &str)],
        pass: fn(&ciba_worker::Ctx),
    ) -> ciba_worker::Ctx {
        let ctx = self.worker_in_process(env);
        tokio::task::spawn_blocking(move || {
            pass(&ctx);
            ctx
        })
        .await
        .unwrap()
    }

    /// Start a worker on this server's database and environment, plus `env`. It runs with
    /// [`INSECURE_CALLBACKS`] unless `env` says otherwise ([`SECURE_CALLBACKS`]).
    pub async fn worker(&self, env: &[(&str, &str)]) -> WorkerProcess {
        let port = super::free_port();
        let log_path =
            std::env::temp_dir().join(format!("ciba-worker-log-{port}-{}.log", std::process::id()));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = self.command();
        cmd.env("CIBA_WORKER_LISTEN", format!("127.0.0.1:{port}"))
            .env("CIBA_WORKER_POLL_MS", "50")
            .env(INSECURE_CALLBACKS.0, INSECURE_CALLBACKS.1);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.env_remove("CIBA_LISTEN");
        let mut command = Command::new(worker_binary());
        command.env_clear();
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                command.env(k, v);
            }
        }
        let child = command.stdout(Stdio::null()).stderr(log).spawn().unwrap();
        let w = WorkerProcess {
            child: Some(child),
            port,
            log_path,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = self.http.get(w.url("/healthz")).send().await {
                if r.status() == 200 {
                    return w;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("worker not ready: {}", w.logs());
    }
}

impl WorkerProcess {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL: the worker gets no chance to finish or release anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns whether it exited cleanly within `limit`.
    pub fn stop(&mut self, limit: Duration) -> bool {
        match self.child.take() {
            Some(mut child) => super::terminate(&mut child, limit),
            None => true,
        }
    }

    pub async fn metrics(&self, srv: &TestServer) -> String {
        srv.get_text(&self.url("/metrics")).await
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// A ping client notified at `endpoint` (registered with [`INSECURE_CALLBACKS`], as the
/// test receivers are plain http on 127.0.0.1), and a user with the app enrolled.
pub async fn ping_client(srv: &TestServer, endpoint: &str, from: u32) -> (Merchant, App) {
    ping_client_with(srv, endpoint, from, &[INSECURE_CALLBACKS]).await
}

/// [`ping_client`] with the admin CLI run with `env`.
pub async fn ping_client_with(
    srv: &TestServer,
    endpoint: &str,
    from: u32,
    env: &[(&str, &str)],
) -> (Merchant, App) {
    let out = create_ping_client(srv, endpoint, env);
    assert!(
        out.status.success(),
        "creating a ping client for {endpoint} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (id, secret) = (
        v["client_id"].as_str().unwrap().to_owned(),
        v["client_secret"].as_str().unwrap().to_owned(),
    );
    let token = srv.access_token(&id, &secret, "permissions/ciba").await;
    let app = App::enroll(srv, &nnin(from), IPHONE).await;
    (Merchant { id, secret, token }, app)
}

/// `ciba-api admin --json clients create` of a ping client at `endpoint`, with `env`.
pub fn create_ping_client(
    srv: &TestServer,
    endpoint: &str,
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut cmd = srv.command();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args([
        "admin",
        "--json",
        "clients",
        "create",
        "--name",
        "Test Shop",
    ])
    .args([
        "--scope",
        "permissions/ciba openid",
        "--callback-uri",
        CALLBACK,
    ])
    .args([
        "--delivery-mode",
        "ping",
        "--notification-endpoint",
        endpoint,
    ])
    .output()
    .unwrap()
}

/// One notification as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: Value,
    /// When it arrived (before the scripted delay).
    pub at: Instant,
}

#[derive(Default)]
struct Script {
    /// Per path: statuses to answer in order; then 200.
    statuses: HashMap<String, VecDeque<u16>>,
    delay: Duration,
    received: Vec<Received>,
}

/// A local HTTP server that records pings and answers as scripted.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
}

/// A port that is bound but not listening: connections to it are refused, and no other
/// process can take it before [`Receiver::start_on`] starts listening on it.
pub struct DownPort(tokio::net::TcpSocket);

impl DownPort {
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
        Self(socket)
    }

    pub fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }
}

impl Receiver {
    /// Listen on any free port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        Self::serve(listener)
    }

    /// Start listening on a port that refused connections until now.
    pub async fn start_on(down: DownPort) -> Self {
        Self::serve(down.0.listen(64).unwrap())
    }

    fn serve(listener: tokio::net::TcpListener) -> Self {
        let script: Arc<Mutex<Script>> = Arc::default();
        let s = script.clone();
        let route = warp::path::full()
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::header::optional::<String>("content-type"))
            .and(warp::body::bytes())
            .then(
                move |path: warp::path::FullPath,
                      authorization: Option<String>,
                      content_type: Option<String>,
                      body: warp::hyper::body::Bytes| {
                    let s = s.clone();
                    async move {
                        let (status, delay) = {
                            let mut g = s.lock().unwrap();
                            g.received.push(Received {
                                path: path.as_str().to_owned(),
                                authorization,
                                content_type,
                                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                                at: Instant::now(),
                            });
                            let status = g
                                .statuses
                                .get_mut(path.as_str())
                                .and_then(VecDeque::pop_front)
                                .unwrap_or(200);
                            (status, g.delay)
                        };
                        tokio::time::sleep(delay).await;
                        let reply = warp::reply::with_status(
                            "",
                            warp::http::StatusCode::from_u16(status).unwrap(),
                        );
                        warp::reply::with_header(reply, "location", "/moved")
                    }
                },
            );
        let addr = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Self { addr, script }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn answer(&self, path: &str, statuses: &[u16]) {
        self.script
            .lock()
            .unwrap()
            .statuses
            .insert(path.to_owned(), statuses.iter().copied().collect());
    }

    pub fn set_delay(&self, delay: Duration) {
        self.script.lock().unwrap().delay = delay;
    }

    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }

    pub fn received_on(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Wait until `pred` holds for what was received (panics after `limit`).
    pub async fn wait_for(&self, limit: Duration, pred: impl Fn(&[Received]) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if pred(&self.received()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "receiver timed out; got {:?}",
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
