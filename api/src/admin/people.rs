//! `admin users`, `admin enrollment-codes` and `admin devices`: the people and their phones.
//! An NNIN is an input here, never an output.

use super::audit::Recorder;
use super::db_err;
use crate::cli::{DevicesCommand, EnrollmentCodesCommand, UsersCommand};
use ciba_domain::ids::random_id;
use ciba_domain::nnin::Nnin;
use ciba_domain::secret::sha256_b64url;
use ciba_runtime::config::Config;
use ciba_store::users::{self, DeviceRow, EnrollmentCodeRow, UserRow};
use ciba_store::{Store, StoreError};
use serde_json::{json, Value};

/// The user an NNIN names.
fn user_by_nnin(store: &Store, raw: &str) -> Result<UserRow, String> {
    let nnin = Nnin::parse(raw).map_err(|e| format!("--nnin: {e}"))?;
    store
        .read(|c| users::find_by_nnin(c, nnin.as_str()))
        .map_err(db_err)?
        .ok_or_else(|| "no user has this NNIN".to_owned())
}

pub fn enrollment_codes(
    store: &Store,
    config: &Config,
    cmd: EnrollmentCodesCommand,
    rec: &Recorder,
    now: i64,
) -> Result<Value, String> {
    match cmd {
        EnrollmentCodesCommand::Create { nnin, require_hwk } => {
            let user = user_by_nnin(store, &nnin)?;
            let code = random_id();
            let row = EnrollmentCodeRow {
                code_hash: sha256_b64url(code.as_bytes()),
                user_sub: user.sub,
                expires_at: now + config.enrollment_code_ttl,
                used_at: None,
                device_id: None,
                created_at: now,
                require_hwk,
            };
            // Recorded by the code's id: the code itself is shown once, here.
            rec.write(store, Some(&row.code_hash), |c| {
                users::insert_enrollment_code(c, &row)?;
                Ok(true)
            })
            .map_err(db_err)?;
            Ok(
                json!({"code": code, "id": row.code_hash, "expires_at": row.expires_at, "require_hwk": require_hwk}),
            )
        }
        // A code is listed by its id (the hash of the code): the code itself is shown once.
        EnrollmentCodesCommand::List { sub } => {
            let rows = store
                .read(|c| users::list_enrollment_codes(c, sub.as_deref(), now))
                .map_err(db_err)?;
            Ok(Value::Array(
                rows.into_iter()
                    .map(|r| {
                        json!({"id": r.code_hash, "sub": r.user_sub, "expires_at": r.expires_at,
                               "used_at": r.used_at, "device_id": r.device_id,
                               "require_hwk": r.require_hwk, "created_at": r.created_at})
                    })
                    .collect(),
            ))
        }
        EnrollmentCodesCommand::Revoke { id } => {
            if !rec
                .write(store, Some(&id), |c| {
                    users::revoke_enrollment_code(c, &id, now)
                })
                .map_err(db_err)?
            {
                return Err(format!("no unused enrollment code {id}"));
            }
            Ok(json!({"id": id, "status": "revoked"}))
        }
    }
}

fn device_view(d: &DeviceRow) -> Value {
    json!({"device_id": d.id, "sub": d.user_sub, "platform": d.platform, "manufacturer": d.manufacturer,
           "model": d.model, "name": d.name, "status": d.status, "key_protection": d.key_protection,
           "created_at": d.created_at})
}

pub fn devices(
    store: &Store,
    cmd: DevicesCommand,
    rec: &Recorder,
    now: i64,
) -> Result<Value, String> {
    match cmd {
        DevicesCommand::List { sub, nnin } => {
            let sub = match (sub, nnin) {
                (Some(_), Some(_)) => return Err("give --sub or --nnin, not both".into()),
                (None, Some(nnin)) => Some(user_by_nnin(store, &nnin)?.sub),
                (sub, None) => sub,
            };
            let rows = store
                .read(|c| users::list_devices(c, sub.as_deref()))
                .map_err(db_err)?;
            Ok(Value::Array(rows.iter().map(device_view).collect()))
        }
        DevicesCommand::Revoke { device_id } => {
            if !rec
                .write(store, Some(&device_id), |c| {
                    users::revoke_device(c, &device_id, now)
                })
                .map_err(db_err)?
            {
                return Err(format!("no active device {device_id}"));
            }
            Ok(json!({"device_id": device_id, "status": "revoked"}))
        }
    }
}

pub fn users(store: &Store, cmd: UsersCommand, rec: &Recorder, now: i64) -> Result<Value, String> {
    match cmd {
        UsersCommand::Create {
            nnin,
            given_name,
            family_name,
            birthdate,
            bankid_pid,
        } => {
            let nnin = Nnin::parse(&nnin).map_err(|e| format!("--nnin: {e}"))?;
            for (flag, v) in [
                ("--given-name", &given_name),
                ("--family-name", &family_name),
            ] {
                if v.trim().is_empty() || v.len() > 200 {
                    return Err(format!("{flag} must be 1 to 200 characters"));
                }
            }
            chrono::NaiveDate::parse_from_str(&birthdate, "%Y-%m-%d")
                .ok()
                .filter(|_| birthdate.len() == 10)
                .ok_or("--birthdate must be a date as YYYY-MM-DD")?;
            let row = UserRow {
                sub: random_id(),
                nnin: nnin.as_str().to_owned(),
                given_name: given_name.trim().to_owned(),
                family_name: family_name.trim().to_owned(),
                birthdate,
                bankid_pid,
                created_at: now,
                updated_at: now,
            };
            rec.write(store, Some(&row.sub), |c| {
                users::insert_user(c, &row)?;
                Ok(true)
            })
            .map_err(|e| match e {
                StoreError::Conflict(_) => "a user with this NNIN already exists".to_owned(),
                other => other.to_string(),
            })?;
            Ok(json!({"sub": row.sub}))
        }
        UsersCommand::List => {
            let rows = store.read(users::list_users).map_err(db_err)?;
            Ok(Value::Array(
                rows.into_iter()
                    .map(|u| json!({"sub": u.sub, "given_name": u.given_name, "family_name": u.family_name, "created_at": u.created_at}))
                    .collect(),
            ))
        }
    }
}
