//! `admin clients ...`: registering merchant clients, changing them, rotating their secrets,
//! switching them off and on.

mod change;
mod create;
mod fields;

pub use fields::{validate_client_jwks, validate_https_url};

use super::audit::Recorder;
use super::db_err;
use crate::cli::ClientsCommand;
use ciba_store::clients::{self, ClientRow};
use ciba_store::Store;
use serde_json::{json, Value};

/// What an operator sees of a client (never a secret).
fn view(c: &ClientRow) -> Value {
    json!({"client_id": c.id, "name": c.name, "scope": c.scopes, "delivery_mode": c.delivery_mode,
           "notification_endpoint": c.notification_endpoint,
           "callback_uris": serde_json::from_str::<Value>(&c.callback_uris).unwrap_or(Value::Null),
           "id_token_alg": c.id_token_alg, "sub_nnin": c.sub_nnin, "disabled": c.disabled,
           "token_endpoint_auth_method": c.auth_method, "profile": c.profile, "tls_subject_dn": c.tls_subject_dn,
           "jwks": c.jwks.is_some(), "jwks_uri": c.jwks_uri, "previous_secret_until": c.previous_secret_until,
           "created_at": c.created_at, "updated_at": c.updated_at})
}

pub fn run(
    store: &Store,
    cmd: ClientsCommand,
    ping_policy: &ciba_runtime::ping_target::TargetPolicy,
    rec: &Recorder,
    now: i64,
) -> Result<Value, String> {
    match cmd {
        ClientsCommand::Create(args) => create::create(store, args, ping_policy, rec, now),
        ClientsCommand::List => {
            let rows = store.read(clients::list).map_err(db_err)?;
            Ok(Value::Array(rows.iter().map(view).collect()))
        }
        ClientsCommand::Show { client_id } => store
            .read(|c| clients::find(c, &client_id))
            .map_err(db_err)?
            .map(|c| view(&c))
            .ok_or_else(|| format!("no client {client_id}")),
        ClientsCommand::Update(args) => change::update(store, args, ping_policy, rec, now),
        ClientsCommand::RotateSecret { client_id, grace } => {
            change::rotate_secret(store, &client_id, grace, rec, now)
        }
        ClientsCommand::Disable { client_id } | ClientsCommand::Enable { client_id }
            if client_id.is_empty() =>
        {
            Err("client id is empty".into())
        }
        ClientsCommand::Disable { client_id } => set_disabled(store, &client_id, true, rec, now),
        ClientsCommand::Enable { client_id } => set_disabled(store, &client_id, false, rec, now),
    }
}

fn set_disabled(
    store: &Store,
    id: &str,
    disabled: bool,
    rec: &Recorder,
    now: i64,
) -> Result<Value, String> {
    if !rec
        .write(store, Some(id), |c| {
            clients::set_disabled(c, id, disabled, now)
        })
        .map_err(db_err)?
    {
        return Err(format!("no client {id}"));
    }
    Ok(json!({"client_id": id, "disabled": disabled}))
}
