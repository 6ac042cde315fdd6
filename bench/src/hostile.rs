//! Hostile traffic at the token endpoint: a flood of failing client authentications, and
//! requests carrying oversized client identifiers. Each request counts by its answer.

use crate::http1::{form_request, Answer, Conn, Target};
use crate::load::{gather, Stats, CIBA};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// What an answer counts as: `status error`, or `transport error` (with its reason if
/// `detail`).
fn outcome(answer: Result<Answer, String>, detail: bool) -> String {
    match answer {
        Ok(Answer {
            status,
            error: Some(e),
        }) => format!("{status} {e}"),
        Ok(a) => a.status.to_string(),
        Err(e) if detail => format!("transport error ({e})"),
        Err(_) => "transport error".into(),
    }
}

/// Something that differs between runs, so made-up ids and wrong secrets are new to the
/// server each time (it shares one verification among identical attempts in flight).
fn nonce() -> u128 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.as_nanos() ^ (u128::from(std::process::id()) << 64)
}

/// What one half of the flood sends.
#[derive(Clone, Copy)]
pub enum Kind {
    /// The real client id with a wrong secret.
    WrongSecret,
    /// A client id that does not exist.
    MadeUpId,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::WrongSecret => "wrong_secret",
            Kind::MadeUpId => "made_up_id",
        }
    }
}

/// `connections` workers send token requests as fast as they are answered, for `duration`:
/// the even ones with `client_id` and a wrong secret, the odd ones with made-up client ids;
/// every request carries a secret never sent before (client_secret_basic). The measures of
/// each kind apart.
pub async fn flood(
    target: Target,
    client_id: String,
    connections: usize,
    duration: Duration,
    source: Option<IpAddr>,
) -> ([(Kind, Stats); 2], f64) {
    let run = nonce();
    let started = Instant::now();
    let deadline = started + duration;
    let workers = (0..connections).map(|w| {
        let (target, client_id) = (target.clone(), client_id.clone());
        let kind = if w % 2 == 0 {
            Kind::WrongSecret
        } else {
            Kind::MadeUpId
        };
        let task = tokio::spawn(async move {
            let mut stats = Stats::default();
            let mut conn = Conn::new(target.clone()).with_source(source);
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let secret = format!("wrong-{run:x}-{w}-{i}");
                let id = match kind {
                    Kind::WrongSecret => client_id.clone(),
                    Kind::MadeUpId => format!("cl_madeup{run:x}x{w}x{i}"),
                };
                let req = form_request(
                    &target,
                    Some((&id, &secret)),
                    &[("grant_type", CIBA), ("auth_req_id", "bench1")],
                );
                let t = Instant::now();
                let key = outcome(conn.send(&req).await, false);
                stats.latencies_us.push(t.elapsed().as_micros() as u64);
                if key == "transport error" {
                    // no spinning on a refused connection
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                *stats.outcomes.entry(key).or_default() += 1;
            }
            stats
        });
        (w % 2, task)
    });
    let (wrong, made_up): (Vec<_>, Vec<_>) = workers.partition(|(half, _)| *half == 0);
    let (wrong, made_up) = futures_util::future::join(
        gather(wrong.into_iter().map(|(_, t)| t)),
        gather(made_up.into_iter().map(|(_, t)| t)),
    )
    .await;
    (
        [(Kind::WrongSecret, wrong), (Kind::MadeUpId, made_up)],
        started.elapsed().as_secs_f64(),
    )
}

