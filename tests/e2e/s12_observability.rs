//! Issue 22: the chart's Grafana dashboard (`helm/ciba/dashboards/*.json`) and alert rules
//! (`helm/ciba/alerts/ciba-rules.yaml`) query only metrics the binaries export. One flow of
//! each outcome (approved, declined, expired), a poll of each, a rate-limit refusal and the
//! worker's passes; then every metric name in every PromQL `expr` of the dashboard and the
//! rules must be a series of the api's `/metrics` or the worker's (its own HTTP surface,
//! served from the in-process worker that ran the passes).
#![allow(clippy::unwrap_used)]

use crate::support;

use ciba_worker::{health, periodic, queue};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::app::{App, Merchant};
use support::worker::{ping_client, Receiver};
use support::{Backend, TestServer};

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../helm/ciba")
}

/// PromQL words that are not metrics: operators, modifiers and the aggregations (which
/// may come before their parenthesis's `by (...)`).
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
];

/// The metric names a PromQL expression selects: identifiers outside strings, label matchers
/// (`{...}`), ranges (`[...]`) and grouping lists (`by (...)`), that are not a function (an
/// identifier before `(`), a keyword, a number or a Grafana variable (`$x`, `${x}`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let (mut i, mut depth_brace, mut depth_bracket) = (0, 0, 0);
    // A grouping list: `by`/`without`/`on`/`ignoring`/`group_*` was the last word.
    let mut grouping = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                continue;
            }
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            '(' if grouping => {
                grouping = false;
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
            }
            '$' => {
                i += 1;
                while i < chars.len() && (ident(chars[i]) || chars[i] == '{' || chars[i] == '}') {
                    i += 1;
                }
                continue;
            }
            _ if ident(c) => {
                let start = i;
                while i < chars.len() && ident(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                grouping = matches!(
                    word.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                );
                let selected = depth_brace == 0
                    && depth_bracket == 0
                    && !c.is_ascii_digit()
                    && next != Some(&'(')
                    && !KEYWORDS.contains(&word.as_str());
                if selected {
                    names.insert(word);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    names
}

/// Every `expr` of a Grafana dashboard's panels (rows included).
fn dashboard_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                match (k.as_str(), x) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => dashboard_exprs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| dashboard_exprs(x, out)),
        _ => {}
    }
}

/// Every `expr:` of a Prometheus rule file: inline, or a `|`/`>` block (its more indented
/// lines).
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let Some(at) = line.find("expr:") else {
            continue;
        };
        if line[..at].trim_start_matches([' ', '-']).is_empty() {
            let value = line[at + 5..].trim();
            if value.starts_with('|') || value.starts_with('>') {
                let block = lines[n + 1..]
                    .iter()
                    .take_while(|l| l.trim().is_empty() || indent(l) > at)
                    .copied()
                    .collect::<Vec<_>>()
                    .join("\n");
                out.push(block);
            } else {
                out.push(value.to_owned());
            }
        }
    }
    out
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The series names of a Prometheus text exposition, and its `# TYPE` lines' kinds.
fn exposition(text: &str) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let mut series = BTreeSet::new();
    let mut types = BTreeSet::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let mut it = t.split_whitespace();
            if let (Some(name), Some(kind)) = (it.next(), it.next()) {
                types.insert((name.to_owned(), kind.to_owned()));
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            series.insert(line[..end].to_owned());
        }
    }
    (series, types)
}

#[test]
fn metric_names_are_read_from_promql() {
    let e = r#"histogram_quantile(0.99, sum by (route, le) (rate(ciba_x_bucket{namespace=~"$namespace", a="b{c}"}[$__rate_interval]))) / on (pod) group_left ciba_y > 100 * 86400 and ignoring(le) ciba_z offset 5m"#;
    let want = ["ciba_x_bucket", "ciba_y", "ciba_z"];
    assert_eq!(
        metric_names(e),
        want.iter().map(|s| s.to_string()).collect()
    );
    let rules = "groups:\n  - rules:\n      - expr: |\n          sum(a)\n            / b\n        for: 5m\n      - expr: c > 0\n";
    assert_eq!(
        rule_exprs(rules),
        ["          sum(a)\n            / b", "c > 0"]
    );
}

/// bc-authorize of the ping client for the app's user.
async fn start(srv: &TestServer, m: &Merchant, app: &App) -> support::Reply {
    m.backchannel_authorize(
        srv,
        &[
            ("login_hint", &app.nnin),
            ("scope", "openid"),
            ("binding_message", "Observability"),
            ("client_notification_token", "tok"),
        ],
    )
    .await
}

/// Start a request; its auth_req_id and link ref.
async fn started(srv: &TestServer, m: &Merchant, app: &App) -> (String, String) {
    let r = start(srv, m, app).await;
    let id = r.ok()["auth_req_id"].as_str().unwrap().to_owned();
    let i = id.clone();
    let row = srv
        .store()
        .read(move |c| ciba_store::auth_requests::find(c, &i))
        .unwrap()
        .unwrap();
    (id, row.link_ref)
}

