//! Hundreds of CIBA flows in progress at once, as merchants and their users run them against
//! the cluster, and the reconciliation at the end: the merchants' view against the database's.

use crate::support::app::{jti, now, App, Merchant};
use crate::support::cluster::{check_5xx, random_below, send, Cluster, Sent};
use crate::support::with_assertion;
use crate::support::worker::{ping_client, Receiver};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_store::{auth_requests as requests, jobs, Store};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one flow may take at most, whatever the fault.
const FLOW_LIMIT: Duration = Duration::from_secs(50);

pub struct Ctx {
    pub http: reqwest::Client,
    pub bases: Vec<String>,
    pub issuer: String,
    pub poller: Merchant,
    pub pinger: Merchant,
    pub app: App,
    pub store: Store,
}

impl Ctx {
    pub async fn new(c: &Cluster) -> Arc<Self> {
        let poller = Merchant::new(&c.srv, "permissions/ciba openid", &[]).await;
        let (pinger, app) = ping_client(&c.srv, &c.receiver.url("/cb"), 700).await;
        Arc::new(Self {
            http: c.http.clone(),
            bases: c.bases(),
            issuer: c.srv.base.clone(),
            poller,
            pinger,
            app,
            store: c.srv.store(),
        })
    }

    fn device_jwt(&self) -> String {
        let t = now();
        let d = &self.app.device_id;
        self.app
            .key
            .sign(&json!({"sub": d, "aud": self.issuer, "iat": t, "exp": t + 60, "jti": jti()}))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Approve,
    Decline,
    Expire,
}

/// What the merchant (and the user's app) saw of one flow.
#[derive(Debug, Default)]
pub struct Seen {
    pub id: String,
    pub ping: bool,
    pub tokens: u32,
    pub denied: bool,
    pub expired: bool,
    /// A poll went unanswered (503, or its connection broke) and the next said "already
    /// redeemed": the redeeming poll's answer was lost on its way. (If the request had
    /// expired by then, the next poll says `expired_token`: see `reconcile`.)
    pub answer_lost: bool,
    pub slow_down: u32,
    pub unavailable: u32,
    pub lost: u32,
    /// Anything the contract does not allow: a 500, a 503 without `Retry-After`, a hang.
    pub bad: Vec<String>,
}

impl Seen {
    fn answered(&mut self, what: &str, sent: Sent) -> Option<crate::support::Reply> {
        match sent {
            Sent::Answered(r) => {
                if let Err(e) = check_5xx(&r) {
                    self.bad.push(format!("{what}: {e}"));
                }
                if r.status == 503 {
                    self.unavailable += 1;
                }
                Some(r)
            }
            Sent::Refused => None,
            Sent::Lost(e) => {
                if e.contains("timed out") || e.contains("timeout") {
                    self.bad.push(format!("{what}: no answer: {e}"));
                }
                self.lost += 1;
                None
            }
        }
    }
}

/// Flow `i`: a poll-mode or ping-mode request, approved, declined or left to expire.
pub async fn flow(ctx: Arc<Ctx>, receiver: Receiver, i: usize) -> Seen {
    let fate = [Fate::Approve, Fate::Approve, Fate::Decline, Fate::Expire][i % 4];
    let ping = matches!(i % 3, 0);
    let m = if ping { &ctx.pinger } else { &ctx.poller };
    let mut seen = Seen {
        ping,
        ..Seen::default()
    };
    let started = Instant::now();
    let token = format!("tok-{i}");
    while seen.id.is_empty() {
        if started.elapsed() > FLOW_LIMIT {
            seen.bad.push("never started".into());
            return seen;
        }
        let mut fields = vec![
            ("login_hint", ctx.app.nnin.as_str()),
            ("scope", "openid"),
            ("binding_message", "Fault test"),
        ];
        if ping {
            fields.push(("client_notification_token", token.as_str()));
        }
        let form = with_assertion(&m.token, &fields);
        let sent = send(&ctx.http, &ctx.bases, |h, b| {
            h.post(format!("{b}/oidc/v1/bc-authorize")).form(&form)
        })
        .await;
        match seen.answered("bc-authorize", sent) {
            Some(r) if r.status == 200 => seen.id = r.str("auth_req_id").to_owned(),
            Some(r) if r.status != 503 => seen.bad.push(format!("bc-authorize: {r}")),
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    if fate != Fate::Expire {
        tokio::time::sleep(Duration::from_millis(random_below(2_000) as u64)).await;
        decide(&ctx, &mut seen, fate).await;
    }
    if ping {
        let id = seen.id.clone();
        receiver
            .wait_for(FLOW_LIMIT, |all| {
                all.iter().any(|r| r.body["auth_req_id"] == id.as_str())
            })
            .await;
    }
    poll(&ctx, m, &mut seen, started).await;
    seen
}

/// The app views the request and sends its signed decision, retrying while unavailable.
async fn decide(ctx: &Ctx, seen: &mut Seen, fate: Fate) {
    let id = seen.id.clone();
    let link = loop {
        let i = id.clone();
        let s = ctx.store.clone();
        match tokio::task::spawn_blocking(move || s.read(move |c| requests::find(c, &i)))
            .await
            .unwrap()
        {
            Ok(Some(row)) => break row.link_ref,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let decision = if fate == Fate::Approve {
        "approve"
    } else {
        "decline"
    };
    for attempt in 0..60 {
        let jwt = ctx.device_jwt();
        let sent = send(&ctx.http, &ctx.bases, |h, b| {
            h.get(format!("{b}/app/v1/auth-requests/{link}"))
                .bearer_auth(&jwt)
        })
        .await;
        let Some(view) = seen.answered("view", sent).filter(|r| r.status == 200) else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(view["permission"].as_str().unwrap())
            .unwrap();
        let digest = ciba_domain::secret::sha256_b64url(&bytes);
        let signed = ctx.app.sign_decision(&link, decision, &digest);
        let jwt = ctx.device_jwt();
        let body = json!({"signed_decision": signed});
        let sent = send(&ctx.http, &ctx.bases, |h, b| {
            h.post(format!("{b}/app/v1/auth-requests/{link}/decision"))
                .bearer_auth(&jwt)
                .json(&body)
        })
        .await;
        match seen.answered("decision", sent) {
            Some(r) if r.status == 200 => return,
            // an earlier attempt may have been recorded, or the request expired meanwhile
            Some(r) if r.status < 500 && attempt > 0 => return,
            Some(r) if r.status < 500 => {
                seen.bad.push(format!("decision: {r}"));
                return;
            }
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// The merchant polls at the interval (5 s more after each `slow_down`) until an answer ends
/// the flow.
async fn poll(ctx: &Ctx, m: &Merchant, seen: &mut Seen, started: Instant) {
    let mut interval = Duration::from_secs(1);
    let mut unanswered = false;
    let id = seen.id.clone();
    let form = [
        ("grant_type", "urn:openid:params:grant-type:ciba"),
        ("auth_req_id", id.as_str()),
    ];
    loop {
        if started.elapsed() > FLOW_LIMIT {
            seen.bad.push("polling never ended".into());
            return;
        }
        tokio::time::sleep(interval).await;
        let sent = send(&ctx.http, &ctx.bases, |h, b| {
            h.post(format!("{b}/oidc/v1/token"))
                .basic_auth(&m.id, Some(&m.secret))
                .form(&form)
        })
        .await;
        let Some(r) = seen.answered("token", sent) else {
            unanswered = true;
            continue;
        };
        match (r.status, r.error()) {
            (200, _) => {
                seen.tokens += 1;
                return;
            }
            (400, "authorization_pending") => {}
            (400, "slow_down") => {
                seen.slow_down += 1;
                interval += Duration::from_secs(5);
            }
            (400, "access_denied") => {
                seen.denied = true;
                return;
            }
            (400, "expired_token") => {
                seen.expired = true;
                return;
            }
            (400, "invalid_grant") if unanswered => {
                seen.answer_lost = true;
                return;
            }
            (503, _) => unanswered = true,
            _ => {
                seen.bad.push(format!("token: {r}"));
                return;
            }
        }
    }
}

/// Totals of a scenario, printed for the report.
#[derive(Debug, Default)]
pub struct Totals {
    pub approved: usize,
    pub declined: usize,
    pub expired: usize,
    pub answers_lost: usize,
    pub pings: usize,
    pub duplicate_pings: usize,
    pub unavailable: u32,
    pub lost: u32,
    pub slow_down: u32,
}

/// Every approved request redeemed exactly once (its tokens seen once, or its answer lost
/// in transit), every declined one `access_denied`, every expired one `expired_token`, every
/// ping delivered at least once, no job left queued or leased.
pub async fn reconcile(ctx: &Ctx, receiver: &Receiver, seen: &[Seen]) -> Totals {
    let store = ctx.store.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let open =
            read(&store, |c| {
                Ok(jobs::list(c, jobs::QUEUED, 1000)?.len()
                    + jobs::list(c, jobs::RUNNING, 1000)?.len())
            })
            .await;
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} jobs still queued or leased"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dead = read(&store, jobs::dead_count).await;
    assert_eq!(dead, 0, "dead ping jobs");
    let received = receiver.received();
    let mut t = Totals::default();
    for f in seen {
        assert!(f.bad.is_empty(), "flow {}: {:?}", f.id, f.bad);
        let i = f.id.clone();
        let row = read(&store, move |c| requests::find(c, &i)).await.unwrap();
        let expired =
            row.status == "expired" || (row.status == "pending" && row.expires_at <= now());
        match row.status.as_str() {
            // approved, but not redeemed before its expiry: `expired_token` (README)
            "approved" if row.redeemed_at.is_none() && f.expired && row.expires_at <= now() => {
                t.expired += 1;
            }
            "approved" => {
                assert!(row.redeemed_at.is_some(), "{f:?}: approved, never redeemed");
                // The redeeming poll's answer lost, and the request past its expiry by the
                // next poll: that poll says `expired_token` (expiry answers first).
                let lost_then_expired = f.expired && f.tokens == 0;
                let lost = f.answer_lost || lost_then_expired;
                assert_eq!(f.tokens + u32::from(lost), 1, "{f:?}");
                assert!(!lost || f.unavailable + f.lost > 0, "{f:?}");
                t.approved += 1;
                t.answers_lost += usize::from(lost);
            }
            "declined" => {
                assert!(f.denied, "{f:?}: declined, but not access_denied");
                t.declined += 1;
            }
            _ if expired => {
                assert!(f.expired, "{f:?}: expired, but not expired_token");
                assert_eq!(f.tokens, 0);
                t.expired += 1;
            }
            other => panic!("{f:?}: ends {other}"),
        }
        if f.ping {
            let n = received
                .iter()
                .filter(|r| r.body["auth_req_id"] == f.id.as_str())
                .count();
            assert!(n >= 1, "{f:?}: never pinged");
            t.pings += 1;
            t.duplicate_pings += n - 1;
        }
        t.unavailable += f.unavailable;
        t.lost += f.lost;
        t.slow_down += f.slow_down;
    }
    assert!(t.approved > 0 && t.declined > 0 && t.expired > 0, "{t:?}");
    eprintln!("reconciliation: {t:?}");
    t
}

/// A read on the database directly (not through the proxy), retried for a few seconds: the
/// test's own pool meets the dead connections of a restart too.
async fn read<R: Send + 'static>(
    store: &Store,
    f: impl Fn(&mut ciba_store::DbConnection) -> ciba_store::StoreResult<R> + Send + Clone + 'static,
) -> R {
    for _ in 0..50 {
        let (s, f) = (store.clone(), f.clone());
        if let Ok(r) = tokio::task::spawn_blocking(move || s.read(f))
            .await
            .unwrap()
        {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the database did not answer the test");
}

/// Start `n` flows, each a task.
pub fn spawn_flows(
    ctx: &Arc<Ctx>,
    receiver: &Receiver,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Seen>> {
    (0..n)
        .map(|i| tokio::spawn(flow(ctx.clone(), receiver.clone(), i)))
        .collect()
}

pub async fn join(flows: Vec<tokio::task::JoinHandle<Seen>>) -> Vec<Seen> {
    let mut out = Vec::new();
    for f in flows {
        out.push(f.await.unwrap());
    }
    out
}