/// `requests` token requests over `connections` connections, alternately: a client id of
/// `basic_id_bytes` in `client_secret_basic` (a head over the server's limit) and one of
/// `form_id_bytes` in a `client_secret_post` body. Outcomes are keyed `basic: …`/`form: …`.
pub async fn oversized(
    target: Target,
    requests: usize,
    connections: usize,
    basic_id_bytes: usize,
    form_id_bytes: usize,
) -> (Stats, f64) {
    let basic_id = "b".repeat(basic_id_bytes);
    let form_id = "f".repeat(form_id_bytes);
    let basic = form_request(
        &target,
        Some((&basic_id, "secret")),
        &[("grant_type", CIBA), ("auth_req_id", "bench1")],
    );
    let form = form_request(
        &target,
        None,
        &[
            ("grant_type", CIBA),
            ("auth_req_id", "bench1"),
            ("client_id", &form_id),
            ("client_secret", "secret"),
        ],
    );
    let requests_each = std::sync::Arc::new([basic, form]);
    let started = Instant::now();
    let workers = (0..connections).map(|w| {
        let (target, reqs) = (target.clone(), requests_each.clone());
        // this worker's share of the requests
        let share = requests / connections + usize::from(w < requests % connections);
        tokio::spawn(async move {
            let mut stats = Stats::default();
            let mut conn = Conn::new(target);
            for i in 0..share {
                let (kind, req) = if (w + i) % 2 == 0 {
                    ("basic", &reqs[0])
                } else {
                    ("form", &reqs[1])
                };
                let t = Instant::now();
                let key = format!("{kind}: {}", outcome(conn.send(req).await, true));
                stats.latencies_us.push(t.elapsed().as_micros() as u64);
                *stats.outcomes.entry(key).or_default() += 1;
            }
            stats
        })
    });
    (gather(workers).await, started.elapsed().as_secs_f64())
}

/// A line's value in kB from /proc/PID/status (`VmRSS`, `VmHWM`).
pub fn proc_status_kib(pid: u32, field: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status"))
}

/// CPU seconds (user and system) a process has used so far, from /proc/PID/stat.
pub fn cpu_seconds(pid: Option<u32>) -> Result<f64, String> {
    let path = pid.map_or("/proc/self/stat".to_owned(), |p| format!("/proc/{p}/stat"));
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // the fields after the command name, which is in parentheses and may hold spaces
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let field = |i: usize| -> Result<f64, String> {
        rest.split_whitespace()
            .nth(i)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| format!("{path}: no field {i}"))
    };
    // utime and stime (fields 14 and 15 of stat(5)), in clock ticks: 100 a second on Linux
    Ok((field(11)? + field(12)?) / 100.0)
}

/// The whole host's CPU time so far in seconds: (busy, stolen by the hypervisor), from
/// /proc/stat (idle and iowait are not busy).
pub fn host_cpu_seconds() -> Result<(f64, f64), String> {
    let stat = std::fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .ok_or("/proc/stat: no cpu line")?
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user already)
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0.0);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    Ok((busy / 100.0, at(7) / 100.0))
}

/// CPU seconds used so far by this process, by a server process and by the whole host.
pub struct CpuTimes {
    own: f64,
    server: Option<f64>,
    host: (f64, f64),
}

impl CpuTimes {
    pub fn now(server: Option<u32>) -> Result<Self, String> {
        Ok(Self {
            own: cpu_seconds(None)?,
            server: server.map(|p| cpu_seconds(Some(p))).transpose()?,
            host: host_cpu_seconds()?,
        })
    }

    /// The cores busy on average from `before` to now, over `secs`: the flood's own process,
    /// the server's, the whole host's (the database, the polls' process, anything else) and
    /// what the hypervisor took.
    pub fn cores_since(&self, before: &CpuTimes, secs: f64) -> serde_json::Map<String, Value> {
        let mut out = serde_json::Map::new();
        out.insert(
            "flood_cpu_cores".into(),
            json!((self.own - before.own) / secs),
        );
        if let (Some(a), Some(b)) = (self.server, before.server) {
            out.insert("server_cpu_cores".into(), json!((a - b) / secs));
        }
        out.insert(
            "host_busy_cores".into(),
            json!((self.host.0 - before.host.0) / secs),
        );
        out.insert(
            "host_steal_cores".into(),
            json!((self.host.1 - before.host.1) / secs),
        );
        out
    }
}
