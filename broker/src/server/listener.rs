//! Accepts Kafka connections. A semaphore bounds open connections at
//! `max.connections`: a connection beyond it is closed at once (Kafka does
//! the same), so a flood of clients costs the broker no memory.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::broker::Broker;
use crate::metrics;
use crate::server::connection;
use crate::server::endpoint::SecurityProtocol;
use tokio_rustls::TlsAcceptor;

/// How a listener's connections are secured.
#[derive(Clone)]
pub struct ListenerSecurity {
    /// The listener's name: answers give the addresses of this listener.
    pub name: Arc<str>,
    pub protocol: SecurityProtocol,
    /// Set for SSL and SASL_SSL.
    pub tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for ListenerSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerSecurity")
            .field("name", &self.name)
            .field("protocol", &self.protocol)
            .finish()
    }
}

/// Runs the accept loop until `shutdown` is cancelled, then waits for the
/// connections to finish (they see the same token).
pub async fn run(
    listener: TcpListener,
    security: ListenerSecurity,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) {
    let security = Arc::new(security);
    // One budget for every listener: `max.connections` is broker-wide.
    let limit = broker.connection_slots.clone();
    let mut connections = JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(5);
                pair
            }
            Err(e) => {
                // Out of file descriptors and similar: back off, don't spin.
                error!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            warn!(%peer, max = broker.config.max_connections, "connection limit reached, closing new connection");
            metrics::CONNECTIONS_TOTAL
                .with_label_values(&["rejected"])
                .inc();
            drop(stream);
            continue;
        };
        metrics::CONNECTIONS_TOTAL
            .with_label_values(&["accepted"])
            .inc();
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, error = %e, "set_nodelay failed");
        }
        let broker = broker.clone();
        let token = shutdown.child_token();
        let security = security.clone();
        let _ = connections.spawn(async move {
            metrics::CONNECTIONS.inc();
            connection::serve(stream, peer, broker, security, token).await;
            metrics::CONNECTIONS.dec();
            drop(permit);
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}
