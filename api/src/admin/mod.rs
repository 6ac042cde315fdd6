//! The operator CLI. Every command validates its input and returns a JSON value that is
//! printed as JSON (`--json`) or as text.

pub(crate) mod audit;
mod clients;

pub use clients::{validate_client_jwks, validate_https_url};

use crate::cli::{
    AdminCommand, DevicesCommand, EnrollmentCodesCommand, JobsCommand, KeysCommand, UsersCommand,
};
use crate::state::now;
use ciba_domain::ids::random_id;
use ciba_domain::nnin::Nnin;
use ciba_domain::secret::sha256_b64url;
use ciba_runtime::config::Config;
use ciba_runtime::crypto::keyring;
use ciba_store::users::{self, EnrollmentCodeRow, UserRow};
use ciba_store::{jobs, keys, Backend, Store, StoreError};
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

pub(crate) fn db_err(e: StoreError) -> String {
    match e {
        StoreError::Conflict(_) => "already exists".into(),
        other => other.to_string(),
    }
}

/// Run an operator command and record it in the audit trail.
pub fn run(config: &Config, command: AdminCommand) -> Result<Value, String> {
    let store = open_store(config)?;
    let action = audit::action_of(&command);
    let result = execute(config, &store, command);
    audit::record_command(&store, action, result.as_ref());
    result
}

fn execute(config: &Config, store: &Store, command: AdminCommand) -> Result<Value, String> {
    let store = store.clone();
    let now = now();
    match command {
        AdminCommand::Audit(c) => audit::run(&store, c),
        AdminCommand::Kek(crate::cli::KekCommand::Rotate) => {
            let kek = config.kek();
            let n = keyring::reencrypt(&store, &kek).map_err(|e| e.to_string())?;
            Ok(json!({"resealed": n, "kek_id": kek.id()}))
        }
        AdminCommand::Clients(c) => {
            let policy = ciba_runtime::ping_target::TargetPolicy::from_settings(&config.worker);
            clients::run(&store, c, &policy, now)
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
            let kek = config.kek();
            let operator = audit::operator();
            let by = audit::by_operator(&operator);
            let kids = keyring::rotate(&store, &kek, &by, now, lead, config.max_token_lifetime())
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
        AdminCommand::Keys(KeysCommand::Revoke { kid }) => {
            let kek = config.kek();
            let operator = audit::operator();
            let by = audit::by_operator(&operator);
            match keyring::revoke(&store, &kek, &kid, &by, now).map_err(|e| e.to_string())? {
                Some(r) => Ok(json!({"revoked": r.kid, "successor": r.successor,
                                     "effective_within_seconds": config.key_refresh_interval})),
                None => Err(format!("no published key {kid}")),
            }
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
