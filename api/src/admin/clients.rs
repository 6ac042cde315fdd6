//! `admin clients ...`: registering merchant clients and switching them off and on.

use super::db_err;
use crate::auth::certificate::registrable_dn;
use crate::cli::{
    AlgArg, AuthMethodArg, ClientsCommand, CreateClient, DeliveryModeArg, ProfileArg,
};
use crate::crypto::password::hash_secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_domain::client::{AuthMethod, Profile, SigningAlg};
use ciba_domain::ids::{random_bytes, random_id};
use ciba_domain::scope::{all_supported, ScopeSet};
use ciba_store::clients::{self, ClientRow};
use ciba_store::Store;
use jsonwebtoken::jwk::JwkSet;
use serde_json::{json, Value};

pub fn run(
    store: &Store,
    cmd: ClientsCommand,
    ping_policy: &ciba_runtime::ping_target::TargetPolicy,
    now: i64,
) -> Result<Value, String> {
    match cmd {
        ClientsCommand::Create(args) => create(store, args, ping_policy, now),
        ClientsCommand::List => {
            let rows = store.read(clients::list).map_err(db_err)?;
            Ok(Value::Array(
                rows.into_iter()
                    .map(|c| {
                        json!({"client_id": c.id, "name": c.name, "scope": c.scopes, "delivery_mode": c.delivery_mode,
                               "id_token_alg": c.id_token_alg, "sub_nnin": c.sub_nnin, "disabled": c.disabled,
                               "token_endpoint_auth_method": c.auth_method, "profile": c.profile, "tls_subject_dn": c.tls_subject_dn,
                               "jwks": c.jwks.is_some(), "created_at": c.created_at})
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

fn auth_method(arg: AuthMethodArg) -> AuthMethod {
    match arg {
        AuthMethodArg::ClientSecretBasic => AuthMethod::ClientSecretBasic,
        AuthMethodArg::ClientSecretPost => AuthMethod::ClientSecretPost,
        AuthMethodArg::PrivateKeyJwt => AuthMethod::PrivateKeyJwt,
        AuthMethodArg::TlsClientAuth => AuthMethod::TlsClientAuth,
        AuthMethodArg::SelfSignedTlsClientAuth => AuthMethod::SelfSignedTlsClientAuth,
    }
}

fn signing_alg(arg: AlgArg) -> SigningAlg {
    match arg {
        AlgArg::Es256 => SigningAlg::Es256,
        AlgArg::Ps256 => SigningAlg::Ps256,
        AlgArg::Rs256 => SigningAlg::Rs256,
    }
}

/// What a client's method and profile require of its registration (contract §11); the
/// subject DN of a `tls_client_auth` client in its canonical form.
fn check_method_and_profile(
    method: AuthMethod,
    profile: Option<Profile>,
    has_jwks: bool,
    tls_subject_dn: Option<&str>,
    id_token_alg: SigningAlg,
) -> Result<Option<String>, String> {
    let needs_jwks = matches!(
        method,
        AuthMethod::PrivateKeyJwt | AuthMethod::SelfSignedTlsClientAuth
    );
    if needs_jwks && !has_jwks {
        return Err(format!(
            "--auth-method {} needs --jwks-file",
            method.as_str()
        ));
    }
    let dn = match (method, tls_subject_dn) {
        (AuthMethod::TlsClientAuth, Some(dn)) => {
            Some(registrable_dn(dn).ok_or_else(|| {
                format!("--tls-subject-dn {dn:?} is not an unambiguous RFC 4514 DN")
            })?)
        }
        (AuthMethod::TlsClientAuth, None) => {
            return Err("--auth-method tls_client_auth needs --tls-subject-dn".into())
        }
        (_, Some(_)) => return Err("--tls-subject-dn is for --auth-method tls_client_auth".into()),
        (_, None) => None,
    };
    if profile == Some(Profile::FapiCiba) {
        // Its authentication requests are signed, with keys it registers.
        if !has_jwks {
            return Err("--profile fapi-ciba needs --jwks-file (its requests are signed)".into());
        }
        if method.has_secret() {
            return Err(
                "--profile fapi-ciba needs --auth-method private_key_jwt or a TLS method".into(),
            );
        }
        if id_token_alg == SigningAlg::Rs256 {
            return Err("--profile fapi-ciba signs ID tokens with PS256 or ES256".into());
        }
    }
    Ok(dn)
}

fn create(
    store: &Store,
    args: CreateClient,
    ping_policy: &ciba_runtime::ping_target::TargetPolicy,
    now: i64,
) -> Result<Value, String> {
    let name = args.name.trim().to_owned();
    if name.is_empty() || name.len() > 200 {
        return Err("--name must be 1 to 200 characters".into());
    }
    // The app shows the client's name beside what the user approves.
    if let Some(hidden) = ciba_domain::text::first_hidden(&name, &[]) {
        return Err(format!("--name must not contain {hidden}"));
    }
    let scopes = ScopeSet::parse(&args.scope).map_err(|e| format!("--scope: {}", e.description))?;
    if let Some(bad) = scopes.iter().find(|s| !all_supported().contains(s)) {
        return Err(format!("--scope: unknown scope {bad}"));
    }
    for uri in &args.callback_uris {
        validate_https_url(uri).map_err(|e| format!("--callback-uri {uri}: {e}"))?;
    }
    let jwks = match args.jwks_file {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("--jwks-file: {e}"))?;
            validate_client_jwks(&text).map_err(|e| format!("--jwks-file: {e}"))?;
            Some(text)
        }
        None => None,
    };
    let method = auth_method(args.auth_method);
    let profile = args.profile.map(|ProfileArg::FapiCiba| Profile::FapiCiba);
    let id_token_alg = signing_alg(args.id_token_alg);
    let tls_subject_dn = check_method_and_profile(
        method,
        profile,
        jwks.is_some(),
        args.tls_subject_dn.as_deref(),
        id_token_alg,
    )?;
    let (mode, endpoint) = match (args.delivery_mode, args.notification_endpoint) {
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
    let secret = method.has_secret().then(random_id);
    let row = ClientRow {
        id: client_id.clone(),
        name,
        secret_hash: secret.as_deref().map(hash_secret).transpose()?,
        auth_method: method.as_str().into(),
        profile: profile.map(|p| p.as_str().into()),
        tls_subject_dn,
        scopes: scopes.to_string(),
        callback_uris: serde_json::to_string(&args.callback_uris).map_err(|e| e.to_string())?,
        sub_nnin: args.sub_nnin,
        jwks,
        id_token_alg: id_token_alg.as_str().into(),
        delivery_mode: mode.into(),
        notification_endpoint: endpoint,
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    store.read(|c| clients::insert(c, &row)).map_err(db_err)?;
    let mut out = json!({"client_id": client_id, "token_endpoint_auth_method": method.as_str()});
    if let Some(secret) = secret {
        out["client_secret"] = json!(secret);
    }
    Ok(out)
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
        ciba_runtime::crypto::jwk_set::jwk_acceptable(k)?;
    }
    Ok(())
}
