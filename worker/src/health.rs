//! The worker's own small HTTP surface: `GET /healthz` and `GET /metrics`, served with hyper
//! directly (the worker does not link warp or the API).

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long a probe may take to send its request line and headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers one request: the route table of the worker.
fn answer(req: &Request<Incoming>, metrics: &dyn Fn() -> String) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => (
            StatusCode::OK,
            "application/json",
            r#"{"status":"ok"}"#.to_string(),
        ),
        (&Method::GET, "/metrics") => (StatusCode::OK, "text/plain; version=0.0.4", metrics()),
        (_, "/healthz" | "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed".to_string(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found".to_string()),
    };
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        res.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    res
}

/// Serves until `stop` turns true, then lets open connections finish (bounded by the caller).
pub async fn serve(
    listener: TcpListener,
    metrics: impl Fn() -> String + Send + Sync + 'static,
    mut stop: watch::Receiver<bool>,
) {
    let metrics: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(metrics);
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "worker health listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let m = metrics.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let res = answer(&req, &*m);
            async move { Ok::<_, std::convert::Infallible>(res) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    graceful.shutdown().await;
}
