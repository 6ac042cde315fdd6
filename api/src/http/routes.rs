//! The route table. Every route is instrumented with its template (never the raw path).

use crate::handlers::{app, authorize, discovery, docs, health, links, permissions, token};
use crate::http::caller::{caller, Caller};
use crate::http::guard;
use crate::http::recover::{BodyTooLarge, BodyUnreadable};
use crate::state::AppState;
use ciba_domain::error::ErrorCode;
use ciba_runtime::crypto::keyring::Purpose;
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Instant;
use warp::filters::BoxedFilter;
use warp::hyper::body::Bytes;
use warp::reply::Response;
use warp::{Filter, Rejection};

pub const MAX_BODY: u64 = 64 * 1024;

pub fn with_state(
    state: AppState,
) -> impl Filter<Extract = (AppState,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// The request body, at most [`MAX_BODY`] bytes whether or not it declares its length
/// (a missing Content-Length is a legal empty or chunked body, not an error).
fn body() -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and_then(|len: Option<u64>| async move {
            match len {
                Some(n) if n > MAX_BODY => Err(warp::reject::custom(BodyTooLarge)),
                _ => Ok(()),
            }
        })
        .untuple_one()
        .and(warp::body::stream())
        .and_then(collect_limited)
}

async fn collect_limited<S, B>(stream: S) -> Result<Bytes, Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: warp::Buf,
{
    use futures_util::TryStreamExt;
    let mut out: Vec<u8> = Vec::new();
    let mut stream = std::pin::pin!(stream);
    while let Some(mut chunk) = stream
        .try_next()
        .await
        .map_err(|_| warp::reject::custom(BodyUnreadable))?
    {
        if out.len() + chunk.remaining() > MAX_BODY as usize {
            return Err(warp::reject::custom(BodyTooLarge));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            out.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(Bytes::from(out))
}

fn header(
    name: &'static str,
) -> impl Filter<Extract = (Option<String>,), Error = Rejection> + Clone {
    warp::header::optional::<String>(name)
}

/// Record metrics and one log line per request under the route's template.
fn instrument<F>(state: &AppState, route: &'static str, filter: F) -> BoxedFilter<(Response,)>
where
    F: Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static,
{
    let st = state.clone();
    let (method, _) = route.split_once(' ').unwrap_or(("-", route));
    warp::any()
        .map(Instant::now)
        .and(filter.or_else(guard::render_refused))
        .map(move |start: Instant, resp: Response| {
            let secs = start.elapsed().as_secs_f64();
            let status = resp.status().as_u16();
            st.metrics.observe(route, method, status, secs);
            let error = resp.extensions().get::<ErrorCode>().map(|c| c.as_str());
            let ms = (secs * 100_000.0).round() / 100.0;
            tracing::info!(route, status, error, ms, "request");
            resp
        })
        .boxed()
}

pub fn routes(state: AppState, serve_metrics: bool) -> BoxedFilter<(Response,)> {
    let s = || with_state(state.clone());
    let who = caller;

    // Path before method, so an unknown path is 404 and a known one with the wrong method 405.
    let discovery_doc = warp::path!(".well-known" / "openid-configuration")
        .or(warp::path!(".well-known" / "oauth-authorization-server"))
        .unify()
        .and(warp::get())
        .and(s())
        .map(discovery::metadata);
    let oidc_jwks = warp::path!("oidc" / "v1" / "jwks")
        .and(warp::get())
        .and(s())
        .map(|st| discovery::jwks(st, Purpose::Oidc));
    let grants_jwks = warp::path!("permissions" / "v1" / "jwks")
        .and(warp::get())
        .and(s())
        .map(|st| discovery::jwks(st, Purpose::Grants));
    let token = warp::path!("oidc" / "v1" / "token")
        .and(warp::post())
        .and(s())
        .and(header("content-type"))
        .and(who())
        .and(body())
        .then(token::token);
    // The contract's path has a trailing slash; accept it with or without.
    let perm_root = warp::path::full()
        .and_then(|p: warp::path::FullPath| async move {
            match p.as_str() {
                "/permissions/v1/" | "/permissions/v1" => Ok(()),
                _ => Err(warp::reject::not_found()),
            }
        })
        .untuple_one();
    let merchant = || guard::merchant(state.clone(), "/permissions/v1/");
    let perm_register = perm_root
        .and(warp::post())
        .and(s())
        .and(header("content-type"))
        .and(body())
        .and(merchant())
        .then(permissions::register);
    let perm_user_exists = warp::path!("permissions" / "v1" / "user-exists")
        .and(warp::post())
        .and(s())
        .and(header("content-type"))
        .and(body())
        .and(merchant())
        .then(|st, ct, b, _: Caller, m| permissions::user_exists(st, ct, b, m));
    let perm_get = warp::path!("permissions" / "v1" / String)
        .and(warp::get())
        .and(s())
        .and(merchant())
        .then(|id, st, _: Caller, m| permissions::get(st, id, m));
    let perm_grant = warp::path!("permissions" / "v1" / String / "grant")
        .and(warp::get())
        .and(s())
        .and(merchant())
        .then(|id, st, _: Caller, m| permissions::grant(st, id, m));
    let app_authorize = warp::path!("oidc" / "v1" / "app-authorize")
        .and(warp::post())
        .and(s())
        .and(header("content-type"))
        .and(who())
        .and(body())
        .then(authorize::app_authorize);
    let bc_authorize = warp::path!("oidc" / "v1" / "bc-authorize")
        .and(warp::post())
        .and(s())
        .and(header("content-type"))
        .and(who())
        .and(body())
        .then(authorize::bc_authorize);
    let app_enroll = warp::path!("app" / "v1" / "devices")
        .and(warp::post())
        .and(s())
        .and(who())
        .and(header("content-type"))
        .and(body())
        .then(app::enroll);
    let device = || guard::device(state.clone());
    let app_list = warp::path!("app" / "v1" / "auth-requests")
        .and(warp::get())
        .and(s())
        .and(warp::query::<HashMap<String, String>>())
        .and(device())
        .then(app::list);
    let app_view = warp::path!("app" / "v1" / "auth-requests" / String)
        .and(warp::get())
        .and(s())
        .and(caller())
        .then(|r, st, c| app::view(st, r, c));
    let app_decide = warp::path!("app" / "v1" / "auth-requests" / String / "decision")
        .and(warp::post())
        .and(s())
        .and(header("content-type"))
        .and(body())
        .and(caller())
        .then(|r, st, ct, b, c| app::decide(st, r, ct, b, c));
    let fallback = warp::path!("app2app" / "authorize")
        .and(warp::get())
        .and(s())
        .and(warp::query::<HashMap<String, String>>())
        .then(links::authorize_fallback);
    let aasa = warp::path!(".well-known" / "apple-app-site-association")
        .and(warp::get())
        .and(s())
        .map(links::apple_app_site_association);
    let assetlinks = warp::path!(".well-known" / "assetlinks.json")
        .and(warp::get())
        .and(s())
        .map(links::assetlinks);
    let openapi = warp::path!("openapi.yaml")
        .and(warp::get())
        .map(discovery::openapi);
    // Exactly `/docs` (warp would take `/docs/` too): the page's URLs are relative to it.
    let docs_page = warp::path::full()
        .and_then(|p: warp::path::FullPath| async move {
            match p.as_str() {
                "/docs" => Ok(()),
                _ => Err(warp::reject::not_found()),
            }
        })
        .untuple_one()
        .and(warp::get())
        .map(docs::docs);
    let docs_js = warp::path!("docs" / "redoc.standalone.js")
        .and(warp::get())
        .map(docs::redoc_js);
    let healthz = warp::path!("healthz").and(warp::get()).map(health::healthz);
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(s())
        .then(health::readyz);

    let mut all = instrument(
        &state,
        "GET /.well-known/openid-configuration",
        discovery_doc,
    )
    .or(instrument(&state, "GET /oidc/v1/jwks", oidc_jwks))
    .unify()
    .or(instrument(&state, "GET /permissions/v1/jwks", grants_jwks))
    .unify()
    .or(instrument(&state, "POST /oidc/v1/token", token))
    .unify()
    .or(instrument(&state, "POST /permissions/v1/", perm_register))
    .unify()
    .or(instrument(
        &state,
        "POST /permissions/v1/user-exists",
        perm_user_exists,
    ))
    .unify()
    .or(instrument(&state, "GET /permissions/v1/{id}", perm_get))
    .unify()
    .or(instrument(
        &state,
        "GET /permissions/v1/{id}/grant",
        perm_grant,
    ))
    .unify()
    .or(instrument(
        &state,
        "POST /oidc/v1/app-authorize",
        app_authorize,
    ))
    .unify()
    .or(instrument(
        &state,
        "POST /oidc/v1/bc-authorize",
        bc_authorize,
    ))
    .unify()
    .or(instrument(&state, "POST /app/v1/devices", app_enroll))
    .unify()
    .or(instrument(&state, "GET /app/v1/auth-requests", app_list))
    .unify()
    .or(instrument(
        &state,
        "GET /app/v1/auth-requests/{ref}",
        app_view,
    ))
    .unify()
    .or(instrument(
        &state,
        "POST /app/v1/auth-requests/{ref}/decision",
        app_decide,
    ))
    .unify()
    .or(instrument(&state, "GET /app2app/authorize", fallback))
    .unify()
    .or(instrument(
        &state,
        "GET /.well-known/apple-app-site-association",
        aasa,
    ))
    .unify()
    .or(instrument(
        &state,
        "GET /.well-known/assetlinks.json",
        assetlinks,
    ))
    .unify()
    .or(instrument(&state, "GET /openapi.yaml", openapi))
    .unify()
    .or(instrument(&state, "GET /docs", docs_page))
    .unify()
    .or(instrument(&state, "GET /docs/redoc.standalone.js", docs_js))
    .unify()
    .or(instrument(&state, "GET /healthz", healthz))
    .unify()
    .or(instrument(&state, "GET /readyz", readyz))
    .unify()
    .boxed();
    if serve_metrics {
        all = all.or(metrics_route(state.clone())).unify().boxed();
    }
    // Outside sandbox mode the sandbox's paths are unknown (404), like any other.
    if state.config.sandbox {
        all = all.or(sandbox_routes(&state)).unify().boxed();
    }
    let st = state.clone();
    all.recover(move |r| crate::http::recover::handle(st.clone(), r))
        .unify()
        .boxed()
}

/// `GET /sandbox` and `POST /sandbox/decisions` (contract §12).
fn sandbox_routes(state: &AppState) -> BoxedFilter<(Response,)> {
    use crate::sandbox::page;
    let s = || with_state(state.clone());
    let csrf = || warp::cookie::optional::<String>(page::CSRF_COOKIE);
    let show = warp::path!("sandbox")
        .and(warp::get())
        .and(s())
        .and(warp::query::<HashMap<String, String>>())
        .and(csrf())
        .then(page::show);
    let decide = warp::path!("sandbox" / "decisions")
        .and(warp::post())
        .and(s())
        .and(header("content-type"))
        .and(body())
        .and(csrf())
        .and(header("sec-fetch-site"))
        .and(caller())
        .then(page::post_decision);
    instrument(state, "GET /sandbox", show)
        .or(instrument(state, "POST /sandbox/decisions", decide))
        .unify()
        .boxed()
}

pub fn metrics_route(state: AppState) -> BoxedFilter<(Response,)> {
    warp::path!("metrics")
        .and(warp::get())
        .and(with_state(state))
        .map(health::metrics)
        .boxed()
}
