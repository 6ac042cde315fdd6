//! `ciba-bench soak`: minutes of mixed load on several API replicas of one database (paced
//! polls, full flows, ping flows whose notification this program receives), with one sample per
//! window: each replica's resident memory, the database's open connections, the replicas'
//! open HTTP connections, and per kind of load the count, p50 and p99. Prints a JSON line per
//! window and draws them (`--svg`, `crate::chart`).

use crate::http1::{FormPoster, Target};
use crate::load::{redeem, start_and_approve, worker_client, Ours, Stats, CIBA};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

#[derive(clap::Args)]
pub struct SoakArgs {
    /// The replicas' base URLs, comma-separated; each request goes to one of them in turn.
    #[arg(long, value_delimiter = ',')]
    pub bases: Vec<String>,
    /// Their process ids, in the same order (for VmRSS).
    #[arg(long, value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// The database (PostgreSQL) whose connections are counted.
    #[arg(long)]
    pub database_url: String,
    /// The pending requests the polls cycle through (`seeded:A-B`, as `poll --ids`).
    #[arg(long)]
    pub poll_ids: String,
    #[arg(long, default_value_t = 16)]
    pub poll_connections: usize,
    /// Polls per second, in all (paced: the interval is kept).
    #[arg(long, default_value_t = 300)]
    pub poll_rate: u64,
    #[arg(long, default_value_t = 4)]
    pub flow_workers: usize,
    /// Full flows per second, in all (paced: a steady load, not as many as the machine takes).
    #[arg(long, default_value_t = 20)]
    pub flow_rate: u64,
    #[arg(long, default_value_t = 4)]
    pub ping_workers: usize,
    /// Ping flows per second, in all.
    #[arg(long, default_value_t = 4)]
    pub ping_rate: u64,
    /// Where the ping client's notification endpoint listens (this program receives there).
    #[arg(long)]
    pub ping_listen: SocketAddr,
    #[arg(long, default_value_t = 10)]
    pub minutes: u64,
    /// Seconds per sample (60: one per minute).
    #[arg(long, default_value_t = 60)]
    pub window_secs: u64,
    /// The SVG chart to write.
    #[arg(long)]
    pub svg: std::path::PathBuf,
}

/// What one window of the soak measured, by kind of load.
#[derive(Default)]
struct Window {
    polls: Stats,
    flows: Stats,
    pings: Stats,
    duplicate_pings: u64,
}

type Shared = Arc<Mutex<Window>>;

fn record(shared: &Shared, kind: fn(&mut Window) -> &mut Stats, started: Instant, key: String) {
    let mut w = shared.lock().unwrap_or_else(|p| p.into_inner());
    let s = kind(&mut w);
    s.latencies_us.push(started.elapsed().as_micros() as u64);
    *s.outcomes.entry(key).or_default() += 1;
}

/// Run the soak; `poll` is the poll client's (id, secret), `flows` and `pings` what a flow of
/// each client needs (one `Ours` per replica).
pub async fn run(
    args: SoakArgs,
    poll: (String, String),
    flows: Vec<Ours>,
    pings: Vec<Ours>,
) -> Result<Vec<Value>, String> {
    if args.bases.is_empty() || args.bases.len() != args.pids.len() {
        return Err("--bases and --pids: one process id per base".into());
    }
    let shared: Shared = Arc::default();
    let waiting: Waiters = Arc::default();
    let listener = tokio::net::TcpListener::bind(args.ping_listen)
        .await
        .map_err(|e| format!("--ping-listen: {e}"))?;
    tokio::spawn(receive_pings(listener, waiting.clone(), shared.clone()));
    let deadline = Instant::now() + Duration::from_secs(args.minutes * 60);
    let ids = crate::poll_ids(&args.poll_ids)?;
    let mut tasks = Vec::new();
    // Paced polls: each connection owns a share of the ids and polls one every `pace`.
    let pace = Duration::from_secs_f64(args.poll_connections as f64 / args.poll_rate.max(1) as f64);
    for w in 0..args.poll_connections {
        let base = &args.bases[w % args.bases.len()];
        let target = Target::parse(&format!("{base}/oidc/v1/token"))?;
        let mine: Vec<String> = ids
            .iter()
            .skip(w)
            .step_by(args.poll_connections)
            .cloned()
            .collect();
        let (shared, (id, secret)) = (shared.clone(), poll.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = FormPoster::new(target, &id, &secret);
            let mut tick = tokio::time::interval(pace);
            let mut i = 0;
            while Instant::now() < deadline && !mine.is_empty() {
                tick.tick().await;
                let t = Instant::now();
                let fields = [
                    ("grant_type", CIBA),
                    ("auth_req_id", mine[i % mine.len()].as_str()),
                ];
                i += 1;
                let key = match conn.post(&fields).await {
                    Ok(a) => a
                        .error
                        .map_or(a.status.to_string(), |e| format!("{} {e}", a.status)),
                    Err(_) => "transport error".into(),
                };
                record(&shared, |w| &mut w.polls, t, key);
            }
        }));
    }
    let paced = |workers: usize, rate: u64| {
        let mut t =
            tokio::time::interval(Duration::from_secs_f64(workers as f64 / rate.max(1) as f64));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    };
    for w in 0..args.flow_workers {
        let (flows, shared) = (flows.clone(), shared.clone());
        let mut tick = paced(args.flow_workers, args.flow_rate);
        tasks.push(tokio::spawn(async move {
            let http = worker_client();
            let mut n = w;
            while Instant::now() < deadline {
                tick.tick().await;
                let o = &flows[n % flows.len()];
                n += 1;
                let t = Instant::now();
                let r = match start_and_approve(&http, o, &[]).await {
                    // Redeemed at the other replica: any replica answers for all.
                    Ok(id) => redeem(&http, &flows[n % flows.len()], &id).await,
                    Err(e) => Err(e),
                };
                record(&shared, |w| &mut w.flows, t, outcome(r));
            }
        }));
    }
    for w in 0..args.ping_workers {
        let (pings, shared, waiting) = (pings.clone(), shared.clone(), waiting.clone());
        let mut tick = paced(args.ping_workers, args.ping_rate);
        tasks.push(tokio::spawn(async move {
            let http = worker_client();
            let mut n = w;
            while Instant::now() < deadline {
                tick.tick().await;
                let o = &pings[n % pings.len()];
                n += 1;
                let t = Instant::now();
                let r = ping_flow(&http, o, &waiting).await;
                record(&shared, |w| &mut w.pings, t, outcome(r));
            }
        }));
    }
    let mut lines = Vec::new();
    let mut db = DbConnections::open(&args.database_url)?;
    for minute in 1..=args.minutes * 60 / args.window_secs.max(1) {
        tokio::time::sleep(Duration::from_secs(args.window_secs)).await;
        let w = std::mem::take(&mut *shared.lock().unwrap_or_else(|p| p.into_inner()));
        let secs = args.window_secs as f64;
        let rss: Vec<f64> = args
            .pids
            .iter()
            .map(|p| crate::hostile::proc_status_kib(*p, "VmRSS").map(|k| k as f64 / 1024.0))
            .collect::<Result<_, _>>()?;
        let mut open = Vec::new();
        for base in &args.bases {
            open.push(gauge(&format!("{base}/metrics"), "ciba_connections_open").await);
        }
        let line = json!({
            "window": minute, "seconds": secs, "rss_mib": rss, "db_connections": db.count()?,
            "http_connections_open": open, "duplicate_pings": w.duplicate_pings,
            "polls": w.polls.report("soak-polls", "postgres", secs),
            "flows": w.flows.report("soak-flows", "postgres", secs),
            "pings": w.pings.report("soak-pings", "postgres", secs),
        });
        println!("{line}");
        lines.push(line);
    }
    for t in tasks {
        let _ = t.await;
    }
    crate::chart::draw(&args.svg, &lines)?;
    Ok(lines)
}

