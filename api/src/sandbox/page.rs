//! `GET /sandbox` and `POST /sandbox/decisions`: the test users and their pending requests
//! as the authenticating app would show them, with Approve and Decline buttons.
//!
//! Server-rendered HTML with no external resources and no script: it works without
//! JavaScript. The forms carry a double-submit token (a random value in a `SameSite=Strict`,
//! `HttpOnly` cookie and in a hidden field), and a browser's `Sec-Fetch-Site: cross-site` is
//! refused, so another site cannot make a visitor's browser approve anything. The page is
//! never framed (`frame-ancestors 'none'`): an Approve button must not be clickjacked.

use super::decide;
use crate::error::{ApiError, ApiResult};
use crate::http::caller::Caller;
use crate::http::form::Form;
use crate::http::reply::{html_page, no_store};
use crate::state::{now, AppState};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciba_domain::auth_request::Decision;
use ciba_domain::error::{ErrorCode, OAuthError};
use ciba_domain::ids::{is_well_formed_id, random_id};
use ciba_domain::sandbox::{masked, Behaviour};
use ciba_domain::secret::constant_time_eq;
use ciba_store::auth_requests::{self as requests, AuthRequestRow};
use ciba_store::permissions::{self as perms, PermissionRow};
use ciba_store::sandbox::{self as store, SandboxUserRow};
use ciba_store::users::{self, DeviceRow, UserRow};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Write;
use warp::http::header::{HeaderValue, LOCATION, SET_COOKIE};
use warp::http::StatusCode;
use warp::hyper::body::Bytes;
use warp::reply::Response;

pub const CSRF_COOKIE: &str = "ciba_sandbox_csrf";

/// One test user as the page shows it.
struct UserView {
    sandbox: SandboxUserRow,
    user: UserRow,
    device: Option<DeviceRow>,
    pending: Vec<(AuthRequestRow, Option<PermissionRow>, String)>,
}

async fn load(state: &AppState, now: i64) -> ApiResult<Vec<UserView>> {
    let rows = state
        .db(move |c| {
            let mut out = Vec::new();
            for (sandbox, user) in store::list(c)? {
                let device = users::find_device(c, &sandbox.device_id)?;
                let mut pending = Vec::new();
                for r in requests::pending_for_user(c, &user.sub, now)? {
                    let p = match &r.permission_id {
                        Some(id) => perms::find(c, id)?,
                        None => None,
                    };
                    pending.push((r, p));
                }
                out.push((sandbox, user, device, pending));
            }
            Ok(out)
        })
        .await?;
    let mut views = Vec::with_capacity(rows.len());
    for (sandbox, user, device, pending) in rows {
        let mut named = Vec::with_capacity(pending.len());
        for (r, p) in pending {
            let client = state
                .client_row(&r.client_id)
                .await?
                .map(|c| c.name)
                .unwrap_or_default();
            named.push((r, p, client));
        }
        views.push(UserView {
            sandbox,
            user,
            device,
            pending: named,
        });
    }
    Ok(views)
}

/// `GET /sandbox`.
pub async fn show(
    state: AppState,
    query: HashMap<String, String>,
    cookie: Option<String>,
) -> Response {
    let now = now();
    let (token, fresh) = match cookie.filter(|c| is_well_formed_id(c)) {
        Some(t) => (t, false),
        None => (random_id(), true),
    };
    let notice = match query.get("decided").map(String::as_str) {
        Some("approve") => Some("Approved: the merchant's next poll gets the ID token."),
        Some("decline") => Some("Declined: the merchant's next poll gets access_denied."),
        _ => None,
    };
    let resp = match load(&state, now).await {
        Ok(views) => html(200, render(&views, &token, notice, None, now)),
        Err(e) => error_page(&e),
    };
    with_cookie(resp, &token, fresh)
}

