//! The HTTP/1.1 server loop, with the bounds a server on the internet needs (contract §10):
//! a cap on concurrent connections, in all and per client address (one over it is closed at
//! once), a deadline for a request's headers (which also ends a keep-alive connection left
//! idle that long), a deadline for its body and for a stalled response (a client that does
//! not read), and a cap on the size of its headers. warp 0.4's own server sets
//! none of these, so the routes run as a `warp::service` under hyper's connection builder.

use crate::http::caller::{self, ClientAddr};
use crate::http::tls::{CertPolicy, PeerCert};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use warp::filters::BoxedFilter;
use warp::reply::Response;

/// What bounds each connection.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// Connections one client address may hold (trusted proxies excepted).
    pub max_connections_per_address: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_header_bytes: usize,
    /// Peers whose `X-Forwarded-For` names the client (contract §10).
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
}

/// Has the timer in `slot` run out? It is armed (for `at()`) the first time it is asked,
/// which is when the caller is about to wait: a request or a write that never waits costs
/// no timer.
fn expired(
    slot: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    cx: &mut Context<'_>,
    at: impl FnOnce() -> tokio::time::Instant,
) -> bool {
    slot.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at())))
        .as_mut()
        .poll(cx)
        .is_ready()
}

/// A request body that fails once its deadline passes before its last byte arrived.
pub struct DeadlineBody {
    inner: Incoming,
    deadline: tokio::time::Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
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
            Poll::Pending if !this.done && expired(&mut this.timer, cx, || this.deadline) => {
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

/// A connection whose writes make no progress for `timeout` fails: a client that asks for a
/// response and never reads it cannot hold its connection slot (hyper's header timer does not
/// run while a response is being written).
struct WriteDeadline<T> {
    io: T,
    timeout: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteDeadline<T> {
    fn new(io: T, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            stalled: None,
        }
    }

    /// After a write attempt: disarm on progress, else arm (once) and check the deadline.
    fn check<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.timeout;
        if expired(&mut self.stalled, cx, || {
            tokio::time::Instant::now() + timeout
        }) {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            )));
        }
        Poll::Pending
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.check(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.check(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.check(cx, polled)
    }
}

/// Open connections per client address, capped (trusted proxies are not counted: every
/// client behind them shares their address).
#[derive(Default)]
struct PerAddress(std::sync::Mutex<HashMap<IpAddr, usize>>);

impl PerAddress {
    fn enter(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot(self.clone(), ip))
    }
}

struct AddressSlot(Arc<PerAddress>, IpAddr);

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

/// How connections arrive: plain TCP or TLS, and where client certificates come from.
#[derive(Clone)]
pub struct Transport {
    /// TLS terminated here (contract §11); `None`: plain HTTP.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub certs: Arc<CertPolicy>,
    /// The header in which a trusted proxy passes the client's certificate.
    pub cert_header: Option<hyper::header::HeaderName>,
}

impl Transport {
    pub fn plain() -> Self {
        Self {
            tls: None,
            certs: Arc::new(CertPolicy::none()),
            cert_header: None,
        }
    }
}

/// Serve `routes` on `listener` until `stop` resolves; then stop accepting and wait for the
/// open connections to finish their requests (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    limits: Limits,
    transport: Transport,
    refused: prometheus::IntCounter,
    open: prometheus::IntGauge,
    stop: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = Arc::new(PerAddress::default());
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    let limits = Arc::new(limits);
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
        let peer_ip = peer.ip();
        let address_slot = if caller::trusted(peer_ip, &limits.trusted_proxies) {
            None
        } else {
            match per_address.enter(peer_ip, limits.max_connections_per_address) {
                Some(s) => Some(s),
                None => {
                    refused.inc();
                    drop(stream);
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            routes: routes.clone(),
            limits: limits.clone(),
            transport: transport.clone(),
            peer: peer.ip(),
        };
        let watcher = graceful.watcher();
        let open = open.clone();
        tokio::spawn(async move {
            open.inc();
            conn.run(stream, watcher).await;
            open.dec();
            drop(slot);
            drop(address_slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// One accepted connection.
struct Connection {
    routes: BoxedFilter<(Response,)>,
    limits: Arc<Limits>,
    transport: Transport,
    peer: IpAddr,
}

impl Connection {
    async fn run(self, stream: tokio::net::TcpStream, watcher: Watcher) {
        let Some(acceptor) = self.transport.tls.clone() else {
            return self.http(TokioIo::new(stream), None, watcher).await;
        };
        // The handshake has the header deadline: a client that stalls in it holds nothing.
        let handshake = tokio::time::timeout(self.limits.header_timeout, acceptor.accept(stream));
        match handshake.await {
            Ok(Ok(tls)) => {
                let cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| self.transport.certs.inspect(chain))
                    .map(|c| PeerCert(Arc::new(c)));
                self.http(TokioIo::new(tls), cert, watcher).await;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        }
    }

    async fn http<I>(self, io: I, tls_cert: Option<PeerCert>, watcher: Watcher)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let service = warp::service(self.routes);
        let body_timeout = self.limits.body_timeout;
        let limits = self.limits.clone();
        let (peer, transport) = (self.peer, self.transport);
        let handler = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut svc = service.clone();
            let (mut parts, inner) = req.into_parts();
            let client = caller::of_request(peer, &parts.headers, &limits.trusted_proxies);
            parts.extensions.insert(ClientAddr(client));
            let cert = tls_cert.clone().or_else(|| {
                proxied_cert(&transport, peer, &parts.headers, &limits.trusted_proxies)
            });
            if let Some(cert) = cert {
                parts.extensions.insert(cert);
            }
            let body = DeadlineBody {
                inner,
                deadline: tokio::time::Instant::now() + body_timeout,
                timer: None,
                done: false,
            };
            async move {
                use tower_service::Service;
                svc.call(hyper::Request::from_parts(parts, body)).await
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .max_buf_size(self.limits.max_header_bytes)
            .serve_connection(WriteDeadline::new(io, self.limits.body_timeout), handler);
        if let Err(e) = watcher.watch(conn).await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }
}

/// The certificate a trusted proxy passed in the configured header; from any other peer the
/// header means nothing.
fn proxied_cert(
    transport: &Transport,
    peer: IpAddr,
    headers: &hyper::HeaderMap,
    proxies: &[ipnet::IpNet],
) -> Option<PeerCert> {
    let name = transport.cert_header.as_ref()?;
    if !caller::trusted(peer, proxies) {
        return None;
    }
    // One value only: a proxy that appends rather than replaces would leave the client's own
    // first.
    let mut values = headers.get_all(name).iter();
    let value = values.next()?.to_str().ok()?;
    if values.next().is_some() {
        return None;
    }
    let cert = transport.certs.from_header(value)?;
    Some(PeerCert(Arc::new(cert)))
}
