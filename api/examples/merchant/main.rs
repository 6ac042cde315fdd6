//! A merchant backend, whole: against any server of this contract it registers a payment
//! permission, starts a CIBA (default) or App2App authentication, polls the token endpoint
//! (every `interval` seconds, 5 more after each `slow_down`) with a spinner on stderr, and
//! verifies the ID token as the reference document's step 11 says (`verify.rs`: the issuer's
//! key from `jwks_uri`, an algorithm discovery lists, `iss`, `aud`, `exp`, `iat`, the `acr`
//! of the level asked for; and the request, the permission and its digest). The verified
//! claims go to stdout as JSON.
//!
//! ```sh
//! CIBA_CLIENT_SECRET=... cargo run -q --example merchant -- \
//!     --issuer http://127.0.0.1:8080 --client-id ID --nnin NNIN \
//!     [--flow ciba|app2app] [--amount 123.45 --currency NOK --creditor "Shop AS"] \
//!     [--binding-message TEXT] [--loa sub|high] [--scope "openid profile"] \
//!     [--callback-uri URI --device-platform ios --device-manufacturer Apple --device-model iPhone11,2]
//! ```
//!
//! The client needs the scopes `permissions/client`, `permissions/ciba` or
//! `permissions/app2app`, and those of `--scope`; App2App also its `--callback-uri`
//! registered. It authenticates with `client_secret_basic`. CIBA: the user approves on the
//! phone their NNIN has enrolled (`cargo run -q --example app -- approve ...`). App2App: the
//! `authorize_uri` is printed; the merchant's app would open it on that phone. Exits 1 when
//! the user declines, the request expires or the token does not verify.

mod flow;
mod verify;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use clap::{Parser, ValueEnum};
use flow::{Merchant, Poll, Started};
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use verify::{Expected, Result};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Flow {
    Ciba,
    App2app,
}

#[derive(Clone, Copy, ValueEnum)]
enum Loa {
    Sub,
    High,
}

impl Loa {
    fn acr(self) -> &'static str {
        match self {
            Loa::Sub => "http://eidas.europa.eu/LoA/substantial",
            Loa::High => "http://eidas.europa.eu/LoA/high",
        }
    }
}

#[derive(Parser)]
#[command(
    about = "Run a whole CIBA or App2App payment approval as a merchant backend and verify the ID token"
)]
struct Cli {
    /// The issuer URL, exactly as its discovery document states it.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080",
        allow_hyphen_values = true
    )]
    issuer: String,
    #[arg(long, allow_hyphen_values = true)]
    client_id: String,
    #[arg(
        long,
        env = "CIBA_CLIENT_SECRET",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    client_secret: String,
    /// The user's national identity number (login hint).
    #[arg(long)]
    nnin: String,
    #[arg(long, value_enum, default_value = "ciba")]
    flow: Flow,
    #[arg(long, default_value = "123.45")]
    amount: String,
    #[arg(long, default_value = "NOK")]
    currency: String,
    #[arg(long, default_value = "Shop AS")]
    creditor: String,
    /// Shown on both screens (CIBA); the server derives one from the permission otherwise.
    #[arg(long)]
    binding_message: Option<String>,
    /// The level of assurance asked for; the ID token's `acr` must be its value.
    #[arg(long, value_enum, default_value = "sub")]
    loa: Loa,
    /// The scope of the ID token.
    #[arg(long, default_value = "openid profile")]
    scope: String,
    /// App2App: the merchant app's callback URI, registered for the client.
    #[arg(long)]
    callback_uri: Option<String>,
    /// App2App: the phone the merchant's app runs on.
    #[arg(long, default_value = "ios")]
    device_platform: String,
    #[arg(long, default_value = "Apple")]
    device_manufacturer: String,
    #[arg(long, default_value = "iPhone11,2")]
    device_model: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(claims) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&claims).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("merchant: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn note(message: &str) {
    eprintln!("merchant: {message}");
}

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

