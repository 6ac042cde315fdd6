//! The operator CLI. Every command validates its input and returns a JSON value that is
//! printed as JSON (`--json`) or as text.

use crate::cli::{
    AdminCommand, AlgArg, ClientsCommand, DeliveryModeArg, DevicesCommand, EnrollmentCodesCommand,
    JobsCommand, KeysCommand, UsersCommand,
};
use crate::crypto::password::hash_secret;
use crate::state::now;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_domain::ids::{random_bytes, random_id};
use ciba_domain::nnin::Nnin;
use ciba_domain::scope::{all_supported, ScopeSet};
use ciba_domain::secret::sha256_b64url;
use ciba_runtime::config::Config;
use ciba_runtime::crypto::kek::Kek;
use ciba_runtime::crypto::keyring;
use ciba_store::clients::{self, ClientRow};
use ciba_store::users::{self, EnrollmentCodeRow, UserRow};
use ciba_store::{jobs, keys, Backend, Store, StoreError};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use serde_json::{json, Value};

pub fn open_store(config: &Config) -> Result<Store, String> {
    let store = Store::open(&config.database_url, 2).map_err(|e| e.to_string())?;
    if store.backend() == Backend::Sqlite {
        store.migrate().map_err(|e| e.to_string())?;
    } else if store.pending_migrations().map_err(|e| e.to_string())? > 0 {
        return Err("the database schema is not up to date: run `ciba-api migrate` first".into());
    }
    Ok(store)
}

fn db_err(e: StoreError) -> String {
    match e {
        StoreError::Conflict(_) => "already exists".into(),
        other => other.to_string(),
    }
}

pub fn run(config: &Config, command: AdminCommand) -> Result<Value, String> {
    let store = open_store(config)?;
    let now = now();
    match command {
        AdminCommand::Clients(c) => {
            let policy = ciba_runtime::ping_target::TargetPolicy::from_settings(&config.worker);
            clients_cmd(&store, c, &policy, now)
        }
        AdminCommand::Users(c) => users_cmd(&store, c, now),
        AdminCommand::EnrollmentCodes(EnrollmentCodesCommand::Create { nnin, require_hwk }) => {
            let nnin = Nnin::parse(&nnin).map_err(|e| format!("--nnin: {e}"))?;
            let user = store
                .read(|c| users::find_by_nnin(c, nnin.as_str()))
                .map_err(db_err)?
                .ok_or("no user has this NNIN")?;
            let code = random_id();
            let row = EnrollmentCodeRow {
                code_hash: sha256_b64url(code.as_bytes()),
                user_sub: user.sub,
                expires_at: now + config.enrollment_code_ttl,
                used_at: None,
                device_id: None,
                created_at: now,
                require_hwk,
            };
            store
                .read(|c| users::insert_enrollment_code(c, &row))
                .map_err(db_err)?;
            Ok(json!({"code": code, "expires_at": row.expires_at, "require_hwk": require_hwk}))
        }
        AdminCommand::Devices(DevicesCommand::List { sub }) => {
            let rows = store
                .read(|c| users::list_devices(c, sub.as_deref()))
                .map_err(db_err)?;
            Ok(Value::Array(
                rows.into_iter()
                    .map(|d| {
                        json!({"device_id": d.id, "sub": d.user_sub, "platform": d.platform, "manufacturer": d.manufacturer,
                               "model": d.model, "name": d.name, "status": d.status, "key_protection": d.key_protection,
                               "created_at": d.created_at})
                    })
                    .collect(),
            ))
        }
        AdminCommand::Devices(DevicesCommand::Revoke { device_id }) => {
            if !store
                .read(|c| users::revoke_device(c, &device_id, now))
                .map_err(db_err)?
            {
                return Err(format!("no active device {device_id}"));
            }
            Ok(json!({"device_id": device_id, "status": "revoked"}))
        }
        AdminCommand::Keys(KeysCommand::Rotate { lead }) => {
            let lead = lead.unwrap_or(config.key_publish_lead);
            if !(0..=30 * 86_400).contains(&lead) {
                return Err("--lead must be between 0 and 2592000 seconds".into());
            }
            let kek = Kek::new(&config.key_encryption_key);
            let kids = keyring::rotate(&store, &kek, now, lead, config.max_token_lifetime())
                .map_err(|e| e.to_string())?;
            Ok(json!({"published": kids, "signs_from": now + lead}))
        }
        AdminCommand::Jobs(JobsCommand::List { status, limit }) => {
            let rows = store
                .read(|c| jobs::list(c, status.as_str(), limit.clamp(1, 10_000)))
                .map_err(db_err)?;
            Ok(Value::Array(
                rows.into_iter()
                    .map(|j| {
                        json!({"id": j.id, "kind": j.kind, "status": j.status, "attempts": j.attempts,
                               "run_at": j.run_at, "last_error": j.last_error,
                               "created_at": j.created_at, "updated_at": j.updated_at})
                    })
                    .collect(),
            ))
        }
        AdminCommand::Jobs(JobsCommand::Retry { job_id }) => {
            if !store
                .write_one(|c| jobs::retry_dead(c, &job_id, now))
                .map_err(db_err)?
            {
                return Err(format!("no dead job {job_id}"));
            }
            Ok(json!({"id": job_id, "status": jobs::QUEUED}))
        }
        AdminCommand::Keys(KeysCommand::List) => {
            let rows = store.read(keys::all).map_err(db_err)?;
            Ok(Value::Array(
                rows.into_iter()
                    .map(|k| {
                        json!({"kid": k.kid, "purpose": k.purpose, "alg": k.alg, "created_at": k.created_at,
                               "activates_at": k.activates_at, "retires_at": k.retires_at, "expires_at": k.expires_at})
                    })
                    .collect(),
            ))
        }
    }
}

