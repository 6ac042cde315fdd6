//! A simulated authenticating app: what the phone does in the README walk-through
//! (`examples/walkthrough.sh`), over the app API of `openapi.yaml` (tag `app`).
//!
//! ```sh
//! cargo run -q -p ciba-api --example app -- enroll --issuer URL --code CODE --key-file PATH \
//!     [--platform ios --manufacturer Apple --model iPhone11,2]    # prints the device id
//! cargo run -q -p ciba-api --example app -- approve --issuer URL --key-file PATH [--ref REF]
//! cargo run -q -p ciba-api --example app -- decline --issuer URL --key-file PATH [--ref REF]
//! ```
//!
//! `enroll` makes a P-256 key, enrolls its public half with a one-time enrollment code and
//! saves the private key as a JWK (`kid` = the device id, file mode 0600). A real app keeps
//! its key in the secure enclave and enrolls it as hardware-bound (`hwk`); this one's key is
//! a file, so it says `swk`, which reaches eIDAS substantial but not high.
//!
//! `approve` and `decline` authenticate every request with a fresh device JWT (ES256,
//! `kid` = `sub` = device id, `aud` = issuer, 60 s, single-use `jti`), list the pending
//! requests, fetch the one to answer and show it as the app would, check that the statement
//! shown is the one whose digest it signs, and post the signed decision. The decision's
//! result (`{"status", "redirect_uri"}`) goes to stdout; what the user would see to stderr.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use clap::{Args, Parser, Subcommand};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

type Result<T> = std::result::Result<T, String>;

#[derive(Parser)]
#[command(about = "A simulated authenticating app (its device key is a file)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enroll this phone with a one-time enrollment code; prints the device id.
    Enroll(EnrollArgs),
    /// Show a pending request, check its digest and approve it.
    Approve(DecideArgs),
    /// Show a pending request, check its digest and decline it.
    Decline(DecideArgs),
}

#[derive(Args)]
struct EnrollArgs {
    /// The server's issuer URL: the app API is under it and device JWTs are addressed to it.
    #[arg(long, allow_hyphen_values = true)]
    issuer: String,
    /// The one-time code of `ciba-api admin enrollment-codes create`.
    #[arg(long, allow_hyphen_values = true)]
    code: String,
    /// Where to save the device's private key (a new file).
    #[arg(long, allow_hyphen_values = true)]
    key_file: PathBuf,
    #[arg(long, default_value = "ios")]
    platform: String,
    #[arg(long, default_value = "Apple")]
    manufacturer: String,
    #[arg(long, default_value = "iPhone11,2")]
    model: String,
    /// The name the user gives the phone.
    #[arg(long, default_value = "Walk-through phone")]
    name: String,
}

