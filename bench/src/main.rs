//! `ciba-bench`: the load generator behind `bench/run.sh`. Each phase prints one JSON line.

mod chart;
mod hostile;
mod http1;
mod load;
mod seed;
mod soak;

use clap::{Parser, Subcommand};
use load::{send_json, FlowTarget, Ours};
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Insert pending requests `bench1..=N` and finished filler rows into our database.
    Seed {
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        user_sub: String,
        /// First and last number of the pending ids `benchN` to insert.
        #[arg(long, default_value_t = 1)]
        pending_from: u64,
        #[arg(long, default_value_t = 0)]
        pending_to: u64,
        #[arg(long, default_value_t = 0)]
        filler: u64,
        #[arg(long, default_value_t = 0)]
        filler_offset: u64,
    },
    /// Create backchannel requests at the peer; writes their ids, one per line.
    SeedPeer {
        #[arg(long)]
        base: String,
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        secret: String,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        out: String,
    },
    /// Poll the CIBA token endpoint with pending requests.
    Poll {
        #[arg(long)]
        token_url: String,
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        secret: String,
        /// `seeded:N` for bench1..=N, `seeded:A-B` for benchA..=benchB, or a file of ids.
        #[arg(long)]
        ids: String,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Total requests per second to pace at (0: as fast as answers come).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long)]
        target: String,
        #[arg(long)]
        phase: String,
    },
    /// Flood the token endpoint with failing client authentications: half the connections
    /// send wrong secrets for `client_id`, half made-up client ids.
    Flood {
        #[arg(long)]
        token_url: String,
        /// The real client, whose wrong secrets half the flood sends.
        #[arg(long)]
        client_id: String,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The local address to send from (e.g. 127.0.0.2, apart from the polls' 127.0.0.1).
        #[arg(long)]
        source: Option<std::net::IpAddr>,
        /// The server's process id, for the CPU it used meanwhile.
        #[arg(long)]
        pid: Option<u32>,
        #[arg(long)]
        target: String,
        #[arg(long)]
        phase: String,
    },
    /// Requests with oversized client ids (in a Basic head over the server's head limit and in
    /// a form body under its body limit); the server's resident memory before and after.
    Oversized {
        #[arg(long)]
        token_url: String,
        /// The server's process id, for its VmRSS.
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value_t = 10_000)]
        requests: usize,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        #[arg(long, default_value_t = 100_000)]
        basic_id_bytes: usize,
        #[arg(long, default_value_t = 60_000)]
        form_id_bytes: usize,
        #[arg(long)]
        target: String,
        #[arg(long)]
        phase: String,
    },
    /// Full flows against this server (enrolls its own device with the code given).
    FlowsOurs {
        #[arg(long)]
        base: String,
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        secret: String,
        #[arg(long)]
        nnin: String,
        #[arg(long)]
        enrollment_code: String,
        #[arg(long, default_value_t = 16)]
        workers: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long)]
        target: String,
    },
    /// Minutes of mixed load (paced polls, flows, ping flows) on several replicas of one
    /// database, sampled per window; draws the samples (`--svg`).
    Soak {
        #[command(flatten)]
        args: Box<soak::SoakArgs>,
        /// The issuer every replica serves (the device JWT's audience).
        #[arg(long)]
        issuer: String,
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        secret: String,
        /// The ping client (delivery mode ping, notification endpoint at --ping-listen).
        #[arg(long)]
        ping_client_id: String,
        #[arg(long)]
        ping_secret: String,
        #[arg(long)]
        nnin: String,
        #[arg(long)]
        enrollment_code: String,
    },
    /// Full flows against the peer.
    FlowsPeer {
        #[arg(long)]
        base: String,
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        secret: String,
        #[arg(long, default_value_t = 16)]
        workers: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

#[tokio::main]
async fn main() -> Result<(), String> {
    // the app's ES256 signatures in full flows, as fast as the server's
    ciba_runtime::crypto::provider::install();
    match Cli::parse().command {
        Command::Seed {
            database_url,
            client_id,
            user_sub,
            pending_from,
            pending_to,
            filler,
            filler_offset,
        } => {
            let started = std::time::Instant::now();
            let pending = pending_to.saturating_sub(pending_from - 1);
            tokio::task::spawn_blocking(move || {
                seed::seed(
                    &database_url,
                    &client_id,
                    &user_sub,
                    (pending_from, pending_to),
                    filler,
                    filler_offset,
                )
            })
            .await
            .map_err(|e| e.to_string())??;
            println!(
                "{}",
                json!({"phase": "seed", "pending": pending, "filler": filler, "seconds": started.elapsed().as_secs_f64()})
            );
        }
        Command::SeedPeer {
            base,
            client_id,
            secret,
            count,
            out,
        } => {
            let ids = load::seed_peer(&base, &client_id, &secret, count).await;
            std::fs::write(&out, ids.join("\n")).map_err(|e| e.to_string())?;
            println!("{}", json!({"phase": "seed-peer", "created": ids.len()}));
        }
        Command::Poll {
            token_url,
            client_id,
            secret,
            ids,
            connections,
            seconds,
            rate,
            target,
            phase,
        } => {
            let ids = poll_ids(&ids)?;
            if ids.is_empty() || connections == 0 {
                return Err("nothing to poll: no ids or no connections".into());
            }
            let token_url = http1::Target::parse(&token_url)?;
            let (stats, secs) = load::poll(
                token_url,
                client_id,
                secret,
                ids,
                connections,
                Duration::from_secs(seconds),
                rate,
            )
            .await;
            println!("{}", stats.report(&phase, &target, secs));
        }
        Command::Flood {
            token_url,
            client_id,
            connections,
            seconds,
            source,
            pid,
            target,
            phase,
        } => {
            if connections == 0 {
                return Err("no connections".into());
            }
            let token_url = http1::Target::parse(&token_url)?;
            let before = hostile::CpuTimes::now(pid)?;
            let (kinds, secs) = hostile::flood(
                token_url,
                client_id,
                connections,
                Duration::from_secs(seconds),
                source,
            )
            .await;
            let after = hostile::CpuTimes::now(pid)?;
            let mut total = load::Stats::default();
            let mut each = serde_json::Map::new();
            for (kind, stats) in kinds {
                let mut part = stats.clone().report(&phase, &target, secs);
                if let Some(o) = part.as_object_mut() {
                    o.remove("phase");
                    o.remove("target");
                }
                each.insert(kind.name().into(), part);
                total.merge(stats);
            }
            let mut line = total.report(&phase, &target, secs);
            line["kinds"] = Value::Object(each);
            line["connections"] = json!(connections);
            if let Some(o) = line.as_object_mut() {
                o.extend(after.cores_since(&before, secs));
            }
            println!("{line}");
        }
        Command::Oversized {
            token_url,
            pid,
            requests,
            connections,
            basic_id_bytes,
            form_id_bytes,
            target,
            phase,
        } => {
            if connections == 0 {
                return Err("no connections".into());
            }
            let token_url = http1::Target::parse(&token_url)?;
            let before = hostile::proc_status_kib(pid, "VmRSS")?;
            let (stats, secs) = hostile::oversized(
                token_url,
                requests,
                connections,
                basic_id_bytes,
                form_id_bytes,
            )
            .await;
            // the server's last answers may still be on their way out
            tokio::time::sleep(Duration::from_secs(1)).await;
            let after = hostile::proc_status_kib(pid, "VmRSS")?;
            let mut line = stats.report(&phase, &target, secs);
            line["rss_before_kib"] = json!(before);
            line["rss_after_kib"] = json!(after);
            line["peak_rss_kib"] = json!(hostile::proc_status_kib(pid, "VmHWM")?);
            line["basic_id_bytes"] = json!(basic_id_bytes);
            line["form_id_bytes"] = json!(form_id_bytes);
            println!("{line}");
        }
        Command::FlowsOurs {
            base,
            client_id,
            secret,
            nnin,
            enrollment_code,
            workers,
            seconds,
            target,
        } => {
            let ours = prepare_ours(base, client_id, secret, nnin, &enrollment_code).await?;
            let (stats, secs) = load::flows(
                FlowTarget::Ours(ours),
                workers,
                Duration::from_secs(seconds),
            )
            .await;
            println!("{}", stats.report("flows", &target, secs));
        }
        Command::Soak {
            args,
            issuer,
            client_id,
            secret,
            ping_client_id,
            ping_secret,
            nnin,
            enrollment_code,
        } => {
            // One phone; the flows of both clients, at every replica in turn.
            let first = args.bases.first().ok_or("--bases: none")?.clone();
            let mut o = prepare_ours(
                first,
                client_id.clone(),
                secret.clone(),
                nnin,
                &enrollment_code,
            )
            .await?;
            o.issuer = issuer;
            let mut p = o.clone();
            p.client_id = ping_client_id;
            p.secret = ping_secret;
            p.access_token = access_token(&p.base, &p.client_id, &p.secret).await?;
            let each = |o: &Ours| {
                args.bases
                    .iter()
                    .map(|b| Ours {
                        base: b.clone(),
                        ..o.clone()
                    })
                    .collect::<Vec<_>>()
            };
            let (flows, pings) = (each(&o), each(&p));
            soak::run(*args, (client_id, secret), flows, pings).await?;
        }
        Command::FlowsPeer {
            base,
            client_id,
            secret,
            workers,
            seconds,
        } => {
            let (stats, secs) = load::flows(
                FlowTarget::Peer {
                    base,
                    client_id,
                    secret,
                },
                workers,
                Duration::from_secs(seconds),
            )
            .await;
            println!("{}", stats.report("flows", "peer", secs));
        }
    }
    Ok(())
}

/// An access token, and a device enrolled with a fresh P-256 key.
async fn prepare_ours(
    base: String,
    client_id: String,
    secret: String,
    nnin: String,
    code: &str,
) -> Result<Ours, String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::EncodePrivateKey;
    let http = ciba_runtime::outbound::client(Duration::from_secs(5), Duration::from_secs(30))?;
    let access_token = access_token(&base, &client_id, &secret).await?;
    let sk = p256::SecretKey::random(&mut rand_core::OsRng);
    let point = sk.public_key().to_encoded_point(false);
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(point.x().ok_or("x")?), "y": URL_SAFE_NO_PAD.encode(point.y().ok_or("y")?)});
    let body = json!({"enrollment_code": code, "device_info": {"p": "ios", "ma": "Apple", "mo": "iPhone11,2"}, "public_jwk": jwk});
    let r: Value = send_json(http.post(format!("{base}/app/v1/devices")).json(&body)).await?;
    let device_id = r["device_id"]
        .as_str()
        .ok_or(format!("enroll: {r}"))?
        .to_owned();
    let der = sk.to_pkcs8_der().map_err(|e| e.to_string())?;
    Ok(Ours {
        issuer: base.clone(),
        base,
        client_id,
        secret,
        access_token,
        nnin,
        device_id,
        device_key: jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes()),
    })
}

