//! What a merchant backend does with the ID token of an approved request, as a relying party
//! that trusts nothing but the issuer's URL (the last step of `examples/walkthrough.sh`):
//!
//! ```sh
//! cargo run -q -p ciba-api --example merchant_verify -- --issuer URL --client-id ID \
//!     --id-token JWT --statement BASE64URL [--auth-req-id ID] [--permission-id ID]
//! ```
//!
//! 1. discovery (`/.well-known/openid-configuration`): its `issuer` must be the one given;
//! 2. the header: `alg` ES256, PS256 or RS256 (never `none` or HMAC) and one the issuer
//!    lists in `id_token_signing_alg_values_supported`, a `kid`, `typ` JWT if any;
//! 3. the key of that `kid` from `jwks_uri` (a signing key of the header's algorithm), and
//!    the signature, `iss`, `aud` (the client id), `exp`, `iat`, `azp`;
//! 4. `permission_digest` is the SHA-256 (unpadded base64url) of the statement the merchant
//!    registered: of its decoded bytes, the JSON the user was shown (what the server
//!    computes, `ciba_domain::permission`, and what the app signs), so the approval is for
//!    exactly those bytes; and `auth_req_id` / `permission_id` when given.
//!
//! Prints the verified claims as JSON; exits non-zero, saying why, on any failure. The checks
//! are `merchant/verify.rs`, which the `merchant` example runs on the tokens it gets.

#[path = "merchant/verify.rs"]
mod verify;

use clap::Parser;
use serde_json::Value;
use std::process::ExitCode;
use std::time::Duration;
use verify::{Expected, Result};

#[derive(Parser)]
#[command(about = "Verify an ID token and its permission_digest as a merchant backend does")]
struct Cli {
    /// The issuer URL, exactly as discovery states it.
    #[arg(long, allow_hyphen_values = true)]
    issuer: String,
    /// The merchant's client id: the token's audience.
    #[arg(long, allow_hyphen_values = true)]
    client_id: String,
    /// The ID token from the CIBA grant.
    #[arg(long, allow_hyphen_values = true)]
    id_token: String,
    /// The base64url statement the merchant registered (the permission's `permission`).
    #[arg(long, allow_hyphen_values = true)]
    statement: String,
    /// The auth_req_id the merchant polled for.
    #[arg(long, allow_hyphen_values = true)]
    auth_req_id: Option<String>,
    /// The id of the permission the merchant registered.
    #[arg(long, allow_hyphen_values = true)]
    permission_id: Option<String>,
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
            eprintln!("merchant_verify: REFUSED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> Result<Value> {
    // reqwest is built with rustls and no crypto provider of its own: name one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let want = Expected {
        issuer: &cli.issuer,
        client_id: &cli.client_id,
        acr: None,
        auth_req_id: cli.auth_req_id.as_deref(),
        permission_id: cli.permission_id.as_deref(),
        statement: Some(&cli.statement),
    };
    let claims = verify::id_token(&http, &want, &cli.id_token).await?;
    eprintln!(
        "merchant_verify: signature (a key of the issuer's jwks_uri), iss, aud, exp and iat verified; \
         permission_digest is the SHA-256 of the registered statement"
    );
    Ok(claims)
}
