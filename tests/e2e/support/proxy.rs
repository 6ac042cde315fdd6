//! A TCP proxy between the processes under test and PostgreSQL, told what to do on command:
//! pass, delay every chunk, cut (close every connection and refuse new ones, what a
//! restart looks like from outside), or black-hole (accept and hold: nothing is forwarded,
//! nothing is closed, as in a network partition; forwarding resumes when it ends).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Delay(Duration),
    Cut,
    Blackhole,
}

pub struct Proxy {
    pub port: u16,
    mode: watch::Sender<Mode>,
    /// Bumped by each cut: connections of an older generation close.
    generation: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    /// Where connections go: changeable (a restarted database on another port).
    upstream: Arc<Mutex<SocketAddr>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, rx) = watch::channel(Mode::Pass);
        let generation = Arc::new(AtomicU64::new(0));
        let upstream = Arc::new(Mutex::new(upstream));
        let (gen, up) = (generation.clone(), upstream.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let current = *rx.borrow();
                if current == Mode::Cut {
                    drop(client); // refused: closed at once
                    continue;
                }
                let target = *up.lock().unwrap();
                tokio::spawn(serve(client, target, rx.clone(), gen.clone()));
            }
        });
        Self {
            port,
            mode,
            generation,
            task,
            upstream,
        }
    }

    pub fn set(&self, mode: Mode) {
        if mode == Mode::Cut {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        self.mode.send_replace(mode);
    }

    /// `url` (a PostgreSQL URL on the upstream) as seen through the proxy.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme_user, rest) = url.split_once('@').unwrap();
        let (_, path) = rest.split_once('/').unwrap();
        format!("{scheme_user}@127.0.0.1:{}/{path}", self.port)
    }

    pub fn retarget(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap() = upstream;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.set(Mode::Cut);
        self.task.abort();
    }
}

async fn serve(
    client: TcpStream,
    target: SocketAddr,
    mode: watch::Receiver<Mode>,
    gen: Arc<AtomicU64>,
) {
    let born = gen.load(Ordering::Acquire);
    // A black-holed connection is accepted and held: connect upstream only once it ends.
    if !wait_usable(&mut mode.clone(), &gen, born).await {
        return;
    }
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::select! {
        _ = pipe(cr, sw, mode.clone(), gen.clone(), born) => {}
        _ = pipe(sr, cw, mode, gen, born) => {}
    }
}

/// Wait while black-holed; false once the connection has been cut.
async fn wait_usable(mode: &mut watch::Receiver<Mode>, gen: &AtomicU64, born: u64) -> bool {
    loop {
        if gen.load(Ordering::Acquire) != born {
            return false;
        }
        let m = *mode.borrow_and_update();
        match m {
            Mode::Blackhole => {
                let _ = tokio::time::timeout(Duration::from_millis(50), mode.changed()).await;
            }
            Mode::Cut => return false,
            _ => return true,
        }
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    gen: Arc<AtomicU64>,
    born: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !wait_usable(&mut mode, &gen, born).await {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
            _ = mode.changed() => continue,
        };
        // Held, not lost, while black-holed.
        if !wait_usable(&mut mode, &gen, born).await {
            return;
        }
        let current = *mode.borrow();
        if let Mode::Delay(d) = current {
            tokio::time::sleep(d).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
