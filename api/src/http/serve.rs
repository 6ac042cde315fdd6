//! The HTTP/1.1 server loop, with the bounds a server on the internet needs (contract §10):
//! a cap on concurrent connections (one over it is closed at once), a deadline for a
//! request's headers (which also ends a keep-alive connection left idle that long), a
//! deadline for its body, and a cap on the size of its headers. warp 0.4's own server sets
//! none of these, so the routes run as a `warp::service` under hyper's connection builder.

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use warp::filters::BoxedFilter;
use warp::reply::Response;

/// The direct TCP peer of a request, for handlers (`warp::ext::optional::<PeerAddr>()`).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// What bounds each connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_header_bytes: usize,
}

/// A request body that fails once its deadline passes before its last byte arrived.
pub struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

/// The error a [`DeadlineBody`] ends with when the client sends its body too slowly.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received within the body read deadline")]
pub struct BodyTimeout;

impl Body for DeadlineBody {
    type Data = hyper::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => Poll::Ready(Some(frame.map_err(Into::into))),
            Poll::Pending if !this.done && this.deadline.as_mut().poll(cx).is_ready() => {
                this.done = true;
                Poll::Ready(Some(Err(Box::new(BodyTimeout))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serve `routes` on `listener` until `stop` resolves; then stop accepting and wait for the
/// open connections to finish their requests (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    limits: Limits,
    refused: prometheus::IntCounter,
    open: prometheus::IntGauge,
    stop: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = warp::service(routes.clone());
        let body_timeout = limits.body_timeout;
        let handler = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut svc = service.clone();
            let (mut parts, inner) = req.into_parts();
            parts.extensions.insert(PeerAddr(peer));
            let body = DeadlineBody {
                inner,
                deadline: Box::pin(tokio::time::sleep(body_timeout)),
                done: false,
            };
            async move {
                use tower_service::Service;
                svc.call(hyper::Request::from_parts(parts, body)).await
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_header_bytes)
            .serve_connection(TokioIo::new(stream), handler);
        let conn = graceful.watch(conn);
        let open = open.clone();
        tokio::spawn(async move {
            open.inc();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            open.dec();
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