/// `POST /sandbox/decisions` (form: `csrf`, `user`, `ref`, `decision`).
pub async fn post_decision(
    state: AppState,
    content_type: Option<String>,
    body: Bytes,
    cookie: Option<String>,
    fetch_site: Option<String>,
    caller: Caller,
) -> Response {
    let now = now();
    let result: ApiResult<Decision> = async {
        let form = Form::parse(content_type.as_deref(), &body)?;
        let sent = form.require("csrf")?;
        let same = cookie
            .as_deref()
            .is_some_and(|c| constant_time_eq(c.as_bytes(), sent.as_bytes()));
        if !same || fetch_site.as_deref() == Some("cross-site") {
            return Err(OAuthError::new(
                ErrorCode::AccessDenied,
                "the form is stale or came from another site: reload /sandbox and try again",
            )
            .with_status(403)
            .into());
        }
        let decision = Decision::parse(form.require("decision")?)
            .ok_or_else(|| OAuthError::invalid_request("decision: must be approve or decline"))?;
        let user = form.require("user")?;
        let link_ref = form.require("ref")?;
        if !is_well_formed_id(user) {
            return Err(OAuthError::not_found("no such test user").into());
        }
        decide(&state, user, link_ref, decision, caller.origin(), now).await
    }
    .await;
    match result {
        Ok(d) => {
            let mut resp = Response::new(Default::default());
            *resp.status_mut() = StatusCode::SEE_OTHER;
            let to = format!("/sandbox?decided={}", d.as_str());
            if let Ok(v) = HeaderValue::from_str(&to) {
                resp.headers_mut().insert(LOCATION, v);
            }
            resp
        }
        Err(e) => error_page(&e),
    }
}

fn error_page(e: &ApiError) -> Response {
    let mut body = page_head("Sandbox: refused");
    let _ = write!(
        body,
        "<h1>Refused</h1><p class=\"error\"><code>{}</code>: {}</p><p><a href=\"/sandbox\">Back to the sandbox</a></p></body></html>",
        esc(e.code().as_str()),
        esc(&e.error.description)
    );
    let mut resp = html(e.error.status(), body);
    resp.extensions_mut().insert(e.code());
    resp
}

fn html(status: u16, body: String) -> Response {
    no_store(html_page(
        status,
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
        body,
    ))
}

fn with_cookie(mut resp: Response, token: &str, fresh: bool) -> Response {
    if fresh {
        let cookie = format!("{CSRF_COOKIE}={token}; Path=/sandbox; HttpOnly; SameSite=Strict");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().insert(SET_COOKIE, v);
        }
    }
    resp
}

