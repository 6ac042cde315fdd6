//! The client registry.

use crate::error::{StoreError, StoreResult};
use crate::schema::clients;
use crate::DbConnection;
use ciba_domain::client::{AuthMethod, Client, DeliveryMode, Profile, SigningAlg};
use ciba_domain::scope::ScopeSet;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = clients)]
pub struct ClientRow {
    pub id: String,
    pub name: String,
    /// None for clients whose method has no secret.
    pub secret_hash: Option<String>,
    pub auth_method: String,
    /// The secret before the last rotation, accepted until `previous_secret_until`.
    pub previous_secret_hash: Option<String>,
    pub previous_secret_until: Option<i64>,
    pub profile: Option<String>,
    pub tls_subject_dn: Option<String>,
    pub scopes: String,
    pub callback_uris: String,
    pub sub_nnin: bool,
    pub jwks: Option<String>,
    pub jwks_uri: Option<String>,
    pub id_token_alg: String,
    pub delivery_mode: String,
    pub notification_endpoint: Option<String>,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ClientRow {
    /// Bytes held by this row's strings (for caches bounded in bytes).
    pub fn approximate_size(&self) -> usize {
        let opt = |o: &Option<String>| o.as_ref().map_or(0, String::len);
        std::mem::size_of::<Self>()
            + self.id.len()
            + self.name.len()
            + opt(&self.secret_hash)
            + self.auth_method.len()
            + opt(&self.previous_secret_hash)
            + opt(&self.profile)
            + opt(&self.tls_subject_dn)
            + self.scopes.len()
            + self.callback_uris.len()
            + opt(&self.jwks)
            + opt(&self.jwks_uri)
            + self.id_token_alg.len()
            + self.delivery_mode.len()
            + opt(&self.notification_endpoint)
    }

    /// The domain view of this row; a row that no longer parses is a data error.
    pub fn to_domain(&self) -> StoreResult<Client> {
        let bad =
            |what: &str| StoreError::Other(format!("client {} has an invalid {what}", self.id));
        let scopes = ScopeSet::parse(&self.scopes).map_err(|_| bad("scope list"))?;
        let callback_uris: Vec<String> =
            serde_json::from_str(&self.callback_uris).map_err(|_| bad("callback list"))?;
        let id_token_alg =
            SigningAlg::parse(&self.id_token_alg).ok_or_else(|| bad("id_token_alg"))?;
        let auth_method = AuthMethod::parse(&self.auth_method).ok_or_else(|| bad("auth_method"))?;
        let profile = match &self.profile {
            None => None,
            Some(p) => Some(Profile::parse(p).ok_or_else(|| bad("profile"))?),
        };
        let delivery = match (self.delivery_mode.as_str(), &self.notification_endpoint) {
            ("poll", _) => DeliveryMode::Poll,
            ("ping", Some(endpoint)) => DeliveryMode::Ping {
                notification_endpoint: endpoint.clone(),
            },
            _ => return Err(bad("delivery mode")),
        };
        Ok(Client {
            id: self.id.clone(),
            name: self.name.clone(),
            scopes,
            callback_uris,
            sub_nnin: self.sub_nnin,
            jwks: self.jwks.clone(),
            jwks_uri: self.jwks_uri.clone(),
            auth_method,
            profile,
            tls_subject_dn: self.tls_subject_dn.clone(),
            id_token_alg,
            delivery,
            disabled: self.disabled,
        })
    }
}

pub fn insert(conn: &mut DbConnection, row: &ClientRow) -> StoreResult<()> {
    diesel::insert_into(clients::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut DbConnection, id: &str) -> StoreResult<Option<ClientRow>> {
    Ok(clients::table
        .filter(clients::id.eq(id))
        .select(ClientRow::as_select())
        .first(conn)
        .optional()?)
}

/// Whether any client is registered (a fresh installation has none).
pub fn any(conn: &mut DbConnection) -> StoreResult<bool> {
    use diesel::dsl::exists;
    Ok(diesel::select(exists(clients::table.select(clients::id))).get_result(conn)?)
}

pub fn list(conn: &mut DbConnection) -> StoreResult<Vec<ClientRow>> {
    Ok(clients::table
        .order(clients::created_at.asc())
        .select(ClientRow::as_select())
        .load(conn)?)
}

/// Replace a client's secret hash; the old one stays valid until `grace_until` (none: it
/// stops at once). False when there is no such client with a secret.
pub fn rotate_secret(
    conn: &mut DbConnection,
    id: &str,
    new_hash: &str,
    grace_until: Option<i64>,
    now: i64,
) -> StoreResult<bool> {
    let Some(row) = find(conn, id)? else {
        return Ok(false);
    };
    let Some(old) = row.secret_hash else {
        return Ok(false);
    };
    let n = diesel::update(clients::table.filter(clients::id.eq(id)))
        .set((
            clients::secret_hash.eq(new_hash),
            clients::previous_secret_hash.eq(grace_until.map(|_| old)),
            clients::previous_secret_until.eq(grace_until),
            clients::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// What `clients update` may change.
#[derive(Debug, Default)]
pub struct Changes {
    pub name: Option<String>,
    pub scopes: Option<String>,
    pub callback_uris: Option<String>,
    pub jwks: Option<String>,
    pub jwks_uri: Option<String>,
    pub notification_endpoint: Option<String>,
}

/// Apply `changes` to client `id`; false when there is no such client.
pub fn update(conn: &mut DbConnection, id: &str, changes: Changes, now: i64) -> StoreResult<bool> {
    let Some(mut row) = find(conn, id)? else {
        return Ok(false);
    };
    row.name = changes.name.unwrap_or(row.name);
    row.scopes = changes.scopes.unwrap_or(row.scopes);
    row.callback_uris = changes.callback_uris.unwrap_or(row.callback_uris);
    // Keys come from one place: a new set replaces a URL, and the reverse.
    if changes.jwks.is_some() || changes.jwks_uri.is_some() {
        row.jwks = changes.jwks;
        row.jwks_uri = changes.jwks_uri;
    }
    row.notification_endpoint = changes.notification_endpoint.or(row.notification_endpoint);
    let n = diesel::update(clients::table.filter(clients::id.eq(id)))
        .set((
            clients::name.eq(&row.name),
            clients::scopes.eq(&row.scopes),
            clients::callback_uris.eq(&row.callback_uris),
            clients::jwks.eq(&row.jwks),
            clients::jwks_uri.eq(&row.jwks_uri),
            clients::notification_endpoint.eq(&row.notification_endpoint),
            clients::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

pub fn set_disabled(
    conn: &mut DbConnection,
    id: &str,
    disabled: bool,
    now: i64,
) -> StoreResult<bool> {
    let n = diesel::update(clients::table.filter(clients::id.eq(id)))
        .set((clients::disabled.eq(disabled), clients::updated_at.eq(now)))
        .execute(conn)?;
    Ok(n == 1)
}
