//! Membership: gossip (chitchat, UDP on the controller listener's address)
//! for discovery and observability, and the broker's heartbeat to the active
//! controller, which is what liveness decisions rest on.
//!
//! Gossip never decides leadership: on two sides of a network partition
//! each thinks the other dead. Only the active controller fences, and only
//! a broker whose heartbeats stopped reaching it — a broker cut off from the
//! controller's majority is fenced, whatever gossip says.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::UdpTransport;
use chitchat::{spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use kafka_protocol::error::ResponseError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::cluster::controller::Controller;
use crate::cluster::records::BrokerRegistration;
use crate::cluster::rpc::{BrokerHeartbeat, RpcConnection, RpcRequest, RpcResponse};
use crate::config::BrokerConfig;
use crate::metrics;

/// Starts gossiping: this node's listener addresses go out as keys.
pub async fn start_gossip(
    config: &BrokerConfig,
    registration: &BrokerRegistration,
) -> anyhow::Result<ChitchatHandle> {
    let listen: SocketAddr = tokio::net::lookup_host(&config.controller_listener)
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("`controller.listener` resolves to nothing"))?;
    let seeds: Vec<String> = config
        .controller_voters()?
        .into_iter()
        .filter(|(id, _)| *id != config.node_id as u64)
        .map(|(_, addr)| addr)
        .collect();
    let chitchat_config = ChitchatConfig {
        chitchat_id: ChitchatId::new(config.node_id.to_string(), registration.incarnation, listen),
        cluster_id: "metrobus".to_owned(),
        gossip_interval: Duration::from_millis(500),
        listen_addr: listen,
        seed_nodes: seeds,
        failure_detector_config: FailureDetectorConfig {
            initial_interval: Duration::from_millis(500),
            dead_node_grace_period: Duration::from_secs(3600),
            ..FailureDetectorConfig::default()
        },
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: chitchat::ProtocolVersion::V0,
    };
    let keys = vec![
        (
            "kafka".to_owned(),
            format!("{}:{}", registration.host, registration.port),
        ),
        ("rpc".to_owned(), registration.rpc_address.clone()),
    ];
    let handle = spawn_chitchat(chitchat_config, keys, &UdpTransport).await?;
    info!(gossip = %listen, "gossip started");
    Ok(handle)
}

/// Publishes gossip's view as metrics until cancelled.
pub async fn gossip_metrics_loop(handle: Arc<ChitchatHandle>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let (alive, dead) = handle
            .with_chitchat(|c| (c.live_nodes().count(), c.dead_nodes().count()))
            .await;
        metrics::GOSSIP_MEMBERS
            .with_label_values(&["alive"])
            .set(alive as i64);
        metrics::GOSSIP_MEMBERS
            .with_label_values(&["dead"])
            .set(dead as i64);
    }
}

