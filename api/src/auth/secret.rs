//! `client_secret_basic` and `client_secret_post` (RFC 6749 §2.3.1).

use super::{invalid_client, Authenticated, Method};
use crate::crypto::password::hash_secret;
use crate::error::ApiResult;
use crate::state::{blocking, AppState};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::sync::OnceLock;

/// Split `Basic` credentials; both halves are form-urlencoded (RFC 6749 §2.3.1).
pub fn decode_basic(value: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(value.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| -> Option<String> {
        let plus_free = s.replace('+', "%20");
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(format!("v={plus_free}").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        pairs.into_iter().next().map(|(_, v)| v)
    };
    let (id, secret) = (decode(id)?, decode(secret)?);
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

/// A hash to verify against when the client does not exist, so an unknown client id costs
/// the same time as a wrong secret.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_secret("dummy-secret-for-timing").unwrap_or_default())
}

pub async fn client_secret(
    state: &AppState,
    id: &str,
    secret: &str,
    basic: bool,
) -> ApiResult<Authenticated> {
    let row = state.client_row(id).await?;
    let stored = row.as_ref().map(|r| r.secret_hash.as_str());
    // A secret verified before is answered from memory, without a trip to the blocking pool.
    let cached = stored.and_then(|hash| state.secrets.verify_cached(id, hash, secret));
    let ok = if let Some(known) = cached {
        known
    } else {
        let (st, id, secret) = (state.clone(), id.to_owned(), secret.to_owned());
        let stored = stored.map(str::to_owned);
        blocking(move || {
            Ok(match stored {
                Some(hash) => st.secrets.verify(&id, &hash, &secret),
                None => {
                    st.secrets.verify("", dummy_hash(), &secret);
                    false
                }
            })
        })
        .await?
    };
    match row {
        Some(row) if ok && !row.disabled => {
            let client = row.to_domain()?;
            Ok(Authenticated {
                scopes: client.scopes.clone(),
                client,
                method: Method::ClientSecret,
                via_bearer: false,
            })
        }
        _ => Err(invalid_client("client authentication failed", false, basic)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_basic_with_form_encoding() {
        let v = STANDARD.encode("my%3Aclient:s%2Bc+ret");
        assert_eq!(
            decode_basic(&v),
            Some(("my:client".into(), "s+c ret".into()))
        );
        assert_eq!(decode_basic(&STANDARD.encode("nocolon")), None);
        assert_eq!(decode_basic(&STANDARD.encode(":secret")), None);
        assert_eq!(decode_basic("!!!"), None);
    }
}
