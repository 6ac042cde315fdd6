//! `GET /docs`: `openapi.yaml` rendered by Redoc, served from the binary (no CDN, no fonts,
//! nothing from another host) in every mode. The bundle is vendored in `api/assets/redoc`
//! (version, hashes and licences in its README).

use crate::http::reply::{cache_public, html_page};
use warp::http::header::{HeaderValue, CONTENT_TYPE};
use warp::http::StatusCode;
use warp::reply::Response;

/// The vendored Redoc release; the page asks for the bundle with it, so a new release is a
/// new URL to browsers that cached the old one.
pub const REDOC_VERSION: &str = "2.5.4";

/// `bundles/redoc.standalone.js` of the npm package redoc, unmodified.
pub const REDOC_JS: &[u8] = include_bytes!("../../assets/redoc/redoc.standalone.js");

/// What the page may load: its own origin's script and document, the styles Redoc injects
/// inline, data: images (its icons) and the blob: Web Worker its search runs in. Nothing else
/// (no fonts, no other host), and no framing, forms or base URL.
pub const PAGE_CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The page. URLs are relative (the page is `/docs`, so they resolve to `/openapi.yaml` and
/// `/docs/redoc.standalone.js`), which keeps them right behind a proxy that mounts the server
/// under a path. `<redoc spec-url>` is rendered by the bundle when it loads.
fn page() -> String {
    format!(
        "<!doctype html>\n\
         <html lang=\"en\">\n\
         <head>\n\
         <meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>CIBA App2App authorization server: API</title>\n\
         <style>body{{margin:0;padding:0}}</style>\n\
         </head>\n\
         <body>\n\
         <noscript><p>This page renders <a href=\"openapi.yaml\">openapi.yaml</a> with JavaScript.</p></noscript>\n\
         <redoc spec-url=\"openapi.yaml\"></redoc>\n\
         <script src=\"docs/redoc.standalone.js?v={REDOC_VERSION}\"></script>\n\
         </body>\n\
         </html>\n"
    )
}

fn with_headers(mut resp: Response, content_type: &'static str) -> Response {
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// `GET /docs`.
pub fn docs() -> Response {
    cache_public(html_page(200, PAGE_CSP, page()), 300)
}

/// `GET /docs/redoc.standalone.js`: cached for a year (its URL in the page names the version).
pub fn redoc_js() -> Response {
    let mut resp = with_headers(
        Response::new(REDOC_JS.into()),
        "application/javascript; charset=utf-8",
    );
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        "cache-control",
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_is_the_version_the_page_names() {
        let js = std::str::from_utf8(REDOC_JS).unwrap_or_default();
        assert!(js.contains(&format!("\"{REDOC_VERSION}\"")), "version");
        assert!(page().contains(&format!("redoc.standalone.js?v={REDOC_VERSION}")));
    }

    #[test]
    fn the_page_names_no_other_host() {
        let html = page();
        assert!(!html.contains("//"), "{html}");
        assert!(html.contains("<redoc spec-url=\"openapi.yaml\">"));
    }
}