/// Sends this broker's heartbeat to the active controller every
/// `broker.heartbeat.interval.ms` until cancelled (and at once again while
/// the controller still has it fenced, so joining is quick).
///
/// Once `started` is set, `ready` (what `/health/ready` answers) follows the
/// heartbeats: false while the controller has this broker fenced or no
/// heartbeat has been answered for `session_timeout` (cut off from the
/// controller's majority), true again once it is unfenced.
pub async fn heartbeat_loop(
    controller: Arc<Controller>,
    registration: BrokerRegistration,
    interval: Duration,
    session_timeout: Duration,
    health: Health,
    shutdown: CancellationToken,
) {
    let mut connection: Option<(i32, RpcConnection)> = None;
    let mut fenced = true;
    let mut last_unfenced = tokio::time::Instant::now();
    loop {
        let heartbeat = BrokerHeartbeat {
            registration: registration.clone(),
            applied_index: controller.image().applied_index,
        };
        let reply = match controller.leader() {
            None => None,
            Some(leader) if leader == registration.id => {
                // Only a controller its majority still follows may answer
                // for itself; an isolated one is as cut off as any broker.
                if controller.confirm_active().await {
                    Some(controller.handle_heartbeat(heartbeat).await)
                } else {
                    None
                }
            }
            Some(leader) => {
                let addr = controller
                    .image()
                    .brokers
                    .get(&leader)
                    .map(|b| b.rpc_address.clone())
                    .or_else(|| controller.voter_address(leader as u64));
                match addr {
                    None => None,
                    Some(addr) => {
                        if connection.as_ref().is_none_or(|(id, _)| *id != leader) {
                            connection = Some((leader, RpcConnection::new(addr)));
                        }
                        let Some((_, conn)) = connection.as_mut() else {
                            continue;
                        };
                        match conn
                            .call(&RpcRequest::Heartbeat(heartbeat), interval * 2)
                            .await
                        {
                            Ok(RpcResponse::Heartbeat(reply)) => Some(reply),
                            Ok(_) => None,
                            Err(e) => {
                                debug!(error = %e, leader, "heartbeat failed");
                                None
                            }
                        }
                    }
                }
            }
        };
        if reply
            .as_ref()
            .is_some_and(|r| r.error_code == 0 && !r.fenced)
        {
            last_unfenced = tokio::time::Instant::now();
        }
        if health.started.load(Ordering::Acquire) {
            // The controller's word is not enough: this node's own image
            // must show it unfenced too, or a node just back from a network
            // partition would call itself ready while its metadata (who
            // leads what) is still the stale view from before.
            let healthy = last_unfenced.elapsed() <= session_timeout
                && !reply
                    .as_ref()
                    .is_some_and(|r| r.error_code == 0 && r.fenced)
                && controller.ready(registration.incarnation);
            if health.ready.swap(healthy, Ordering::AcqRel) != healthy {
                if healthy {
                    info!("ready again: the controller answers and has this broker unfenced");
                } else {
                    warn!("not ready: fenced, or cut off from the active controller");
                }
            }
        }
        if let Some(reply) = &reply {
            if reply.error_code == 0 && reply.fenced != fenced {
                fenced = reply.fenced;
                if fenced {
                    warn!("the controller has this broker fenced");
                } else {
                    info!("the controller unfenced this broker");
                }
            }
        }
        let pause = match &reply {
            Some(r) if r.error_code == 0 && !r.fenced => interval,
            Some(r) if r.error_code == ResponseError::NotController.code() => interval / 5,
            _ => interval / 5,
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// The flags behind `/health/ready`: `started` once startup is done, then
/// `ready` as the heartbeats say.
#[derive(Debug, Clone)]
pub struct Health {
    pub started: Arc<AtomicBool>,
    pub ready: Arc<AtomicBool>,
}

/// A controlled shutdown: asks the active controller to move this broker's
/// leadership away, then waits (bounded) until the image shows it leads
/// nothing. Kafka does the same before a broker stops.
pub async fn controlled_shutdown(controller: &Controller, broker: i32, timeout: Duration) {
    // Bounded as a whole: without a quorum no proposal can commit.
    if tokio::time::timeout(
        timeout,
        try_controlled_shutdown(controller, broker, timeout),
    )
    .await
    .is_err()
    {
        warn!(
            broker,
            "controlled shutdown did not complete in time; stopping anyway"
        );
    }
}

async fn try_controlled_shutdown(controller: &Controller, broker: i32, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let reply = match controller.leader() {
            Some(leader) if leader == broker => {
                Some(controller.handle_controlled_shutdown(broker).await)
            }
            Some(leader) => match controller.voter_address(leader as u64) {
                Some(addr) => {
                    let mut conn = RpcConnection::new(addr);
                    match conn
                        .call(
                            &RpcRequest::ControlledShutdown { broker },
                            Duration::from_secs(5),
                        )
                        .await
                    {
                        Ok(RpcResponse::ControlledShutdown(reply)) => Some(reply),
                        _ => None,
                    }
                }
                None => None,
            },
            None => None,
        };
        if let Some(reply) = reply.filter(|r| r.error_code == 0) {
            controller.wait_applied(reply.applied_index).await;
            info!(broker, "controlled shutdown: leadership moved away");
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            warn!(
                broker,
                "controlled shutdown did not complete in time; stopping anyway"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
