//! `admin clients create`: a client's method, profile, keys and delivery, checked together.

use super::fields;
use crate::admin::audit::Recorder;
use crate::admin::db_err;
use crate::auth::certificate::registrable_dn;
use crate::cli::{AlgArg, AuthMethodArg, CreateClient, DeliveryModeArg, ProfileArg};
use crate::crypto::password::hash_secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_domain::client::{AuthMethod, Profile, SigningAlg};
use ciba_domain::ids::{random_bytes, random_id};
use ciba_store::clients::{self, ClientRow};
use ciba_store::Store;
use serde_json::{json, Value};

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

/// Where a client's public keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    None,
    Registered,
    Published,
}

/// What a client's method and profile require of its registration (contract §11); the
/// subject DN of a `tls_client_auth` client in its canonical form.
fn check_method_and_profile(
    method: AuthMethod,
    profile: Option<Profile>,
    keys: Keys,
    tls_subject_dn: Option<&str>,
    id_token_alg: SigningAlg,
) -> Result<Option<String>, String> {
    let has_jwks = keys != Keys::None;
    if method == AuthMethod::PrivateKeyJwt && !has_jwks {
        return Err("--auth-method private_key_jwt needs --jwks-file or --jwks-uri".into());
    }
    // The certificate's key is matched against registered keys.
    if method == AuthMethod::SelfSignedTlsClientAuth && keys != Keys::Registered {
        return Err("--auth-method self_signed_tls_client_auth needs --jwks-file".into());
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
            return Err(
                "--profile fapi-ciba needs --jwks-file or --jwks-uri (its requests are signed)"
                    .into(),
            );
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

pub fn create(
    store: &Store,
    args: CreateClient,
    ping_policy: &ciba_runtime::ping_target::TargetPolicy,
    rec: &Recorder,
    now: i64,
) -> Result<Value, String> {
    let name = fields::name(&args.name)?;
    let scopes = fields::scopes(&args.scope)?;
    let callback_uris = fields::callback_uris(&args.callback_uris)?;
    let jwks = args
        .jwks_file
        .as_deref()
        .map(fields::jwks_file)
        .transpose()?;
    let jwks_uri = args
        .jwks_uri
        .as_deref()
        .map(|u| fields::jwks_uri(u, ping_policy))
        .transpose()?;
    let method = auth_method(args.auth_method);
    let profile = args.profile.map(|ProfileArg::FapiCiba| Profile::FapiCiba);
    let id_token_alg = signing_alg(args.id_token_alg);
    let tls_subject_dn = check_method_and_profile(
        method,
        profile,
        match (&jwks, &jwks_uri) {
            (Some(_), _) => Keys::Registered,
            (None, Some(_)) => Keys::Published,
            (None, None) => Keys::None,
        },
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
        previous_secret_hash: None,
        previous_secret_until: None,
        profile: profile.map(|p| p.as_str().into()),
        tls_subject_dn,
        scopes: scopes.to_string(),
        callback_uris,
        sub_nnin: args.sub_nnin,
        jwks,
        jwks_uri,
        id_token_alg: id_token_alg.as_str().into(),
        delivery_mode: mode.into(),
        notification_endpoint: endpoint,
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    rec.write(store, Some(&client_id), |c| {
        clients::insert(c, &row)?;
        Ok(true)
    })
    .map_err(db_err)?;
    let mut out = json!({"client_id": client_id, "token_endpoint_auth_method": method.as_str()});
    if let Some(secret) = secret {
        out["client_secret"] = json!(secret);
    }
    Ok(out)
}
