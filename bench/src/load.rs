//! Closed-loop load: each worker owns one keep-alive connection and sends its next request
//! when the previous one is answered. Latencies in microseconds; outcomes by status/error.

use crate::http1::{FormPoster, Target};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const CIBA: &str = "urn:openid:params:grant-type:ciba";

#[derive(Default, Clone)]
pub struct Stats {
    pub latencies_us: Vec<u64>,
    pub outcomes: BTreeMap<String, u64>,
}

impl Stats {
    pub fn merge(&mut self, other: Stats) {
        self.latencies_us.extend(other.latencies_us);
        for (k, v) in other.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
    }

    pub fn report(mut self, phase: &str, target: &str, seconds: f64) -> Value {
        self.latencies_us.sort_unstable();
        let n = self.latencies_us.len();
        let pct = |p: f64| {
            if n == 0 {
                0.0
            } else {
                self.latencies_us[((n as f64 * p) as usize).min(n - 1)] as f64 / 1000.0
            }
        };
        json!({"phase": phase, "target": target, "count": n, "seconds": seconds, "per_second": n as f64 / seconds,
               "p50_ms": pct(0.50), "p99_ms": pct(0.99), "outcomes": self.outcomes})
    }
}

/// Send a request and parse its JSON answer.
pub async fn send_json(req: reqwest::RequestBuilder) -> Result<Value, String> {
    req.send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())
}

/// Wait for the workers and add up what they measured.
pub async fn gather(workers: impl IntoIterator<Item = tokio::task::JoinHandle<Stats>>) -> Stats {
    let mut total = Stats::default();
    for r in futures_util::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
    {
        total.merge(r);
    }
    total
}

pub fn worker_client() -> reqwest::Client {
    ciba_runtime::outbound::install_crypto_provider();
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

/// Poll the token endpoint for `ids` from `connections` workers for `duration`. Like a
/// well-behaved client, each worker owns its own share of the ids (every `connections`-th) and
/// cycles through it, so no request is ever polled from two places at once.
pub async fn poll(
    token_url: Target,
    client_id: String,
    secret: String,
    ids: Vec<String>,
    connections: usize,
    duration: Duration,
    rate: u64,
) -> (Stats, f64) {
    // paced: each worker sends one request every `connections / rate` seconds
    let pace = (rate > 0).then(|| Duration::from_secs_f64(connections as f64 / rate as f64));
    let ids = std::sync::Arc::new(ids);
    let started = Instant::now();
    let deadline = started + duration;
    let workers = (0..connections).map(|w| {
        let (ids, target, id, secret) = (
            ids.clone(),
            token_url.clone(),
            client_id.clone(),
            secret.clone(),
        );
        tokio::spawn(async move {
            let mut stats = Stats::default();
            let mut conn = FormPoster::new(target, &id, &secret);
            let mine: Vec<&String> = ids
                .iter()
                .skip(w % ids.len())
                .step_by(connections)
                .collect();
            let mut i = 0;
            let mut ticker = pace.map(|p| {
                let mut t = tokio::time::interval_at(
                    tokio::time::Instant::now() + p.mul_f64(w as f64 / connections as f64),
                    p,
                );
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            while Instant::now() < deadline {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
                let req_id = mine[i % mine.len()];
                i += 1;
                let t = Instant::now();
                let key = match conn
                    .post(&[("grant_type", CIBA), ("auth_req_id", req_id)])
                    .await
                {
                    Ok(a) => match a.error {
                        Some(e) => format!("{} {e}", a.status),
                        None => a.status.to_string(),
                    },
                    Err(_) => "transport error".into(),
                };
                stats.latencies_us.push(t.elapsed().as_micros() as u64);
                *stats.outcomes.entry(key).or_default() += 1;
            }
            stats
        })
    });
    (gather(workers).await, started.elapsed().as_secs_f64())
}

/// Create `n` backchannel requests at the peer; returns their auth_req_ids.
pub async fn seed_peer(base: &str, client_id: &str, secret: &str, n: usize) -> Vec<String> {
    let per = n.div_ceil(64);
    let tasks = (0..64).map(|_| {
        let (url, id, secret) = (
            format!("{base}/backchannel"),
            client_id.to_owned(),
            secret.to_owned(),
        );
        tokio::spawn(async move {
            let http = worker_client();
            let mut out = Vec::with_capacity(per);
            for _ in 0..per {
                let r = http
                    .post(&url)
                    .basic_auth(&id, Some(&secret))
                    .form(&[("scope", "openid"), ("login_hint", "user1")])
                    .send()
                    .await;
                if let Ok(r) = r {
                    if let Some(id) = r
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v["auth_req_id"].as_str().map(str::to_owned))
                    {
                        out.push(id);
                    }
                }
            }
            out
        })
    });
    futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .flatten()
        .flatten()
        .take(n)
        .collect()
}

/// What a full flow against this server needs.
#[derive(Clone)]
pub struct Ours {
    pub base: String,
    /// The issuer (the device JWT's audience): the same for every replica of one service.
    pub issuer: String,
    pub client_id: String,
    pub secret: String,
    pub access_token: String,
    pub nnin: String,
    pub device_id: String,
    pub device_key: jsonwebtoken::EncodingKey,
}

fn sign(key: &jsonwebtoken::EncodingKey, kid: &str, claims: &Value) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&h, claims, key).unwrap_or_default()
}

/// One full flow: permission → app-authorize → signed approval → token. Returns the outcome.
async fn flow_ours(http: &reqwest::Client, o: &Ours) -> Result<(), String> {
    let auth_req_id = start_and_approve(http, o, &[]).await?;
    redeem(http, o, &auth_req_id).await
}

