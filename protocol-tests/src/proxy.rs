//! A TCP proxy for fault injection: clients connect to it (the broker
//! advertises the proxy's address, so they never bypass it) and it forwards
//! each connection to the broker. It can cut every connection after every
//! Nth produce request, in the worst place for a producer: the request has
//! reached the broker, its response never reaches the client. The broker
//! address can change (a restarted broker gets a new port) while clients
//! keep the proxy's.
//!
//! A cut: after forwarding the Nth produce request the proxy stops passing
//! anything back to clients (connections that receive broker bytes during
//! the hold are closed and the bytes discarded), waits [`CUT_HOLD`] so the
//! broker reads and appends the request, then closes every connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a cut holds responses back before closing the connections.
pub const CUT_HOLD: Duration = Duration::from_millis(50);
/// Largest request frame the proxy forwards (the broker's default limit).
const MAX_FRAME: usize = 100 * 1024 * 1024;
const PRODUCE_API_KEY: i16 = 0;

#[derive(Debug)]
struct Shared {
    upstream: Mutex<Option<SocketAddr>>,
    /// Cut every connection after this many produce requests (0: never).
    cut_every: u64,
    produce_requests: AtomicU64,
    /// While set, bytes from the broker are not passed on.
    holding: AtomicBool,
    /// Bumped by each cut; every connection ends when it changes.
    cuts: watch::Sender<u64>,
    connections: AtomicU64,
}

/// A running proxy; stops (closing every connection) when dropped.
#[derive(Debug)]
pub struct CuttingProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl CuttingProxy {
    /// Listens on a loopback port. `upstream` may be set later; until then
    /// connections are closed at once. `cut_every` produce requests (0:
    /// never) every connection is cut.
    pub async fn start(upstream: Option<SocketAddr>, cut_every: u64) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the proxy")?;
        let addr = listener.local_addr()?;
        let (cuts, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            cut_every,
            produce_requests: AtomicU64::new(0),
            holding: AtomicBool::new(false),
            cuts,
            connections: AtomicU64::new(0),
        });
        let accept_task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(CuttingProxy {
            addr,
            shared,
            accept_task,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Points new connections at another broker address.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self
            .shared
            .upstream
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(upstream);
    }

    /// How many times every connection was cut.
    pub fn cuts(&self) -> u64 {
        *self.shared.cuts.borrow()
    }

    /// Produce requests forwarded so far.
    pub fn produce_requests(&self) -> u64 {
        self.shared.produce_requests.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Closes every open connection now (clients reconnect).
    pub fn cut_all(&self) {
        self.shared.cuts.send_modify(|n| *n += 1);
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.cut_all();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = shared.connections.fetch_add(1, Ordering::Relaxed);
        let _task = tokio::spawn(serve(client, shared.clone()));
    }
}

async fn serve(client: TcpStream, shared: Arc<Shared>) {
    let mut cut = shared.cuts.subscribe();
    let upstream = *shared.upstream.lock().unwrap_or_else(|p| p.into_inner());
    let Some(upstream) = upstream else { return };
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Whichever direction ends first, or a cut, closes both sockets.
    tokio::select! {
        _ = forward_requests(client_read, server_write, shared.clone()) => {}
        _ = forward_responses(server_read, client_write, &shared) => {}
        _ = cut.changed() => {}
    }
}

/// Forwards whole request frames to the broker, counting produce requests
/// and starting a cut after every `cut_every`th.
async fn forward_requests(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let mut frame = Vec::new();
    loop {
        let length = from.read_i32().await?;
        let length = usize::try_from(length)
            .ok()
            .filter(|&l| l <= MAX_FRAME)
            .ok_or_else(|| std::io::Error::other("bad request frame length"))?;
        frame.clear();
        frame.extend_from_slice(&(length as i32).to_be_bytes());
        frame.resize(4 + length, 0);
        let _ = from.read_exact(&mut frame[4..]).await?;
        to.write_all(&frame).await?;
        let api_key = frame
            .get(4..6)
            .map(|k| i16::from_be_bytes([k[0], k[1]]))
            .unwrap_or(-1);
        if api_key != PRODUCE_API_KEY {
            continue;
        }
        let n = shared.produce_requests.fetch_add(1, Ordering::Relaxed) + 1;
        let cut_now = shared.cut_every > 0 && n.is_multiple_of(shared.cut_every);
        if cut_now
            && shared
                .holding
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // On its own task: this connection may end during the hold (a
            // response arrived), which must not cancel the cut.
            let _cut = tokio::spawn(cut_after_hold(shared.clone()));
            // Forward nothing more; the cut ends this connection.
            std::future::pending::<()>().await;
        }
    }
}

async fn cut_after_hold(shared: Arc<Shared>) {
    tokio::time::sleep(CUT_HOLD).await;
    shared.cuts.send_modify(|n| *n += 1);
    shared.holding.store(false, Ordering::Release);
}

/// Passes the broker's bytes back to the client, except during a cut's
/// hold, when the connection ends and the bytes are dropped.
async fn forward_responses(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: &Shared,
) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buffer).await?;
        if n == 0 || shared.holding.load(Ordering::Acquire) {
            return Ok(());
        }
        to.write_all(&buffer[..n]).await?;
    }
}
