//! Sandbox mode (contract §12): test users whose authenticating app the server simulates.
//!
//! A test user is an ordinary user with an ordinary device row (a software key, `swk`), so
//! app-authorize matches it like a phone. The device's private key is kept sealed under the
//! key-encryption key, like the signing keys; the simulated app signs its decisions with it
//! and sends them down the same decision path as a real app (`service::device_app::decide`),
//! which is why its approvals carry `amr: ["swk"]` and can never reach eIDAS high.

pub mod autopilot;
pub mod page;
pub mod script;

use crate::auth::device::{device_key, AuthenticatedDevice, UnspentJti};
use crate::error::{ApiError, ApiResult};
use crate::service::device_app;
use crate::state::AppState;
use ciba_domain::assurance::KeyProtection;
use ciba_domain::audit::Origin;
use ciba_domain::auth_request::Decision;
use ciba_domain::client::SigningAlg;
use ciba_domain::device::DeviceInfo;
use ciba_domain::error::{ErrorCode, OAuthError};
use ciba_domain::ids::random_id;
use ciba_domain::nnin::{first_valid, Nnin};
use ciba_domain::sandbox::{synthetic_nnin, Behaviour};
use ciba_domain::status::DeviceStatus;
use ciba_runtime::crypto::kek::Kek;
use ciba_runtime::crypto::keygen;
use ciba_store::sandbox::{self as store, SandboxUserRow};
use ciba_store::users::{self, DeviceRow, UserRow};
use ciba_store::DbConnection;
use ciba_store::StoreResult;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

/// The longest an automatic behaviour may wait (requests live at most an hour).
pub const MAX_DELAY_SECS: i64 = 3_600;

/// What a new test user is given; the NNIN is made here.
pub struct NewTestUser {
    pub behaviour: Behaviour,
    pub delay_secs: i64,
    pub given_name: String,
    pub family_name: String,
    pub device: DeviceInfo,
    /// A fixed synthetic NNIN (the seeded users'); otherwise a random one.
    pub nnin: Option<Nnin>,
}

impl NewTestUser {
    pub fn new(behaviour: Behaviour, given_name: &str, family_name: &str) -> Self {
        Self {
            nnin: None,
            behaviour,
            delay_secs: 2,
            given_name: given_name.into(),
            family_name: family_name.into(),
            device: default_device(),
        }
    }
}

/// The phone a simulated app runs on unless said otherwise: what a merchant's test app
/// sends as `device_info` (`{"p":"ios","ma":"Apple","mo":"iPhone15,2"}`).
pub fn default_device() -> DeviceInfo {
    DeviceInfo {
        platform: "ios".into(),
        manufacturer: "Apple".into(),
        model: "iPhone15,2".into(),
    }
}

/// A test user ready to be written: the rows and the user's NNIN.
pub struct TestUser {
    pub nnin: Nnin,
    pub user: UserRow,
    pub device: DeviceRow,
    pub sandbox: SandboxUserRow,
}

/// Make the rows of a test user: a synthetic NNIN, a simulated device with a fresh P-256
/// key, the key sealed under `kek`.
pub fn prepare(kek: &Kek, new: NewTestUser, now: i64) -> Result<TestUser, String> {
    let nnin = new.nnin.clone().unwrap_or_else(synthetic_nnin);
    let key = keygen::generate(SigningAlg::Es256, "sig").map_err(|e| e.to_string())?;
    let sub = random_id();
    let device_id = random_id();
    // The stored device JWK is the canonical {crv, kty, x, y}, as enrollment stores it.
    let mut public = key.public_jwk.clone();
    if let Some(o) = public.as_object_mut() {
        o.retain(|k, _| matches!(k.as_str(), "crv" | "kty" | "x" | "y"));
    }
    let birth = birthdate(&nnin);
    Ok(TestUser {
        user: UserRow {
            sub: sub.clone(),
            nnin: nnin.as_str().to_owned(),
            given_name: new.given_name,
            family_name: new.family_name,
            birthdate: birth,
            bankid_pid: None,
            created_at: now,
            updated_at: now,
        },
        device: DeviceRow {
            id: device_id.clone(),
            user_sub: sub.clone(),
            platform: new.device.platform,
            manufacturer: new.device.manufacturer,
            model: new.device.model,
            public_jwk: public.to_string(),
            name: Some("Sandbox app (simulated)".into()),
            status: DeviceStatus::Active.as_str().into(),
            created_at: now,
            revoked_at: None,
            key_protection: KeyProtection::Software.as_str().into(),
        },
        sandbox: SandboxUserRow {
            user_sub: sub,
            private_key: kek.seal(&key.private_der, &device_id),
            device_id,
            kek_id: kek.id().to_owned(),
            behaviour: new.behaviour.as_str().into(),
            delay_secs: new.delay_secs.clamp(0, MAX_DELAY_SECS),
            created_at: now,
        },
        nnin,
    })
}

