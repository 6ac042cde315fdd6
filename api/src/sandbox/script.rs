//! `ciba-api sandbox approve|decline --nnin NNIN [--ref REF]`: answer for a test user's
//! simulated app from a script, down the same decision path as the page.

use crate::admin::sandbox::require_sandbox;
use crate::admin::{db_err, open_store};
use crate::cli::{Answer, SandboxCommand};
use crate::state::{now, AppState};
use ciba_domain::audit::Origin;
use ciba_domain::auth_request::Decision;
use ciba_domain::nnin::Nnin;
use ciba_runtime::config::Config;
use ciba_store::auth_requests as requests;
use ciba_store::sandbox as store;
use ciba_store::users;
use serde_json::{json, Value};

pub fn run(config: Config, cmd: SandboxCommand) -> Result<Value, String> {
    require_sandbox(&config)?;
    let (decision, answer) = match cmd {
        SandboxCommand::Approve(a) => (Decision::Approve, a),
        SandboxCommand::Decline(a) => (Decision::Decline, a),
    };
    let store = open_store(&config)?;
    let state = AppState::new(config, store)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(answer_for(&state, decision, answer))
}

async fn answer_for(state: &AppState, decision: Decision, a: Answer) -> Result<Value, String> {
    let nnin = Nnin::parse(&a.nnin).map_err(|e| format!("--nnin: {e}"))?;
    let now = now();
    let nnin = nnin.as_str().to_owned();
    let found = state
        .store
        .read(|c| {
            let Some(user) = users::find_by_nnin(c, &nnin)? else {
                return Ok(None);
            };
            if store::find(c, &user.sub)?.is_none() {
                return Ok(Some((user.sub, None)));
            }
            let pending = requests::pending_for_user(c, &user.sub, now)?;
            Ok(Some((user.sub, Some(pending))))
        })
        .map_err(db_err)?;
    let (sub, pending) = found.ok_or("no user has this NNIN")?;
    let pending = pending.ok_or("this user is not a sandbox test user")?;
    // Newest first; or the one named.
    let target = match &a.link_ref {
        Some(r) => pending.iter().find(|p| &p.link_ref == r),
        None => pending.first(),
    };
    let target = target.ok_or("the test user has no such pending request")?;
    let origin = Origin {
        source: Some("cli".into()),
        request_id: None,
    };
    let link_ref = target.link_ref.clone();
    let decided = super::decide(state, &sub, &link_ref, decision, origin, now)
        .await
        .map_err(|e| format!("{}: {}", e.code().as_str(), e.error.description))?;
    Ok(json!({"ref": link_ref, "status": decided.status().as_str()}))
}