#[derive(Args)]
struct DecideArgs {
    #[arg(long, allow_hyphen_values = true)]
    issuer: String,
    /// The key file `enroll` wrote.
    #[arg(long, allow_hyphen_values = true)]
    key_file: PathBuf,
    /// The request's `ref`, as the universal link that opened the app carries it; without
    /// it, the device's only pending request.
    #[arg(long = "ref", allow_hyphen_values = true)]
    link_ref: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let done = match cli.command {
        Command::Enroll(args) => enroll(args).await,
        Command::Approve(args) => decide(args, "approve").await,
        Command::Decline(args) => decide(args, "decline").await,
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("app: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The app API of one server.
struct Api {
    http: reqwest::Client,
    issuer: String,
}

impl Api {
    fn new(issuer: &str) -> Result<Self> {
        // reqwest is built with rustls and no crypto provider of its own: name one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        let issuer = issuer.trim_end_matches('/').to_owned();
        if !issuer.starts_with("http://") && !issuer.starts_with("https://") {
            return Err(format!("--issuer must be an http(s) URL, not {issuer:?}"));
        }
        Ok(Self { http, issuer })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// Send `req`; its JSON body when the answer is 2xx, else an error with the server's body.
    async fn send(&self, what: &str, req: reqwest::RequestBuilder) -> Result<Value> {
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{what}: no answer: {e}"))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| format!("{what}: HTTP {status}, unreadable body: {e}"))?;
        if !status.is_success() {
            return Err(format!("{what}: HTTP {status}: {}", shorten(&body)));
        }
        serde_json::from_str(&body)
            .map_err(|e| format!("{what}: HTTP {status}, not JSON ({e}): {}", shorten(&body)))
    }
}

fn shorten(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(2000) {
        Some((at, _)) => format!("{}...", &body[..at]),
        None => body.to_owned(),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A fresh single-use id (`jti`): 128 random bits, base64url.
fn jti() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The enrolled device: its id and private key.
struct Device {
    id: String,
    key: EncodingKey,
}

impl Device {
    fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the key file {}: {e}", path.display()))?;
        let bad = |what: &str| format!("{} is not a key file of `enroll`: {what}", path.display());
        let jwk: Value = serde_json::from_str(&text).map_err(|_| bad("not JSON"))?;
        let field = |k: &str| jwk.get(k).and_then(Value::as_str);
        if field("kty") != Some("EC") || field("crv") != Some("P-256") {
            return Err(bad("not an EC P-256 JWK"));
        }
        let id = field("kid").ok_or_else(|| bad("no kid (the device id)"))?;
        let d = field("d")
            .and_then(|d| URL_SAFE_NO_PAD.decode(d).ok())
            .ok_or_else(|| bad("no private key d"))?;
        let secret = p256::SecretKey::from_slice(&d).map_err(|_| bad("d is not a P-256 key"))?;
        let (x, y) = coordinates(&secret);
        if field("x") != Some(x.as_str()) || field("y") != Some(y.as_str()) {
            return Err(bad("x and y are not the public half of d"));
        }
        Ok(Self {
            id: id.to_owned(),
            key: encoding_key(&secret)?,
        })
    }

    fn sign(&self, claims: &Value) -> Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.id.clone());
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|e| format!("cannot sign: {e}"))
    }

    /// `Authorization: Bearer` for one app API request.
    fn jwt(&self, api: &Api) -> Result<String> {
        let iat = now();
        self.sign(
            &json!({"sub": self.id, "aud": api.issuer, "iat": iat, "exp": iat + 60, "jti": jti()}),
        )
    }
}

fn coordinates(secret: &p256::SecretKey) -> (String, String) {
    let point = secret.public_key().to_encoded_point(false);
    let b64 =
        |c: Option<&p256::FieldBytes>| URL_SAFE_NO_PAD.encode(c.map(|c| &c[..]).unwrap_or(&[]));
    (b64(point.x()), b64(point.y()))
}

fn encoding_key(secret: &p256::SecretKey) -> Result<EncodingKey> {
    let der = secret
        .to_pkcs8_der()
        .map_err(|e| format!("cannot encode the key: {e}"))?;
    Ok(EncodingKey::from_ec_der(der.as_bytes()))
}

async fn enroll(args: EnrollArgs) -> Result<()> {
    let api = Api::new(&args.issuer)?;
    if args.key_file.exists() {
        return Err(format!(
            "{} exists: enroll writes a new key file (remove it first)",
            args.key_file.display()
        ));
    }
    let secret = p256::SecretKey::random(&mut OsRng);
    let (x, y) = coordinates(&secret);
    let body = json!({
        "enrollment_code": args.code,
        "device_info": {"p": args.platform, "ma": args.manufacturer, "mo": args.model},
        "public_jwk": {"kty": "EC", "crv": "P-256", "x": x, "y": y},
        "name": args.name,
        "key_protection": "swk",
    });
    let req = api.http.post(api.url("/app/v1/devices")).json(&body);
    let enrolled = api.send("POST /app/v1/devices", req).await?;
    let id = enrolled
        .get("device_id")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("POST /app/v1/devices: no device_id in {enrolled}"))?;
    let d = URL_SAFE_NO_PAD.encode(secret.to_bytes());
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": id, "x": x, "y": y, "d": d});
    write_private(&args.key_file, &format!("{jwk:#}\n"))?;
    eprintln!(
        "app: enrolled {} {} {} as device {id}; key saved in {}",
        args.platform,
        args.manufacturer,
        args.model,
        args.key_file.display()
    );
    println!("{id}");
    Ok(())
}

/// Create `path` (it must not exist) readable by its owner only.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| {
            format!(
                "enrolled, but cannot save the key in {}: {e}",
                path.display()
            )
        })
}