fn clients_cmd(
    store: &Store,
    cmd: ClientsCommand,
    ping_policy: &ciba_runtime::ping_target::TargetPolicy,
    now: i64,
) -> Result<Value, String> {
    match cmd {
        ClientsCommand::Create {
            name,
            scope,
            callback_uris,
            sub_nnin,
            jwks_file,
            delivery_mode,
            notification_endpoint,
            id_token_alg,
        } => {
            let name = name.trim().to_owned();
            if name.is_empty() || name.len() > 200 {
                return Err("--name must be 1 to 200 characters".into());
            }
            // The app shows the client's name beside what the user approves.
            if let Some(hidden) = ciba_domain::text::first_hidden(&name, &[]) {
                return Err(format!("--name must not contain {hidden}"));
            }
            let scopes =
                ScopeSet::parse(&scope).map_err(|e| format!("--scope: {}", e.description))?;
            if let Some(bad) = scopes.iter().find(|s| !all_supported().contains(s)) {
                return Err(format!("--scope: unknown scope {bad}"));
            }
            for uri in &callback_uris {
                validate_https_url(uri).map_err(|e| format!("--callback-uri {uri}: {e}"))?;
            }
            let jwks = match jwks_file {
                Some(path) => {
                    let text =
                        std::fs::read_to_string(&path).map_err(|e| format!("--jwks-file: {e}"))?;
                    validate_client_jwks(&text).map_err(|e| format!("--jwks-file: {e}"))?;
                    Some(text)
                }
                None => None,
            };
            let (mode, endpoint) = match (delivery_mode, notification_endpoint) {
                (DeliveryModeArg::Poll, None) => ("poll", None),
                (DeliveryModeArg::Poll, Some(_)) => {
                    return Err("--notification-endpoint needs --delivery-mode ping".into())
                }
                (DeliveryModeArg::Ping, None) => {
                    return Err("--delivery-mode ping needs --notification-endpoint".into())
                }
                (DeliveryModeArg::Ping, Some(url)) => {
                    // The worker checks again at delivery, on the addresses the host resolves to.
                    ping_policy
                        .check_url(&url)
                        .map_err(|e| format!("--notification-endpoint {url}: {e}"))?;
                    ("ping", Some(url))
                }
            };
            let client_id = URL_SAFE_NO_PAD.encode(random_bytes::<16>());
            let secret = random_id();
            let row = ClientRow {
                id: client_id.clone(),
                name,
                secret_hash: hash_secret(&secret)?,
                scopes: scopes.to_string(),
                callback_uris: serde_json::to_string(&callback_uris).map_err(|e| e.to_string())?,
                sub_nnin,
                jwks,
                id_token_alg: match id_token_alg {
                    AlgArg::Es256 => "ES256".into(),
                    AlgArg::Rs256 => "RS256".into(),
                },
                delivery_mode: mode.into(),
                notification_endpoint: endpoint,
                disabled: false,
                created_at: now,
                updated_at: now,
            };
            store.read(|c| clients::insert(c, &row)).map_err(db_err)?;
            Ok(json!({"client_id": client_id, "client_secret": secret}))
        }
        ClientsCommand::List => {
            let rows = store.read(clients::list).map_err(db_err)?;
            Ok(Value::Array(
                rows.into_iter()
                    .map(|c| {
                        json!({"client_id": c.id, "name": c.name, "scope": c.scopes, "delivery_mode": c.delivery_mode,
                               "id_token_alg": c.id_token_alg, "sub_nnin": c.sub_nnin, "disabled": c.disabled,
                               "private_key_jwt": c.jwks.is_some(), "created_at": c.created_at})
                    })
                    .collect(),
            ))
        }
        ClientsCommand::Disable { client_id } | ClientsCommand::Enable { client_id }
            if client_id.is_empty() =>
        {
            Err("client id is empty".into())
        }
        ClientsCommand::Disable { client_id } => set_disabled(store, &client_id, true, now),
        ClientsCommand::Enable { client_id } => set_disabled(store, &client_id, false, now),
    }
}