fn outcome(r: Result<(), String>) -> String {
    match r {
        Ok(()) => "completed".into(),
        Err(e) => e.chars().take(60).collect(),
    }
}

/// The ping flows waiting for their notification, by client_notification_token.
type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>;

/// Start and approve with a client_notification_token, wait for the worker's ping (at most
/// 30 s), then redeem as a ping client does.
async fn ping_flow(http: &reqwest::Client, o: &Ours, waiting: &Waiters) -> Result<(), String> {
    let token = ciba_domain::ids::random_id();
    let (tx, rx) = oneshot::channel();
    waiting
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(token.clone(), tx);
    let started = start_and_approve(http, o, &[("client_notification_token", &token)]).await;
    let id = match started {
        Ok(id) => id,
        Err(e) => {
            waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&token);
            return Err(e);
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .is_err()
    {
        waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&token);
        return Err("no ping within 30 s".into());
    }
    redeem(http, o, &id).await
}

/// The notification endpoint: each ping (`Authorization: Bearer <token>`) wakes its flow; a
/// ping for a flow already woken is a duplicate (at-least-once delivery), counted.
async fn receive_pings(listener: tokio::net::TcpListener, waiting: Waiters, shared: Shared) {
    while let Ok((mut sock, _)) = listener.accept().await {
        let (waiting, shared) = (waiting.clone(), shared.clone());
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let header = |name: &str| {
                    head.lines()
                        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
                };
                let len: usize = header("content-length:")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < end + 4 + len {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                // The token as sent (the head was lower-cased for the names only).
                let raw = String::from_utf8_lossy(&buf[..end]).into_owned();
                let token = raw.lines().find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    let value = value.trim();
                    (name.eq_ignore_ascii_case("authorization"))
                        .then(|| value.get(7..).unwrap_or_default().to_owned())
                });
                buf.drain(..end + 4 + len);
                let woke = token
                    .and_then(|t| waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&t))
                    .map(|tx| tx.send(()));
                if woke.is_none() {
                    shared
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .duplicate_pings += 1;
                }
                let reply = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
                if sock.write_all(reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The value of an unlabelled gauge in a Prometheus text page (0 when it cannot be read).
async fn gauge(url: &str, name: &str) -> f64 {
    let Ok(resp) = worker_client().get(url).send().await else {
        return 0.0;
    };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The database's open connections (`pg_stat_activity`, all clients of this database).
struct DbConnections(diesel::PgConnection);

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

impl DbConnections {
    fn open(url: &str) -> Result<Self, String> {
        use diesel::Connection;
        diesel::PgConnection::establish(url)
            .map(Self)
            .map_err(|e| format!("--database-url: {e}"))
    }

    fn count(&mut self) -> Result<i64, String> {
        use diesel::RunQueryDsl;
        diesel::sql_query(
            "SELECT count(*)::bigint AS n FROM pg_stat_activity WHERE datname = current_database()",
        )
        .get_result::<Count>(&mut self.0)
        .map(|c| c.n)
        .map_err(|e| e.to_string())
    }
}
