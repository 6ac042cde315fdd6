//! `ciba-bench`: the load generator behind `bench/run.sh`. Each phase prints one JSON line.

mod http1;
mod load;
mod seed;

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
        /// `seeded:N` for bench1..=N, or a file of ids.
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
    ciba_api::crypto::provider::install();
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
            let ids: Vec<String> = match ids.strip_prefix("seeded:") {
                Some(n) => (1..=n.parse::<u64>().map_err(|e| e.to_string())?)
                    .map(|i| format!("bench{i}"))
                    .collect(),
                None => std::fs::read_to_string(&ids)
                    .map_err(|e| e.to_string())?
                    .lines()
                    .map(str::to_owned)
                    .collect(),
            };
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
    let http = ciba_api::outbound::client(Duration::from_secs(5), Duration::from_secs(30))?;
    let tok: Value = send_json(
        http.post(format!("{base}/oidc/v1/token"))
            .basic_auth(&client_id, Some(&secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "permissions/client permissions/app2app"),
            ]),
    )
    .await?;
    let access_token = tok["access_token"]
        .as_str()
        .ok_or(format!("token: {tok}"))?
        .to_owned();
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
        base,
        client_id,
        secret,
        access_token,
        nnin,
        device_id,
        device_key: jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes()),
    })
}
