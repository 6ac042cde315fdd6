//! `admin clients update` and `clients rotate-secret`.

use super::fields;
use crate::admin::audit::Recorder;
use crate::admin::db_err;
use crate::cli::UpdateClient;
use crate::crypto::password::hash_secret;
use ciba_domain::client::AuthMethod;
use ciba_domain::ids::random_id;
use ciba_store::clients::{self, Changes};
use ciba_store::Store;
use serde_json::{json, Value};

/// Replace what the options name; everything else stays. Takes effect in every API process
/// within the client cache's TTL (`CIBA_CLIENT_CACHE_TTL`).
pub fn update(
    store: &Store,
    args: UpdateClient,
    ping_policy: &ciba_runtime::ping_target::TargetPolicy,
    rec: &Recorder,
    now: i64,
) -> Result<Value, String> {
    let existing = store
        .read(|c| clients::find(c, &args.client_id))
        .map_err(db_err)?
        .ok_or_else(|| format!("no client {}", args.client_id))?;
    if let Some(url) = &args.notification_endpoint {
        if existing.delivery_mode != "ping" {
            return Err("--notification-endpoint is for ping clients".into());
        }
        ping_policy
            .check_url(url)
            .map_err(|e| format!("--notification-endpoint {url}: {e}"))?;
    }
    let changes = Changes {
        name: args.name.as_deref().map(fields::name).transpose()?,
        scopes: args
            .scope
            .as_deref()
            .map(|s| fields::scopes(s).map(|s| s.to_string()))
            .transpose()?,
        callback_uris: (!args.callback_uris.is_empty())
            .then(|| fields::callback_uris(&args.callback_uris))
            .transpose()?,
        jwks: args
            .jwks_file
            .as_deref()
            .map(fields::jwks_file)
            .transpose()?,
        jwks_uri: args
            .jwks_uri
            .as_deref()
            .map(|u| fields::jwks_uri(u, ping_policy))
            .transpose()?,
        notification_endpoint: args.notification_endpoint,
    };
    let id = args.client_id.clone();
    if rec
        .write(store, Some(&id), |c| clients::update(c, &id, changes, now))
        .map_err(db_err)?
    {
        Ok(json!({"client_id": args.client_id, "updated": true}))
    } else {
        Err(format!("no client {}", args.client_id))
    }
}

/// A new secret for a secret client (printed once); the old one stays valid `grace` seconds.
pub fn rotate_secret(
    store: &Store,
    id: &str,
    grace: i64,
    rec: &Recorder,
    now: i64,
) -> Result<Value, String> {
    if !(0..=30 * 86_400).contains(&grace) {
        return Err("--grace must be between 0 and 2592000 seconds".into());
    }
    let row = store
        .read(|c| clients::find(c, id))
        .map_err(db_err)?
        .ok_or_else(|| format!("no client {id}"))?;
    if !AuthMethod::parse(&row.auth_method).is_some_and(AuthMethod::has_secret) {
        return Err(format!(
            "client {id} authenticates with {}: it has no secret",
            row.auth_method
        ));
    }
    let secret = random_id();
    let grace_until = (grace > 0).then_some(now + grace);
    let hash = hash_secret(&secret)?;
    if !rec
        .write(store, Some(id), |c| {
            clients::rotate_secret(c, id, &hash, grace_until, now)
        })
        .map_err(db_err)?
    {
        return Err(format!("no client {id} with a secret"));
    }
    Ok(json!({"client_id": id, "client_secret": secret, "previous_secret_until": grace_until}))
}