fn set_disabled(store: &Store, id: &str, disabled: bool, now: i64) -> Result<Value, String> {
    if !store
        .read(|c| clients::set_disabled(c, id, disabled, now))
        .map_err(db_err)?
    {
        return Err(format!("no client {id}"));
    }
    Ok(json!({"client_id": id, "disabled": disabled}))
}

fn users_cmd(store: &Store, cmd: UsersCommand, now: i64) -> Result<Value, String> {
    match cmd {
        UsersCommand::Create {
            nnin,
            given_name,
            family_name,
            birthdate,
            bankid_pid,
        } => {
            let nnin = Nnin::parse(&nnin).map_err(|e| format!("--nnin: {e}"))?;
            for (flag, v) in [
                ("--given-name", &given_name),
                ("--family-name", &family_name),
            ] {
                if v.trim().is_empty() || v.len() > 200 {
                    return Err(format!("{flag} must be 1 to 200 characters"));
                }
            }
            chrono::NaiveDate::parse_from_str(&birthdate, "%Y-%m-%d")
                .ok()
                .filter(|_| birthdate.len() == 10)
                .ok_or("--birthdate must be a date as YYYY-MM-DD")?;
            let row = UserRow {
                sub: random_id(),
                nnin: nnin.as_str().to_owned(),
                given_name: given_name.trim().to_owned(),
                family_name: family_name.trim().to_owned(),
                birthdate,
                bankid_pid,
                created_at: now,
                updated_at: now,
            };
            store
                .read(|c| users::insert_user(c, &row))
                .map_err(|e| match e {
                    StoreError::Conflict(_) => "a user with this NNIN already exists".to_owned(),
                    other => other.to_string(),
                })?;
            Ok(json!({"sub": row.sub}))
        }
        UsersCommand::List => {
            let rows = store.read(users::list_users).map_err(db_err)?;
            Ok(Value::Array(
                rows.into_iter()
                    .map(|u| json!({"sub": u.sub, "given_name": u.given_name, "family_name": u.family_name, "created_at": u.created_at}))
                    .collect(),
            ))
        }
    }
}

/// An absolute https URL without fragment (callback URIs; notification endpoints follow
/// [`ciba_runtime::ping_target`]).
pub fn validate_https_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| e.to_string())?;
    if url.fragment().is_some() {
        return Err("must not have a fragment".into());
    }
    match url.scheme() {
        "https" if url.host_str().is_some() => Ok(()),
        _ => Err("must be an absolute https URL".into()),
    }
}

/// A client's JWK set: public EC P-256 or RSA keys only.
pub fn validate_client_jwks(text: &str) -> Result<(), String> {
    let raw: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let keys = raw
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("expected a JWK set {\"keys\": [...]}")?;
    if keys.is_empty() {
        return Err("the key set is empty".into());
    }
    if keys
        .iter()
        .any(|k| k.get("d").is_some() || k.get("p").is_some())
    {
        return Err("contains private key material; register public keys only".into());
    }
    let set: JwkSet =
        serde_json::from_value(raw.clone()).map_err(|e| format!("not a valid JWK set: {e}"))?;
    for k in &set.keys {
        match &k.algorithm {
            AlgorithmParameters::EllipticCurve(ec)
                if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256 => {}
            AlgorithmParameters::RSA(_) => {}
            _ => return Err("only EC P-256 and RSA keys are supported".into()),
        }
    }
    Ok(())
}

/// Render a command's result for a person.
pub fn render_text(v: &Value) -> String {
    match v {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}: {}",
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Array(items) if items.is_empty() => "(none)".into(),
        Value::Array(items) => items
            .iter()
            .map(render_text)
            .collect::<Vec<_>>()
            .join("\n\n"),
        other => other.to_string(),
    }
}