/// The birth date a synthetic NNIN encodes (month + 80), as `YYYY-MM-DD`.
fn birthdate(nnin: &Nnin) -> String {
    let s = nnin.as_str();
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(0);
    let (day, month, yy, individual) = (num(0..2), num(2..4) % 40, num(4..6), num(6..9));
    let century = if individual >= 500 && yy <= 39 {
        2000
    } else {
        1900
    };
    format!("{:04}-{month:02}-{day:02}", century + yy)
}

/// Write a prepared test user (inside the caller's write transaction).
pub fn insert(conn: &mut DbConnection, t: &TestUser) -> StoreResult<()> {
    store::create(conn, &t.user, &t.device, &t.sandbox)
}

/// The users seeded on the first start in sandbox mode, one per behaviour, with fixed
/// synthetic NNINs (README lists them) so that examples can be copied as they are.
pub fn seed_users() -> Vec<NewTestUser> {
    let seeded = [
        (Behaviour::Manual, "Kari", "Nordmann", "018180"),
        (Behaviour::Approve, "Ola", "Godkjenner", "028285"),
        (Behaviour::Decline, "Per", "Avslår", "038390"),
        (Behaviour::Ignore, "Siri", "Svarerikke", "048495"),
    ];
    seeded
        .into_iter()
        .map(|(b, given, family, date6)| NewTestUser {
            nnin: first_valid(date6, 100).and_then(|n| Nnin::parse(&n).ok()),
            ..NewTestUser::new(b, given, family)
        })
        .collect()
}

/// Seed the test users when sandbox mode starts on a database that has none. Returns how
/// many were made.
pub fn seed(state: &AppState, now: i64) -> Result<usize, String> {
    let existing = state.store.read(store::count).map_err(|e| e.to_string())?;
    if existing > 0 {
        return Ok(0);
    }
    let users = seed_users()
        .into_iter()
        .map(|n| prepare(&state.kek, n, now))
        .collect::<Result<Vec<_>, _>>()?;
    state
        .store
        .write(|c| {
            // Another replica may have seeded in the meantime.
            if store::count(c)? > 0 {
                return Ok(0);
            }
            for u in &users {
                insert(c, u)?;
            }
            Ok(users.len())
        })
        .or_else(|e| match e {
            // Another replica seeded the same users first (PostgreSQL).
            ciba_store::StoreError::Conflict(_) => Ok(0),
            other => Err(other.to_string()),
        })
}

/// Decide `link_ref` as `user_sub`'s simulated app would: sign the decision with the
/// device's key and send it down the real decision path.
pub async fn decide(
    state: &AppState,
    user_sub: &str,
    link_ref: &str,
    decision: Decision,
    origin: Origin,
    now: i64,
) -> ApiResult<Decision> {
    let (dev, der) = simulated_app(state, user_sub).await?;
    let found = device_app::request_for(state, &dev, link_ref.to_owned()).await?;
    let claims = json!({
        "ref": link_ref, "decision": decision.as_str(), "permission_digest": found.1.digest,
        "iat": now, "jti": random_id(), "amr": [KeyProtection::Software.as_str()],
    });
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(dev.device.id.clone());
    let signed = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(&der))
        .map_err(|e| internal(format!("cannot sign as the simulated app: {e}")))?;
    let checked = device_app::check_decision(&dev, link_ref, found, Some(&signed), now);
    let jti = UnspentJti::fresh(&dev.device.id, now);
    let (decided, _) = device_app::record_decision(state, &dev, jti, checked, origin, now).await?;
    Ok(decided)
}

/// A test user's simulated device, authenticated as the device filter would, and its
/// private key (PKCS#8).
async fn simulated_app(
    state: &AppState,
    user_sub: &str,
) -> ApiResult<(AuthenticatedDevice, Vec<u8>)> {
    let sub = user_sub.to_owned();
    let found = state
        .db(move |c| {
            let Some(sb) = store::find(c, &sub)? else {
                return Ok(None);
            };
            Ok(users::find_device(c, &sb.device_id)?.map(|d| (sb, d)))
        })
        .await?;
    let (sb, device) =
        found.ok_or_else(|| ApiError::from(OAuthError::not_found("no such test user")))?;
    if device.status != DeviceStatus::Active.as_str() {
        return Err(OAuthError::new(
            ErrorCode::AccessDenied,
            "this test user's simulated app was revoked",
        )
        .with_status(403)
        .into());
    }
    let der = state
        .kek
        .open(&sb.private_key, &sb.device_id, &sb.kek_id)
        .map_err(|e| internal(format!("simulated app key of a test user: {e}")))?;
    let key = device_key(&device).ok_or_else(|| internal("simulated device's JWK".into()))?;
    Ok((AuthenticatedDevice { device, key }, der))
}

fn internal(detail: String) -> ApiError {
    tracing::error!(error = %detail, "sandbox");
    OAuthError::server_error().into()
}
