//! `client_secret_basic` and `client_secret_post` (RFC 6749 §2.3.1).

use super::{invalid_client, Authenticated, Method};
use crate::crypto::password::hash_secret;
use crate::error::ApiResult;
use crate::state::{blocking, AppState};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::sync::OnceLock;

/// Split `Basic` credentials; both halves are form-urlencoded (RFC 6749 §2.3.1): `+` is a
/// space and `%XY` a byte. Everything else, `&` and `=` included, is taken as it is.
pub fn decode_basic(value: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(value.trim()).ok()?;
    let text = std::str::from_utf8(&raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let (id, secret) = (form_decode(id), form_decode(secret));
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

/// One form-urlencoded value (invalid UTF-8 after decoding becomes U+FFFD, as in forms).
fn form_decode(s: &str) -> String {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return s.to_owned();
    }
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
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
        // A `%` without two hex digits stays as it is, as form decoding does.
        assert_eq!(
            decode_basic(&STANDARD.encode("a%3A:%zz")),
            Some(("a:".into(), "%zz".into()))
        );
    }

    #[test]
    fn takes_unencoded_ampersands_and_equals_as_they_are() {
        // Unencoded `&` must not cut the secret short: "s&x" is not the secret "s".
        let v = STANDARD.encode("client:s&x=y");
        assert_eq!(decode_basic(&v), Some(("client".into(), "s&x=y".into())));
        let v = STANDARD.encode("client:plain-Secret_1");
        assert_eq!(
            decode_basic(&v),
            Some(("client".into(), "plain-Secret_1".into()))
        );
    }
}
