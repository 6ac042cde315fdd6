//! The verified-token cache saves the signature check only: a remembered token is still
//! refused once it expires, and a token changed in any byte is verified afresh.

use super::verify_access_token;
use crate::state::AppState;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_domain::claims;
use ciba_domain::client::SigningAlg;
use ciba_runtime::crypto::jwt::{self, TYP_CLIENT_TOKEN};
use ciba_runtime::crypto::keyring::{self, Purpose};
use ciba_store::testing::TestDatabase;
use ciba_store::Backend;

const NOW: i64 = 1_900_000_000;

fn state(db: &TestDatabase) -> AppState {
    let state = crate::state::test_state(db, &[("CIBA_CLIENT_CACHE_TTL", "300")]);
    keyring::ensure_keys(&state.store, &state.kek, NOW).unwrap();
    state.keys.reload(&state.store, NOW).unwrap();
    state
}

fn token(state: &AppState, client: &str, ttl: i64) -> String {
    let key = state
        .keys
        .signer(Purpose::Oidc, SigningAlg::Es256, NOW)
        .unwrap();
    let at = claims::Issue {
        issuer: &state.config.issuer,
        now: NOW,
        jti: "j1",
    };
    let c = claims::client_access_token(at, client, "openid", ttl);
    jwt::sign(&key, TYP_CLIENT_TOKEN, &c).unwrap()
}

#[test]
fn a_remembered_token_is_still_refused_after_it_expires() {
    let db = TestDatabase::create(Backend::Sqlite);
    let state = state(&db);
    let t = token(&state, "c1", 60);
    assert!(verify_access_token(&state, &t, NOW).is_ok());
    assert_eq!(state.verified_tokens.size().entries, 1, "remembered");
    let again = verify_access_token(&state, &t, NOW + 30).unwrap();
    assert_eq!(again["client_id"], "c1");
    // Past its `exp` and the clock leeway.
    assert!(verify_access_token(&state, &t, NOW + 60 + jwt::LEEWAY).is_err());
}

#[test]
fn a_changed_token_is_verified_afresh_and_refused() {
    let db = TestDatabase::create(Backend::Sqlite);
    let state = state(&db);
    let t = token(&state, "c1", 60);
    assert!(verify_access_token(&state, &t, NOW).is_ok());
    let parts: Vec<&str> = t.split('.').collect();
    // Another client's claims under c1's remembered signature.
    let other = token(&state, "c2", 60);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        other.split('.').nth(1).unwrap(),
        parts[2]
    );
    assert!(verify_access_token(&state, &forged, NOW).is_err());
    // The same claims with one signature byte changed.
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[10] ^= 1;
    let bent = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
    assert!(verify_access_token(&state, &bent, NOW).is_err());
    assert_eq!(
        state.verified_tokens.size().entries,
        1,
        "no refused token kept"
    );
}