/// A `client_credentials` access token for the permissions API and app-authorize.
async fn access_token(base: &str, client_id: &str, secret: &str) -> Result<String, String> {
    let http = ciba_runtime::outbound::client(Duration::from_secs(5), Duration::from_secs(30))?;
    let tok: Value = send_json(
        http.post(format!("{base}/oidc/v1/token"))
            .basic_auth(client_id, Some(secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "permissions/client permissions/app2app"),
            ]),
    )
    .await?;
    Ok(tok["access_token"]
        .as_str()
        .ok_or(format!("token: {tok}"))?
        .to_owned())
}

/// `seeded:N` (bench1..=N), `seeded:A-B` (benchA..=benchB), or a file of ids, one per line.
fn poll_ids(ids: &str) -> Result<Vec<String>, String> {
    Ok(match ids.strip_prefix("seeded:") {
        Some(range) => {
            let number = |n: &str| n.parse::<u64>().map_err(|e| format!("{ids}: {e}"));
            let (from, to) = match range.split_once('-') {
                Some((from, to)) => (number(from)?, number(to)?),
                None => (1, number(range)?),
            };
            (from..=to).map(|i| format!("bench{i}")).collect()
        }
        None => std::fs::read_to_string(ids)
            .map_err(|e| e.to_string())?
            .lines()
            .map(str::to_owned)
            .collect(),
    })
}