/// HTML-escape text for an element or a quoted attribute.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}\
h1{font-size:1.6rem}section.user{border:1px solid #ccc;border-radius:.5rem;padding:1rem;margin:1rem 0}\
.request{background:#f6f6f9;border-radius:.4rem;padding:.8rem;margin:.6rem 0}\
table{border-collapse:collapse}td,th{padding:.2rem .6rem;text-align:left}\
.notice{background:#e7f6e7;padding:.6rem}.error{background:#fbe9e9;padding:.6rem}\
button{font-size:1rem;padding:.4rem 1rem;margin-right:.5rem}.muted{color:#666}";

fn page_head(title: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>",
        esc(title)
    )
}

fn render(
    views: &[UserView],
    csrf: &str,
    notice: Option<&str>,
    error: Option<&str>,
    now: i64,
) -> String {
    let mut out = page_head("CIBA sandbox");
    out.push_str(
        "<h1>CIBA sandbox</h1><p class=\"muted\">Test users and their simulated \
         authenticating apps. Requests made for a user appear here as the app would show \
         them. Decisions are signed with the simulated app's software key (amr swk), so they \
         never reach eIDAS high. <a href=\"/sandbox\">Refresh</a></p>",
    );
    if let Some(n) = notice {
        let _ = write!(out, "<p class=\"notice\" id=\"notice\">{}</p>", esc(n));
    }
    if let Some(e) = error {
        let _ = write!(out, "<p class=\"error\">{}</p>", esc(e));
    }
    if views.is_empty() {
        out.push_str(
            "<p>No test users. Make one with <code>ciba-api admin sandbox users create</code>.</p>",
        );
    }
    for v in views {
        render_user(&mut out, v, csrf, now);
    }
    out.push_str("</body></html>");
    out
}

fn render_user(out: &mut String, v: &UserView, csrf: &str, now: i64) {
    let behaviour = Behaviour::parse(&v.sandbox.behaviour).unwrap_or(Behaviour::Manual);
    let what = match behaviour {
        Behaviour::Manual => "answers when you click".to_owned(),
        Behaviour::Approve => format!("approves after {} s", v.sandbox.delay_secs),
        Behaviour::Decline => format!("declines after {} s", v.sandbox.delay_secs),
        Behaviour::Ignore => "never answers".to_owned(),
    };
    let _ = write!(
        out,
        "<section class=\"user\" data-user=\"{}\"><h2>{} {}</h2><p>NNIN <code>{}</code> · \
         behaviour <b>{}</b> ({})",
        esc(&v.user.sub),
        esc(&v.user.given_name),
        esc(&v.user.family_name),
        esc(&masked(&v.user.nnin)),
        behaviour.as_str(),
        esc(&what),
    );
    if let Some(d) = &v.device {
        let _ = write!(
            out,
            " · device_info <code>{{\"p\":\"{}\",\"ma\":\"{}\",\"mo\":\"{}\"}}</code> ({})",
            esc(&d.platform),
            esc(&d.manufacturer),
            esc(&d.model),
            esc(&d.status)
        );
    }
    out.push_str("</p>");
    if v.pending.is_empty() {
        out.push_str("<p class=\"muted\">No pending requests.</p>");
    }
    for (r, p, client) in &v.pending {
        let _ = write!(
            out,
            "<div class=\"request\" data-ref=\"{}\"><p><b>{}</b> asks you to confirm",
            esc(&r.link_ref),
            esc(if client.is_empty() {
                "A merchant"
            } else {
                client
            }),
        );
        if let Some(b) = &r.binding_message {
            let _ = write!(out, " · code <b class=\"binding\">{}</b>", esc(b));
        }
        let _ = write!(
            out,
            " · <span class=\"ttl\">{} s left</span></p>",
            (r.expires_at - now).max(0)
        );
        if let Some(p) = p {
            render_statement(out, p);
        }
        if behaviour == Behaviour::Ignore {
            out.push_str("<p class=\"muted\">This user never answers.</p></div>");
            continue;
        }
        for (decision, label) in [("approve", "Approve"), ("decline", "Decline")] {
            let _ = write!(
                out,
                "<form method=\"post\" action=\"/sandbox/decisions\" style=\"display:inline\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <input type=\"hidden\" name=\"user\" value=\"{}\">\
                 <input type=\"hidden\" name=\"ref\" value=\"{}\">\
                 <button type=\"submit\" name=\"decision\" value=\"{decision}\">{label}</button></form>",
                esc(csrf),
                esc(&v.user.sub),
                esc(&r.link_ref),
            );
        }
        out.push_str("</div>");
    }
    out.push_str("</section>");
}

/// What the user approves: the payments, the text, or a login.
fn render_statement(out: &mut String, p: &PermissionRow) {
    let statement: Value = URL_SAFE_NO_PAD
        .decode(&p.statement)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    match p.kind.as_str() {
        "payment.v1" => {
            out.push_str("<table class=\"payments\"><tr><th>Amount</th><th>Currency</th><th>Creditor</th></tr>");
            let payments = statement.get("payments").and_then(Value::as_array);
            for pay in payments.into_iter().flatten() {
                let _ = write!(
                    out,
                    "<tr><td class=\"amount\">{}</td><td class=\"currency\">{}</td><td class=\"creditor\">{}</td></tr>",
                    esc(&field(pay, "amount")),
                    esc(&field(pay, "currency")),
                    esc(&field(pay, "creditorName"))
                );
            }
            out.push_str("</table>");
        }
        "text.v1" => {
            let _ = write!(
                out,
                "<blockquote class=\"text\">{}</blockquote>",
                esc(&field(&statement, "text")).replace('\n', "<br>")
            );
        }
        _ => out.push_str("<p>Log in.</p>"),
    }
}
