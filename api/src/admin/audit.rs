//! `admin audit ...`: reading the audit trail; and every admin command's own event.

use super::db_err;
use crate::cli::{AdminCommand, AuditCommand, AuditRange};
use ciba_domain::audit::{Actor, Origin, Outcome};
use ciba_store::audit::{self, By, Filter};
use ciba_store::{DbConnection, Store, StoreResult};
use serde_json::Value;

/// A time given as UNIX seconds or RFC 3339, in milliseconds.
fn parse_time(flag: &str, raw: &str) -> Result<i64, String> {
    if let Ok(secs) = raw.trim().parse::<i64>() {
        return Ok(secs.saturating_mul(1000));
    }
    chrono::DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("{flag} must be UNIX seconds or an RFC 3339 time, got {raw:?}"))
}

fn filter(r: AuditRange) -> Result<Filter, String> {
    if !(1..=1_000_000).contains(&r.limit) {
        return Err("--limit must be between 1 and 1000000".into());
    }
    Ok(Filter {
        since_ms: r
            .since
            .as_deref()
            .map(|t| parse_time("--since", t))
            .transpose()?,
        until_ms: r
            .until
            .as_deref()
            .map(|t| parse_time("--until", t))
            .transpose()?,
        client: r.client,
        action: r.action,
        limit: r.limit,
    })
}

pub fn run(store: &Store, cmd: AuditCommand) -> Result<Value, String> {
    let (export, range) = match cmd {
        AuditCommand::List(r) => (false, r),
        AuditCommand::Export(r) => (true, r),
    };
    let f = filter(range)?;
    let rows = store.read(|c| audit::list(c, &f)).map_err(db_err)?;
    if rows.len() as i64 == f.limit {
        eprintln!(
            "note: {} events shown, the --limit; there may be more (continue with --since)",
            f.limit
        );
    }
    let values: Vec<Value> = rows
        .iter()
        .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
        .collect();
    if export {
        let lines: Vec<String> = values.iter().map(Value::to_string).collect();
        return Ok(Value::String(lines.join("\n")));
    }
    Ok(Value::Array(values))
}

/// The action an admin command is recorded under (`admin.<noun>.<verb>`).
pub fn action_of(command: &AdminCommand) -> &'static str {
    use crate::cli::{
        ClientsCommand as C, DevicesCommand as D, EnrollmentCodesCommand as E, JobsCommand as J,
        KeysCommand as K, UsersCommand as U,
    };
    match command {
        AdminCommand::Clients(C::Create(_)) => "admin.clients.create",
        AdminCommand::Clients(C::List) => "admin.clients.list",
        AdminCommand::Clients(C::Show { .. }) => "admin.clients.show",
        AdminCommand::Clients(C::Update(_)) => "admin.clients.update",
        AdminCommand::Clients(C::RotateSecret { .. }) => "admin.clients.rotate_secret",
        AdminCommand::Clients(C::Disable { .. }) => "admin.clients.disable",
        AdminCommand::Clients(C::Enable { .. }) => "admin.clients.enable",
        AdminCommand::Users(U::Create { .. }) => "admin.users.create",
        AdminCommand::Users(U::List) => "admin.users.list",
        AdminCommand::EnrollmentCodes(E::Create { .. }) => "admin.enrollment_codes.create",
        AdminCommand::EnrollmentCodes(E::List { .. }) => "admin.enrollment_codes.list",
        AdminCommand::EnrollmentCodes(E::Revoke { .. }) => "admin.enrollment_codes.revoke",
        AdminCommand::Devices(D::List { .. }) => "admin.devices.list",
        AdminCommand::Devices(D::Revoke { .. }) => "admin.devices.revoke",
        AdminCommand::Keys(K::Rotate { .. }) => "admin.keys.rotate",
        AdminCommand::Keys(K::Revoke { .. }) => "admin.keys.revoke",
        AdminCommand::Keys(K::List) => "admin.keys.list",
        AdminCommand::Jobs(J::List { .. }) => "admin.jobs.list",
        AdminCommand::Jobs(J::Retry { .. }) => "admin.jobs.retry",
        AdminCommand::Audit(AuditCommand::List(_)) => "admin.audit.list",
        AdminCommand::Audit(AuditCommand::Export(_)) => "admin.audit.export",
        AdminCommand::Kek(crate::cli::KekCommand::Rotate) => "admin.kek.rotate",
        AdminCommand::Sandbox(crate::cli::SandboxAdminCommand::Users(u)) => match u {
            crate::cli::SandboxUsersCommand::Create(_) => "admin.sandbox.users.create",
            crate::cli::SandboxUsersCommand::List => "admin.sandbox.users.list",
        },
    }
}

/// The person at the CLI: `CIBA_OPERATOR` (set it under `kubectl exec`, where there is no
/// login), else the operating-system user.
pub fn operator() -> String {
    std::env::var("CIBA_OPERATOR")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_default()
}

static NO_ORIGIN: Origin = Origin {
    source: None,
    request_id: None,
};

/// An event by `operator`, now.
pub fn by_operator(operator: &str) -> By<'_> {
    By {
        actor: Actor::Operator(operator),
        origin: &NO_ORIGIN,
        at_ms: ciba_runtime::clock::now_ms(),
    }
}

/// The audit event of the admin command being run, written in the transaction of the change
/// it makes ([`Recorder::write`]); a command that changes nothing (a listing) or fails is
/// recorded after it ran ([`record_command`]).
pub struct Recorder {
    operator: String,
    action: &'static str,
    written: std::cell::Cell<bool>,
}

impl Recorder {
    pub fn new(action: &'static str) -> Self {
        Self {
            operator: operator(),
            action,
            written: std::cell::Cell::new(false),
        }
    }

    pub fn action(&self) -> &'static str {
        self.action
    }

    /// Whether a change recorded its event (then nothing is recorded after the command).
    pub fn written(&self) -> bool {
        self.written.get()
    }

    /// Run `change` and, when it changed something (true), this command's event about
    /// `object`, in one transaction.
    pub fn write(
        &self,
        store: &Store,
        object: Option<&str>,
        change: impl FnOnce(&mut DbConnection) -> StoreResult<bool>,
    ) -> StoreResult<bool> {
        let by = by_operator(&self.operator);
        let changed = store.write(|c| {
            if !change(c)? {
                return Ok(false);
            }
            audit::record(c, &by, self.action, object, Outcome::Ok)?;
            Ok(true)
        })?;
        if changed {
            self.written.set(true);
        }
        Ok(changed)
    }
}

/// Record that the operator ran `action` (its object: the id its answer names, never a
/// secret or a code); refused when it failed.
pub fn record_command(store: &Store, action: &'static str, answer: Result<&Value, &String>) {
    let operator = operator();
    let object = answer.ok().and_then(|v| {
        ["client_id", "revoked", "device_id", "sub", "id"]
            .iter()
            .find_map(|k| v.get(k).and_then(Value::as_str))
            .map(str::to_owned)
    });
    let outcome = if answer.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Refused
    };
    let by = by_operator(&operator);
    if let Err(e) = store.write_one(|c| audit::record(c, &by, action, object.as_deref(), outcome)) {
        tracing::warn!(error = %e, "recording an admin command failed");
    }
}
