//! `admin sandbox users`: test users with simulated apps (contract §12). Only in sandbox
//! mode: a test user's approvals are signed by the server, which a production database must
//! never hold.

use super::audit::Recorder;
use super::db_err;
use crate::cli::{SandboxAdminCommand, SandboxUsersCommand};
use crate::sandbox::{self, NewTestUser, MAX_DELAY_SECS};
use ciba_domain::device::DeviceInfo;
use ciba_runtime::config::Config;
use ciba_store::sandbox as store;
use ciba_store::Store;
use serde_json::{json, Value};

/// Refused outside sandbox mode.
pub fn require_sandbox(config: &Config) -> Result<(), String> {
    if config.sandbox {
        Ok(())
    } else {
        Err(
            "sandbox mode is off: set CIBA_SANDBOX=true (test users exist only in a sandbox)"
                .into(),
        )
    }
}

pub fn run(
    store: &Store,
    config: &Config,
    cmd: SandboxAdminCommand,
    rec: &Recorder,
    now: i64,
) -> Result<Value, String> {
    require_sandbox(config)?;
    let SandboxAdminCommand::Users(cmd) = cmd;
    match cmd {
        SandboxUsersCommand::Create(c) => {
            if !(0..=MAX_DELAY_SECS).contains(&c.delay) {
                return Err(format!(
                    "--delay must be between 0 and {MAX_DELAY_SECS} seconds"
                ));
            }
            let device = DeviceInfo::from_json(
                "device",
                &json!({"p": c.platform, "ma": c.manufacturer, "mo": c.model}),
            )
            .map_err(|e| format!("--platform, --manufacturer, --model: {}", e.description))?;
            for (flag, v) in [
                ("--given-name", &c.given_name),
                ("--family-name", &c.family_name),
            ] {
                if v.trim().is_empty() || v.len() > 200 {
                    return Err(format!("{flag} must be 1 to 200 characters"));
                }
            }
            let new = NewTestUser {
                delay_secs: c.delay,
                device,
                ..NewTestUser::new(
                    c.behaviour.into(),
                    c.given_name.trim(),
                    c.family_name.trim(),
                )
            };
            let t = sandbox::prepare(&config.kek(), new, now)?;
            rec.write(store, Some(&t.user.sub), |conn| {
                sandbox::insert(conn, &t)?;
                Ok(true)
            })
            .map_err(db_err)?;
            Ok(json!({"nnin": t.nnin.as_str(), "sub": t.user.sub}))
        }
        // Synthetic test numbers only: every user listed here is a sandbox user.
        SandboxUsersCommand::List => {
            let rows = store.read(store::list).map_err(db_err)?;
            Ok(Value::Array(
                rows.into_iter()
                    .map(|(sb, u)| {
                        json!({"nnin": u.nnin, "sub": u.sub, "given_name": u.given_name,
                               "family_name": u.family_name, "behaviour": sb.behaviour,
                               "delay": sb.delay_secs, "device_id": sb.device_id})
                    })
                    .collect(),
            ))
        }
    }
}