async fn run(cli: &Cli) -> Result<Value> {
    if cli.flow == Flow::App2app && cli.callback_uri.is_none() {
        return Err("--flow app2app needs --callback-uri (the client's registered one)".into());
    }
    // reqwest is built with rustls and no crypto provider of its own: name one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let m = Merchant::discover(http, &cli.issuer, &cli.client_id, &cli.client_secret).await?;

    let intent = match cli.flow {
        Flow::Ciba => "ciba",
        Flow::App2app => "app2app",
    };
    let token = m
        .access_token(&format!("permissions/client permissions/{intent}"))
        .await?;
    note("access token (client_credentials)");

    // The statement the user approves: this payment, under a nonce never used before.
    let payment = json!({"paymentId": format!("p-{}", random_hex(4)), "amount": cli.amount,
        "currency": cli.currency, "creditorName": cli.creditor});
    let statement_json = json!({"nonce": random_hex(16), "id": format!("basket-{}", random_hex(4)),
        "payments": [payment]});
    let statement = b64url(statement_json.to_string().as_bytes());
    let now = verify::now();
    let mut registration = json!({
        "type": "payment.v1", "loa": match cli.loa { Loa::Sub => "sub", Loa::High => "high" },
        "iat": now, "exp": now + 600, "permission": statement, "intents": [intent],
        "loginHint": [{"scheme": "nnin", "value": cli.nnin}],
    });
    if let Some(uri) = &cli.callback_uri {
        registration["app_callback_uri"] = json!(uri);
    }
    let permission = m.register(&token, &registration).await?;
    let permission_id = permission["id"].as_str().unwrap_or_default().to_owned();
    let permission_token = permission["permissionToken"].as_str().unwrap_or_default();
    note(&format!(
        "permission {permission_id} registered: {statement_json} (binding message {})",
        permission["bindingMessage"]
    ));

    let started = match cli.flow {
        Flow::Ciba => {
            m.bc_authorize(permission_token, &cli.scope, cli.binding_message.as_deref())
                .await?
        }
        Flow::App2app => {
            let device = json!({"p": cli.device_platform, "ma": cli.device_manufacturer,
                "mo": cli.device_model});
            let device_info = b64url(device.to_string().as_bytes());
            m.app_authorize(&token, permission_token, &cli.scope, &device_info)
                .await?
        }
    };
    note(&format!(
        "{intent} started: auth_req_id {}, expires in {} s, poll every {} s",
        started.auth_req_id, started.expires_in, started.interval
    ));
    if let Some(uri) = &started.authorize_uri {
        note(&format!(
            "authorize_uri (the merchant's app opens it): {uri}"
        ));
    }

    let tokens = poll_until_done(&m, &started).await?;
    let id_token = tokens["id_token"].as_str().unwrap_or_default();
    let want = Expected {
        issuer: &m.issuer,
        client_id: &m.client_id,
        acr: Some(cli.loa.acr()),
        auth_req_id: Some(&started.auth_req_id),
        permission_id: Some(&permission_id),
        statement: Some(&statement),
    };
    let claims = verify::id_token(&m.http, &want, id_token)
        .await
        .map_err(|e| format!("the ID token is REFUSED: {e}"))?;
    note("ID token verified: signed by a key of jwks_uri with a listed alg; iss, aud, exp, iat, acr, auth_req_id, permission_id and permission_digest as expected");
    Ok(claims)
}

/// Poll every `interval` seconds (5 more after each `slow_down`) until the tokens come, the
/// request ends, or it expires.
async fn poll_until_done(m: &Merchant, started: &Started) -> Result<Value> {
    let mut spinner = Spinner::new();
    let mut interval = started.interval;
    let deadline = Instant::now() + Duration::from_secs(started.expires_in + 5);
    let mut status = "waiting for the user".to_owned();
    loop {
        spinner.wait(Duration::from_secs(interval), &status).await;
        match m.poll(&started.auth_req_id).await {
            Ok(Poll::Tokens(tokens)) => {
                spinner.done("the user approved: tokens issued");
                return Ok(tokens);
            }
            Ok(Poll::Pending) => status = "authorization_pending".into(),
            Ok(Poll::SlowDown(why)) => {
                interval += 5;
                status = format!("{why}: polling every {interval} s now");
                spinner.line(&status);
            }
            Ok(Poll::Failed(why)) => {
                spinner.done("stopped");
                return Err(why);
            }
            // One lost answer is no reason to give up: try again at the next interval.
            Err(e) => status = format!("no answer ({e}); retrying"),
        }
        if Instant::now() >= deadline {
            spinner.done("stopped");
            return Err("no tokens before the request expired".into());
        }
    }
}

/// A spinner on stderr when it is a terminal; one line per change otherwise (logs, tests).
struct Spinner {
    tty: bool,
    frame: usize,
    started: Instant,
    last: String,
}

impl Spinner {
    const FRAMES: [char; 4] = ['|', '/', '-', '\\'];

    fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            frame: 0,
            started: Instant::now(),
            last: String::new(),
        }
    }

    /// Show `status` for `period`, turning every 100 ms.
    async fn wait(&mut self, period: Duration, status: &str) {
        if !self.tty {
            if status != self.last {
                self.line(status);
            }
            tokio::time::sleep(period).await;
            return;
        }
        let until = Instant::now() + period;
        while Instant::now() < until {
            self.frame = (self.frame + 1) % Self::FRAMES.len();
            let elapsed = self.started.elapsed().as_secs();
            eprint!(
                "\r\x1b[2K{} {status} ({elapsed} s)",
                Self::FRAMES[self.frame]
            );
            let _ = std::io::stderr().flush();
            tokio::time::sleep(
                Duration::from_millis(100).min(until.saturating_duration_since(Instant::now())),
            )
            .await;
        }
    }

    fn line(&mut self, status: &str) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
        note(status);
        self.last = status.to_owned();
    }

    fn done(&mut self, status: &str) {
        self.line(status);
    }
}