async fn decide(args: DecideArgs, decision: &str) -> Result<()> {
    let api = Api::new(&args.issuer)?;
    let device = Device::load(&args.key_file)?;

    let req = api
        .http
        .get(api.url("/app/v1/auth-requests?status=pending"))
        .bearer_auth(device.jwt(&api)?);
    let listed = api.send("GET /app/v1/auth-requests", req).await?;
    let pending: Vec<&str> = listed
        .get("auth_requests")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("GET /app/v1/auth-requests: no auth_requests in {listed}"))?
        .iter()
        .filter_map(|r| r.get("ref").and_then(Value::as_str))
        .collect();
    eprintln!("app: {} pending request(s) for this device", pending.len());
    let link_ref = match (args.link_ref.as_deref(), pending.as_slice()) {
        (Some(wanted), _) if pending.contains(&wanted) => wanted.to_owned(),
        (Some(wanted), _) => {
            return Err(format!(
                "request {wanted} is not pending for this device (pending: {pending:?})"
            ))
        }
        (None, [only]) => (*only).to_owned(),
        (None, []) => return Err("no request is pending for this device".into()),
        (None, many) => {
            return Err(format!(
                "several requests are pending, pick one with --ref: {many:?}"
            ))
        }
    };
    if !link_ref
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!("the server listed a malformed ref {link_ref:?}"));
    }

    let path = format!("/app/v1/auth-requests/{link_ref}");
    let req = api.http.get(api.url(&path)).bearer_auth(device.jwt(&api)?);
    let view = api.send(&format!("GET {path}"), req).await?;
    show(&view);
    let digest = checked_digest(&view)?;

    let signed = device.sign(&json!({
        "ref": link_ref, "decision": decision, "permission_digest": digest,
        "iat": now(), "jti": jti(), "amr": ["swk"],
    }))?;
    let path = format!("{path}/decision");
    let req = api
        .http
        .post(api.url(&path))
        .bearer_auth(device.jwt(&api)?)
        .json(&json!({"signed_decision": signed}));
    let result = api.send(&format!("POST {path}"), req).await?;
    eprintln!("app: the user chose to {decision}; the server answered:");
    println!("{result}");
    Ok(())
}

/// What the app shows the user before they decide.
fn show(view: &Value) {
    let text = |k: &str| view.get(k).and_then(Value::as_str).unwrap_or("-");
    eprintln!("app: ---- what the phone shows ----");
    eprintln!("app: {} asks for your approval", text("client_name"));
    eprintln!("app: type {}, level {}", text("type"), text("loa"));
    if let Some(message) = view.get("binding_message").and_then(Value::as_str) {
        eprintln!("app: check that the shop shows the code {message}");
    }
    let statement = view.get("statement").cloned().unwrap_or(Value::Null);
    let pretty = serde_json::to_string_pretty(&statement).unwrap_or_default();
    for line in pretty.lines() {
        eprintln!("app:   {line}");
    }
    eprintln!("app: -------------------------------");
}

/// The digest the app signs: of the statement it showed, never just the server's word.
fn checked_digest(view: &Value) -> Result<String> {
    if view.get("status").and_then(Value::as_str) != Some("pending") {
        return Err(format!("the request is not pending: {}", view["status"]));
    }
    let bytes = view
        .get("permission")
        .and_then(Value::as_str)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .ok_or("the request has no base64url permission")?;
    let decoded: Value = serde_json::from_slice(&bytes)
        .map_err(|_| "the request's permission is not JSON".to_owned())?;
    if Some(&decoded) != view.get("statement") {
        return Err("the statement shown is not the permission registered".into());
    }
    let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(&bytes));
    if view.get("permission_digest").and_then(Value::as_str) != Some(digest.as_str()) {
        return Err(format!(
            "permission_digest {} is not the SHA-256 of the permission ({digest})",
            view["permission_digest"]
        ));
    }
    Ok(digest)
}
