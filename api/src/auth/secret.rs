//! `client_secret_basic` and `client_secret_post` (RFC 6749 §2.3.1).

use super::{invalid_client, Authenticated, Method};
use crate::error::ApiResult;
use crate::limits::{refused, CLIENT_AUTHENTICATION};
use crate::state::AppState;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ciba_domain::client::AuthMethod;

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

fn hashing_busy(state: &AppState) -> crate::error::ApiError {
    refused(
        state,
        CLIENT_AUTHENTICATION,
        "hash_capacity",
        "the server is verifying too many client secrets; retry shortly",
        1,
    )
}

/// Verify `secret` for client `id`, presented with `method`. A client registered for another
/// method is refused like a wrong secret, after the same work (a dummy hash), so the answer
/// says nothing about which method a client uses.
pub async fn client_secret(
    state: &AppState,
    id: &str,
    secret: &str,
    method: AuthMethod,
) -> ApiResult<Authenticated> {
    let basic = method == AuthMethod::ClientSecretBasic;
    // An id known not to exist, while the share of the hashing pool for such ids is used
    // up: refused without a database read or a hash.
    if state.secrets.unknown_budget_full() && matches!(state.client_row_cached(id), Some(None)) {
        return Err(hashing_busy(state));
    }
    let row = state.client_row(id).await?;
    let exists = row.is_some();
    // The client's secret, and after a rotation the previous one during its grace; none for
    // a client of another method (it is refused like a wrong secret, at the same cost).
    let own = row.as_ref().filter(|r| r.auth_method == method.as_str());
    let stored = own.and_then(|r| r.secret_hash.as_deref());
    let previous = own
        .filter(|r| {
            r.previous_secret_until
                .is_some_and(|t| t > crate::state::now())
        })
        .and_then(|r| r.previous_secret_hash.as_deref());
    // A secret verified before, old or new, is answered from memory; anything else (an
    // unknown client too, at the same cost) on the bounded hashing pool, or refused when full.
    let remembered =
        |hash: Option<&str>| hash.and_then(|h| state.secrets.verify_cached(id, h, secret));
    let ok = if remembered(stored) == Some(true) || remembered(previous) == Some(true) {
        true
    } else {
        check(state, id, stored, exists, secret).await?
            || (previous.is_some() && check(state, id, previous, exists, secret).await?)
    };
    match row {
        Some(row) if ok && !row.disabled => {
            let client = row.to_domain()?;
            Ok(Authenticated {
                scopes: client.scopes.clone(),
                client,
                method: Method::ClientSecret,
                via_bearer: false,
                bound_to: None,
            })
        }
        _ => Err(invalid_client("client authentication failed", false, basic)),
    }
}

/// `secret` against `stored`, from memory when verified before, else on the hashing pool.
async fn check(
    state: &AppState,
    id: &str,
    stored: Option<&str>,
    exists: bool,
    secret: &str,
) -> ApiResult<bool> {
    match stored.and_then(|hash| state.secrets.verify_cached(id, hash, secret)) {
        Some(known) => Ok(known),
        None => state
            .secrets
            .verify(id, stored, exists, secret)
            .await
            .map_err(|_| hashing_busy(state)),
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
