//! Issue "close the token, statement and device loopholes": each test is the attempt of a
//! rogue merchant, a thief of one token or a second phone, and its refusal, on both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

mod app_view;
mod assurance;
mod scopes;
mod statements;
mod tokens;

use support::app::{start, App, Merchant, IPHONE};
use support::TestServer;

/// Start an App2App request for `app` and approve it; returns (auth_req_id, ref).
pub async fn approved(srv: &TestServer, m: &Merchant, app: &App) -> (String, String) {
    let s = start(srv, m, &app.nnin, IPHONE).await;
    s.ok();
    let link_ref = support::app::ref_of(s.str("authorize_uri"));
    app.approve(srv, &link_ref).await.ok();
    (s.str("auth_req_id").to_owned(), link_ref)
}
