//! The automatic behaviours of test users (`approve`, `decline`): every second, each
//! request pending for such a user longer than the user's delay is decided by the
//! simulated app. Several replicas may race; the decision path lets exactly one win.

use super::decide;
use crate::state::{now, AppState};
use ciba_domain::audit::Origin;
use ciba_domain::error::ErrorCode;
use ciba_domain::sandbox::Behaviour;
use ciba_store::auth_requests as requests;
use ciba_store::sandbox as store;
use std::time::Duration;

const TICK: Duration = Duration::from_secs(1);

/// Run until the process ends (spawned by the server in sandbox mode).
pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = pass(&state, now()).await {
            tracing::warn!(error = %e, "sandbox: automatic decisions skipped this second");
        }
    }
}

/// One pass: decide what is due. Returns how many requests were decided.
pub async fn pass(state: &AppState, now: i64) -> Result<usize, String> {
    let due = state
        .db(move |c| {
            let mut due = Vec::new();
            for (sb, _) in store::list(c)? {
                let Some(decision) = Behaviour::parse(&sb.behaviour).and_then(|b| b.automatic())
                else {
                    continue;
                };
                for r in requests::pending_for_user(c, &sb.user_sub, now)? {
                    if r.created_at + sb.delay_secs <= now {
                        due.push((sb.user_sub.clone(), r.link_ref, decision));
                    }
                }
            }
            Ok(due)
        })
        .await
        .map_err(|e| e.error.description.to_string())?;
    let origin = || Origin {
        source: Some("sandbox".into()),
        request_id: None,
    };
    let mut decided = 0;
    for (sub, link_ref, decision) in due {
        match decide(state, &sub, &link_ref, decision, origin(), now).await {
            Ok(_) => decided += 1,
            // Another replica, or the page, came first.
            Err(e) if e.code() == ErrorCode::RequestNotPending => {}
            Err(e) => {
                tracing::warn!(error = %e.error.description, "sandbox: automatic decision refused")
            }
        }
    }
    Ok(decided)
}