async fn dashboard_and_alerts_query_only_exported_metrics(b: Backend) {
    let srv = TestServer::start_with(b, &[("CIBA_LIMIT_USER_STARTS", "3/3600")]).await;
    let rx = Receiver::start().await;
    let (m, app) = ping_client(&srv, &rx.url("/cb"), 120).await;
    let (approved, a) = started(&srv, &m, &app).await;
    let (declined, d) = started(&srv, &m, &app).await;
    let (expiring, _) = started(&srv, &m, &app).await;
    start(&srv, &m, &app)
        .await
        .expect_error(429, "too_many_requests");
    app.approve(&srv, &a).await.ok();
    app.decline(&srv, &d).await.ok();
    m.poll(&srv, &approved).await.ok();
    m.poll(&srv, &declined)
        .await
        .expect_error(400, "access_denied");
    m.poll(&srv, &expiring)
        .await
        .expect_error(400, "authorization_pending");
    srv.advance(Duration::from_secs(3_600));
    let ctx = Arc::new(srv.worker_in_process(&[]));
    let c = ctx.clone();
    tokio::task::spawn_blocking(move || {
        periodic::expire_due(&c);
        periodic::update_gauges(&c);
    })
    .await
    .unwrap();
    assert_eq!(queue::run_due(&ctx).await, 3, "three pings");
    m.poll(&srv, &expiring)
        .await
        .expect_error(400, "expired_token");

    // The worker's /metrics, served by its own HTTP surface from the context that ran.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let m2 = ctx.clone();
    let served = tokio::spawn(health::serve(
        listener,
        move || m2.metrics.render(),
        stopped,
    ));
    let worker_text = srv.get_text(&format!("http://{addr}/metrics")).await;
    let _ = stop.send(true);
    served.await.unwrap();
    let api_text = srv.metrics().await;
    let (mut series, mut types) = exposition(&api_text);
    let (w_series, w_types) = exposition(&worker_text);
    series.extend(w_series);
    types.extend(w_types);

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(chart().join("dashboards/ciba.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    let rules = std::fs::read_to_string(chart().join("alerts/ciba-rules.yaml")).unwrap();
    let alert_exprs = rule_exprs(&rules);
    assert!(
        exprs.len() >= 20 && alert_exprs.len() >= 6,
        "{exprs:?} {alert_exprs:?}"
    );
    let mut missing = Vec::new();
    let mut queried = BTreeSet::new();
    for (file, e) in exprs
        .iter()
        .map(|e| ("dashboards/ciba.json", e))
        .chain(alert_exprs.iter().map(|e| ("alerts/ciba-rules.yaml", e)))
    {
        let names = metric_names(e);
        assert!(!names.is_empty(), "{file}: no metric in {e}");
        for name in names {
            // A histogram is queried by its series (`_bucket`, `_sum`, `_count`), never by
            // its family name, which has no samples.
            let histogram = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|base| types.contains(&(base.to_string(), "histogram".into())));
            if !series.contains(&name) {
                missing.push(format!("{file}: {name} in {e}"));
            } else if name.ends_with("_bucket") && histogram.is_none() {
                missing.push(format!("{file}: {name} is not a histogram's buckets"));
            }
            queried.insert(name);
        }
    }
    assert!(
        missing.is_empty(),
        "metrics queried but not exported:\n{}\n--- api:\n{api_text}\n--- worker:\n{worker_text}",
        missing.join("\n")
    );
    // Both processes' metrics are queried, and what the issue lists is on the dashboard.
    for name in [
        "ciba_http_requests_total",
        "ciba_http_request_duration_seconds_bucket",
        "ciba_polls_total",
        "ciba_flows_total",
        "ciba_worker_requests_expired_total",
        "ciba_rate_limited_total",
        "ciba_db_pool_connections",
        "ciba_worker_queue_depth",
        "ciba_worker_jobs_dead",
        "ciba_signing_key_age_seconds",
        "ciba_ready",
    ] {
        assert!(queried.contains(name), "{name} is not queried");
    }
    // The events the flow made are counted.
    for line in [
        r#"ciba_flows_total{event="started",flow="ciba"} 3"#,
        r#"ciba_flows_total{event="approved",flow="ciba"} 1"#,
        r#"ciba_flows_total{event="declined",flow="ciba"} 1"#,
        r#"ciba_polls_total{outcome="issued"} 1"#,
        r#"ciba_polls_total{outcome="expired_token"} 1"#,
        "ciba_ready 1",
    ] {
        assert!(api_text.contains(line), "{line} not in\n{api_text}");
    }
    assert!(
        worker_text.contains("ciba_worker_requests_expired_total 1"),
        "{worker_text}"
    );
}

on_both_backends!(dashboard_and_alerts_query_only_exported_metrics);
