//! The universal link's web fallback and the apps' association files (contract §6).

use crate::http::reply::{html_page, json_response, no_store};
use crate::state::{now, AppState};
use ciba_domain::status::RequestStatus;
use ciba_store::auth_requests as requests;
use serde_json::json;
use std::collections::HashMap;
use warp::reply::Response;

fn page(status: u16, title: &str, message: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}</style>\
         </head><body><h1>{title}</h1><p>{message}</p></body></html>"
    );
    no_store(html_page(
        status,
        "default-src 'none'; style-src 'unsafe-inline'",
        html,
    ))
}

/// What a browser shows when the authenticating app did not take the link. No personal data.
pub async fn authorize_fallback(state: AppState, query: HashMap<String, String>) -> Response {
    let now = now();
    let Some(link_ref) = query
        .get("ref")
        .filter(|r| ciba_domain::ids::is_well_formed_id(r))
        .cloned()
    else {
        return page(
            404,
            "Request not found",
            "This link is not valid. Return to the app you came from and start again.",
        );
    };
    let found = state.db(move |c| requests::find_by_ref(c, &link_ref)).await;
    match found {
        Ok(Some(r))
            if RequestStatus::at(&r.status, r.expires_at, now) == RequestStatus::Pending =>
        {
            let left = r.expires_at - now;
            let remaining = if left >= 120 {
                format!("{} minutes", left / 60)
            } else {
                format!("{left} seconds")
            };
            page(
                200,
                "Open the authentication app",
                &format!(
                    "This link opens the authentication app, which does not seem to be installed on this device. \
                     Install it, or return to the app you came from and choose another way to continue. \
                     The request expires in {remaining}."
                ),
            )
        }
        Ok(Some(_)) => page(
            410,
            "Request no longer active",
            "This request has expired or is already complete. Return to the app you came from.",
        ),
        Ok(None) => page(
            404,
            "Request not found",
            "This link is not valid. Return to the app you came from and start again.",
        ),
        Err(_) => page(
            503,
            "Try again shortly",
            "The service is briefly unavailable. Please try again in a moment.",
        ),
    }
}

pub fn apple_app_site_association(state: AppState) -> Response {
    json_response(
        200,
        &json!({"applinks": {"details": [{"appIDs": state.config.apple_app_ids, "components": [{"/": "/app2app/*"}]}]}}),
    )
}

pub fn assetlinks(state: AppState) -> Response {
    let body = match &state.config.android_package {
        Some(package) => json!([{
            "relation": ["delegate_permission/common.handle_all_urls"],
            "target": {"namespace": "android_app", "package_name": package,
                       "sha256_cert_fingerprints": state.config.android_cert_fingerprints},
        }]),
        None => json!([]),
    };
    json_response(200, &body)
}
