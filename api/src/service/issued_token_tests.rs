//! Permission tokens signed here are remembered until they come back once: that use skips
//! the signature check it knows would pass, and nothing else. The claims are still checked,
//! a token changed in any byte or presented again is verified, and a revoked key's tokens
//! stop at once.

use super::authorize::verify_permission_token;
use super::permissions::register;
use crate::state::AppState;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_domain::audit::{Actor, Origin};
use ciba_domain::client::Client;
use ciba_domain::nnin::Nnin;
use ciba_domain::permission::NewPermission;
use ciba_runtime::crypto::keyring::{self, Purpose};
use ciba_store::testing::TestDatabase;
use ciba_store::Backend;
use diesel::connection::SimpleConnection;

const NOW: i64 = 1_900_000_000;

async fn setup(db: &TestDatabase) -> (AppState, Client) {
    let state = crate::state::test_state(db, &[("CIBA_CLIENT_CACHE_TTL", "300")]);
    keyring::ensure_keys(&state.store, &state.kek, NOW).unwrap();
    state.keys.reload(&state.store, NOW).unwrap();
    let sql = "INSERT INTO clients (id, name, secret_hash, scopes, callback_uris, sub_nnin, \
               id_token_alg, delivery_mode, disabled, created_at, updated_at) VALUES \
               ('c1','one','x','openid','[]',false,'ES256','poll',false,1,1)";
    state.store.write(|c| Ok(c.batch_execute(sql)?)).unwrap();
    let row = state.client_row("c1").await.unwrap().unwrap();
    (state.clone(), row.to_domain().unwrap())
}

async fn permission_token(state: &AppState) -> (String, String) {
    let nnin = Nnin::parse("01019010046").unwrap();
    let p = NewPermission::login(nnin, NOW, NOW + 600);
    let r = register(state, "c1", p, Origin::default(), NOW)
        .await
        .unwrap();
    (r.id, r.token)
}

#[tokio::test]
async fn a_token_signed_here_is_taken_once_and_then_verified() {
    let db = TestDatabase::create(Backend::Sqlite);
    let (state, client) = setup(&db).await;
    let (id, token) = permission_token(&state).await;
    assert_eq!(
        state.issued_permission_tokens.size().entries,
        1,
        "remembered"
    );
    let first = verify_permission_token(&state, &token, &client, NOW).unwrap();
    assert_eq!(first, id);
    assert_eq!(state.issued_permission_tokens.size().entries, 0, "taken");
    // Presented again: the signature is checked (and holds).
    assert_eq!(
        verify_permission_token(&state, &token, &client, NOW).unwrap(),
        id
    );
}

#[tokio::test]
async fn a_remembered_token_s_claims_are_still_checked() {
    let db = TestDatabase::create(Backend::Sqlite);
    let (state, client) = setup(&db).await;
    let (_, token) = permission_token(&state).await;
    let other = Client {
        id: "c2".into(),
        ..client.clone()
    };
    assert!(
        verify_permission_token(&state, &token, &other, NOW).is_err(),
        "another client's"
    );
    let (_, token) = permission_token(&state).await;
    assert!(
        verify_permission_token(&state, &token, &client, NOW + 600 + 60).is_err(),
        "expired"
    );
}

#[tokio::test]
async fn a_changed_token_is_not_found_and_is_refused() {
    let db = TestDatabase::create(Backend::Sqlite);
    let (state, client) = setup(&db).await;
    let (_, token) = permission_token(&state).await;
    let parts: Vec<&str> = token.split('.').collect();
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[10] ^= 1;
    let bent = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
    assert!(verify_permission_token(&state, &bent, &client, NOW).is_err());
    assert_eq!(
        state.issued_permission_tokens.size().entries,
        1,
        "the real token is still remembered"
    );
}

#[tokio::test]
async fn a_revoked_key_s_remembered_tokens_stop_at_once() {
    let db = TestDatabase::create(Backend::Sqlite);
    let (state, client) = setup(&db).await;
    let (_, token) = permission_token(&state).await;
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let origin = Origin::default();
    let by = ciba_store::audit::By {
        actor: Actor::Operator("test"),
        origin: &origin,
        at_ms: 0,
    };
    keyring::revoke(&state.store, &state.kek, &kid, &by, NOW)
        .unwrap()
        .unwrap();
    state.keys.reload(&state.store, NOW).unwrap();
    assert!(state.keys.find(Purpose::Oidc, &kid, NOW).is_none());
    assert!(verify_permission_token(&state, &token, &client, NOW).is_err());
}