/// Register a permission, start App2App (with `extra` fields) and approve it as the phone;
/// returns the auth_req_id.
pub async fn start_and_approve(
    http: &reqwest::Client,
    o: &Ours,
    extra: &[(&str, &str)],
) -> Result<String, String> {
    let now = ciba_runtime::clock::now();
    let payment = json!({"paymentId": "p1", "amount": "123.45", "currency": "NOK", "creditorName": "Scrooge McDuck"});
    let statement = URL_SAFE_NO_PAD.encode(
        json!({"nonce": ciba_domain::ids::random_id(), "id": "basket", "payments": [payment]})
            .to_string(),
    );
    let body = json!({"type": "payment.v1", "iat": now, "exp": now + 600, "permission": statement, "intents": ["app2app"],
                      "loginHint": [{"scheme": "nnin", "value": o.nnin}], "app_callback_uri": "https://merchant.app/app_callback"});
    let r: Value = send_json(
        http.post(format!("{}/permissions/v1/", o.base))
            .bearer_auth(&o.access_token)
            .json(&body),
    )
    .await?;
    let pt = r["permissionToken"]
        .as_str()
        .ok_or(format!("register: {r}"))?;
    let di = URL_SAFE_NO_PAD.encode(r#"{"p":"ios","ma":"Apple","mo":"iPhone11,2"}"#);
    let mut form = vec![
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", o.access_token.as_str()),
        ("login_hint_token", pt),
        ("scope", "openid"),
        ("device_info", di.as_str()),
    ];
    form.extend_from_slice(extra);
    let r: Value = send_json(
        http.post(format!("{}/oidc/v1/app-authorize", o.base))
            .form(&form),
    )
    .await?;
    let uri = r["authorize_uri"]
        .as_str()
        .ok_or(format!("app-authorize: {r}"))?;
    let link_ref = uri.split("ref=").nth(1).unwrap_or_default();
    let auth_req_id = r["auth_req_id"].as_str().unwrap_or_default().to_owned();
    let digest =
        ciba_domain::secret::sha256_b64url(&URL_SAFE_NO_PAD.decode(&statement).unwrap_or_default());
    let jti = ciba_domain::ids::random_id;
    let device_jwt = sign(
        &o.device_key,
        &o.device_id,
        &json!({"sub": o.device_id, "aud": o.issuer, "iat": now, "exp": now + 60, "jti": jti()}),
    );
    let decision = sign(
        &o.device_key,
        &o.device_id,
        &json!({"ref": link_ref, "decision": "approve", "permission_digest": digest, "iat": now, "jti": jti()}),
    );
    let resp = http
        .post(format!(
            "{}/app/v1/auth-requests/{link_ref}/decision",
            o.base
        ))
        .bearer_auth(device_jwt)
        .json(&json!({"signed_decision": decision}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status() != 200 {
        return Err(format!("decision: {}", resp.status()));
    }
    Ok(auth_req_id)
}

/// Redeem an approved request at the token endpoint.
pub async fn redeem(http: &reqwest::Client, o: &Ours, auth_req_id: &str) -> Result<(), String> {
    let resp = http
        .post(format!("{}/oidc/v1/token", o.base))
        .basic_auth(&o.client_id, Some(&o.secret))
        .form(&[("grant_type", CIBA), ("auth_req_id", auth_req_id)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status() != 200 {
        return Err(format!("token: {}", resp.status()));
    }
    Ok(())
}

/// One full flow at the peer: backchannel request → approval → token.
async fn flow_peer(
    http: &reqwest::Client,
    base: &str,
    client_id: &str,
    secret: &str,
) -> Result<(), String> {
    let r: Value = send_json(
        http.post(format!("{base}/backchannel"))
            .basic_auth(client_id, Some(secret))
            .form(&[("scope", "openid"), ("login_hint", "user1")]),
    )
    .await?;
    let id = r["auth_req_id"]
        .as_str()
        .ok_or(format!("backchannel: {r}"))?
        .to_owned();
    let resp = http
        .post(format!("{base}/approve"))
        .form(&[("auth_req_id", id.as_str())])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status() != 200 {
        return Err(format!("approve: {}", resp.status()));
    }
    let resp = http
        .post(format!("{base}/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", CIBA), ("auth_req_id", id.as_str())])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status() != 200 {
        return Err(format!("token: {}", resp.status()));
    }
    Ok(())
}

pub enum FlowTarget {
    Ours(Ours),
    Peer {
        base: String,
        client_id: String,
        secret: String,
    },
}

pub async fn flows(target: FlowTarget, workers: usize, duration: Duration) -> (Stats, f64) {
    let target = std::sync::Arc::new(target);
    let started = Instant::now();
    let deadline = started + duration;
    let tasks = (0..workers).map(|_| {
        let target = target.clone();
        tokio::spawn(async move {
            let http = worker_client();
            let mut stats = Stats::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = match &*target {
                    FlowTarget::Ours(o) => flow_ours(&http, o).await,
                    FlowTarget::Peer {
                        base,
                        client_id,
                        secret,
                    } => flow_peer(&http, base, client_id, secret).await,
                };
                stats.latencies_us.push(t.elapsed().as_micros() as u64);
                let key = match r {
                    Ok(()) => "completed".to_owned(),
                    Err(e) => e.chars().take(60).collect(),
                };
                *stats.outcomes.entry(key).or_default() += 1;
            }
            stats
        })
    });
    (gather(tasks).await, started.elapsed().as_secs_f64())
}
