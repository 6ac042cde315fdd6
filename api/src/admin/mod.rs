//! The operator CLI. Every command validates its input and returns a JSON value that is
//! printed as JSON (`--json`) or as text.

pub(crate) mod audit;
mod clients;
mod people;
pub mod sandbox;

pub use clients::{validate_client_jwks, validate_https_url};

use crate::cli::{AdminCommand, JobsCommand, KeysCommand};
use crate::state::now;
use ciba_runtime::config::Config;
use ciba_runtime::crypto::keyring;
use ciba_store::{jobs, keys, Backend, Store, StoreError};
use serde_json::{json, Value};

pub fn open_store(config: &Config) -> Result<Store, String> {
    // An operator at a prompt wants the cause now, not after the pool's timeout.
    ciba_store::connect::probe(&config.database_url)
        .map_err(|f| ciba_runtime::database::unusable(&f))?;
    let store = Store::open(&config.database_url, 2).map_err(|e| e.to_string())?;
    if store.backend() == Backend::Sqlite {
        store.migrate().map_err(|e| e.to_string())?;
    } else if store.pending_migrations().map_err(|e| e.to_string())? > 0 {
        return Err("the database schema is not up to date: run `ciba-api migrate` first".into());
    }
    Ok(store)
}

pub fn db_err(e: StoreError) -> String {
    match e {
        StoreError::Conflict(_) => "already exists".into(),
        other => other.to_string(),
    }
}

/// Run an operator command and record it in the audit trail.
pub fn run(config: &Config, command: AdminCommand) -> Result<Value, String> {
    let store = open_store(config)?;
    let rec = audit::Recorder::new(audit::action_of(&command));
    let result = execute(config, &store, command, &rec);
    if result.is_err() || !rec.written() {
        audit::record_command(&store, rec.action(), result.as_ref());
    }
    result
}

fn execute(
    config: &Config,
    store: &Store,
    command: AdminCommand,
    rec: &audit::Recorder,
) -> Result<Value, String> {
    let store = store.clone();
    let now = now();
    match command {
        AdminCommand::Audit(c) => audit::run(&store, c),
        AdminCommand::Kek(crate::cli::KekCommand::Rotate) => {
            let kek = config.kek();
            let operator = audit::operator();
            let by = audit::by_operator(&operator);
            let n = keyring::reencrypt(&store, &kek, &by).map_err(|e| e.to_string())?;
            Ok(json!({"resealed": n, "kek_id": kek.id()}))
        }
        AdminCommand::Clients(c) => {
            let policy = ciba_runtime::ping_target::TargetPolicy::from_settings(&config.worker);
            clients::run(&store, c, &policy, rec, now)
        }
        AdminCommand::Users(c) => people::users(&store, c, rec, now),
        AdminCommand::Sandbox(c) => sandbox::run(&store, config, c, rec, now),
        AdminCommand::EnrollmentCodes(c) => people::enrollment_codes(&store, config, c, rec, now),
        AdminCommand::Devices(c) => people::devices(&store, c, rec, now),
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
            if !rec
                .write(&store, Some(&job_id), |c| jobs::retry_dead(c, &job_id, now))
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
