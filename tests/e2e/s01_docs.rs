//! `GET /docs`: openapi.yaml rendered by the vendored Redoc, in every mode, loading nothing
//! from another host.
#![allow(clippy::unwrap_used)]

use crate::support;

use support::{Backend, TestServer};

/// The values of every `src="…"` and `href="…"` attribute in `html`.
fn references(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\"", "spec-url=\""] {
        for (at, _) in html.match_indices(attr) {
            let rest = &html[at + attr.len()..];
            out.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    out
}

async fn docs_page_renders_openapi_from_this_origin_only(b: Backend) {
    let srv = TestServer::start(b).await;
    let page_url = url::Url::parse(&srv.url("/docs")).unwrap();
    let resp = srv.http.get(page_url.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let header = |name: &str| resp.headers()[name].to_str().unwrap().to_owned();
    assert!(header("content-type").starts_with("text/html"));
    // The browser enforces it: only this origin (plus inline styles, data: images and the
    // blob: worker Redoc's search runs in), whatever the bundle would fetch.
    let csp = header("content-security-policy");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(!csp.contains("http"), "no other host in the policy: {csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(header("x-content-type-options"), "nosniff");
    let html = resp.text().await.unwrap();

    // Redoc renders into the element that names the document.
    assert!(html.contains("<redoc spec-url="), "{html}");
    let refs = references(&html);
    assert!(refs.len() >= 3, "{refs:?}");
    let mut script = None;
    let mut spec = None;
    for r in &refs {
        assert!(
            !r.contains("//"),
            "{r}: the page names no host (not even this one)"
        );
        let target = page_url.join(r).unwrap();
        assert_eq!(target.origin(), page_url.origin(), "{r}");
        match target.path() {
            "/docs/redoc.standalone.js" => script = Some(target),
            "/openapi.yaml" => spec = Some(target),
            other => panic!("the page references {other}"),
        }
    }

    // The bundle, byte for byte the vendored one, with a JavaScript type and a long cache.
    let resp = srv.http.get(script.unwrap()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/javascript"), "{ct}");
    let cache = resp.headers()["cache-control"].to_str().unwrap().to_owned();
    assert!(cache.contains("max-age=31536000"), "{cache}");
    let js = resp.bytes().await.unwrap();
    let vendored = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/redoc/redoc.standalone.js"
    ))
    .unwrap();
    assert!(js[..] == vendored[..], "the vendored bundle");

    // The document it renders is the served one.
    let resp = srv.http.get(spec.unwrap()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("  /docs:"));

    // The page is `/docs` only: its relative URLs would not resolve from `/docs/`.
    let slash = srv.http.get(srv.url("/docs/")).send().await.unwrap();
    assert_eq!(slash.status(), 404);
    // Requests are counted under the route templates.
    let metrics = srv.metrics().await;
    for route in ["GET /docs", "GET /docs/redoc.standalone.js"] {
        assert!(
            metrics.contains(&format!("route=\"{route}\"")),
            "{route}: {metrics}"
        );
    }
}

on_both_backends!(docs_page_renders_openapi_from_this_origin_only);
