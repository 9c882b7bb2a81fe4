//! [`Broker`] builds and owns the components; [`start`] brings them up in
//! order and [`RunningBroker::shutdown`] takes them down in reverse:
//!
//! 1. open RocksDB and the log writer, load metadata, host the partitions;
//!    start the group and transaction coordinators (they load
//!    `__consumer_offsets` and `__transaction_state` in the background,
//!    answering COORDINATOR_LOAD_IN_PROGRESS until done);
//! 2. bind the Kafka and HTTP listeners, start retention; mark ready.
//!
//! Shutdown: stop accepting, let connections finish what they have in flight
//! (up to `shutdown.timeout.ms`, then abort), then let the writer commit its
//! queue and close the database.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kafka_protocol::error::ResponseError;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cluster::controller::Controller;
use crate::cluster::membership;
use crate::cluster::metadata::MetadataImage;
use crate::cluster::records::{BrokerRegistration, Endpoint};
use crate::cluster::store::MetadataStore;
use crate::cluster::topic_record::TopicRecord;
use crate::config::BrokerConfig;
use crate::coordinator::group_coordinator::{GroupCoordinator, GroupTxnCompletion};
use crate::coordinator::producer_id::ProducerIdManager;
use crate::coordinator::transaction_coordinator::TransactionCoordinator;
use crate::error::{Error, Result};
use crate::log::reclaim::BlobGcPolicy;
use crate::log::LogManager;
use crate::replication::ReplicaManager;
use crate::{metrics, server};

/// How long a starting node waits to join its cluster.
const JOIN_TIMEOUT: Duration = Duration::from_secs(300);

/// The components every request handler reaches.
#[derive(Debug)]
pub struct Broker {
    pub config: Arc<BrokerConfig>,
    pub metadata: Arc<MetadataStore>,
    pub replicas: Arc<ReplicaManager>,
    /// Consumer groups and committed offsets.
    pub groups: Arc<GroupCoordinator>,
    /// Transactional ids and their transactions.
    pub txns: Arc<TransactionCoordinator>,
    /// Producer ids for InitProducerId.
    pub producer_ids: Arc<ProducerIdManager>,
    /// Bytes of requests in flight (`queued.max.request.bytes`), one permit
    /// per byte: the broker's request-memory bound.
    pub request_memory: Arc<tokio::sync::Semaphore>,
    /// This node's advertised addresses, one per listener.
    pub endpoints: Vec<Endpoint>,
    /// Open Kafka connections, across listeners (`max.connections`).
    pub connection_slots: Arc<tokio::sync::Semaphore>,
    /// Client quotas' rates and throttle times.
    pub quotas: Arc<crate::tenant::quota::ClientQuotaManager>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
}

impl Broker {
    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// This node's address on listener `name` (the first listener's if it
    /// has none of that name).
    pub fn advertised_address(&self, listener: &str) -> (String, i32) {
        self.endpoints
            .iter()
            .find(|e| e.listener == listener)
            .or(self.endpoints.first())
            .map(|e| (e.host.clone(), e.port))
            .unwrap_or_default()
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.metadata.image()
    }

    pub fn controller(&self) -> &Arc<Controller> {
        self.metadata.controller()
    }

    /// Hosts what the current image assigns here, now (the background
    /// reconciliation would too, a moment later). Returns pending deletions.
    async fn reconcile_now(&self) -> Result<Vec<tokio::sync::oneshot::Receiver<Result<()>>>> {
        let replicas = self.replicas.clone();
        let image = self.image();
        blocking(move || replicas.reconcile(&image)).await
    }

    /// Creates a topic (through the controller) and hosts its partitions.
    pub async fn create_topic(
        &self,
        name: String,
        partitions: i32,
        replication_factor: i16,
        assignments: Option<Vec<Vec<i32>>>,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicRecord>> {
        let record = self
            .metadata
            .create_topic(&name, partitions, replication_factor, assignments, configs)
            .await?;
        let _ = self.reconcile_now().await?;
        info!(topic = %name, partitions = record.partitions, replication_factor,
            topic_id = %record.id, "topic created");
        Ok(record)
    }

    /// Deletes a topic; this node's data is gone when this returns.
    pub async fn delete_topic(&self, name: String) -> Result<Arc<TopicRecord>> {
        if !self.config.delete_topic_enable {
            return Err(Error::api_msg(
                ResponseError::TopicDeletionDisabled,
                "topic deletion is disabled (delete.topic.enable=false)",
            ));
        }
        let record = self.metadata.delete_topic(&name).await?;
        for done in self.reconcile_now().await? {
            done.await
                .map_err(|_| Error::api(ResponseError::KafkaStorageError))??;
        }
        info!(topic = %record.name, topic_id = %record.id, "topic deleted");
        Ok(record)
    }

    /// Changes a topic's record (partitions, configs) and reconciles.
    pub async fn update_topic(
        &self,
        name: String,
        change: impl FnOnce(&mut TopicRecord) -> Result<()> + Send + 'static,
    ) -> Result<Arc<TopicRecord>> {
        let record = self.metadata.update_topic(&name, change).await?;
        let _ = self.reconcile_now().await?;
        Ok(record)
    }
}

/// Re-hosts partitions whenever the metadata image changes.
async fn reconcile_loop(
    replicas: Arc<ReplicaManager>,
    controller: Arc<Controller>,
    shutdown: CancellationToken,
) {
    let mut images = controller.subscribe();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = images.changed() => if changed.is_err() { return },
        }
        let image = images.borrow_and_update().clone();
        let rm = replicas.clone();
        match tokio::task::spawn_blocking(move || rm.reconcile(&image)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "reconciling partitions with the metadata failed"),
            Err(e) => warn!(error = %e, "reconcile task failed"),
        }
    }
}

/// A started broker.
#[derive(Debug)]
pub struct RunningBroker {
    pub broker: Arc<Broker>,
    kafka_addr: SocketAddr,
    /// Every Kafka listener's bound address, by listener name.
    listener_addrs: Vec<(String, SocketAddr)>,
    http_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    ready: Arc<AtomicBool>,
    /// Set once started; cleared first at shutdown so the heartbeats stop
    /// driving readiness.
    started: Arc<AtomicBool>,
    gossip: Option<Gossip>,
}

/// The gossip handle (chitchat's has no `Debug`).
struct Gossip(Arc<chitchat::ChitchatHandle>);

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Gossip")
            .field(&self.0.chitchat_id())
            .finish()
    }
}

fn split_host_port(addr: &str) -> anyhow::Result<(String, i32)> {
    let (host, port) = addr
        .rsplit_once(':')
        .with_context(|| format!("`{addr}` is not HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("bad port in `{addr}`"))?;
    Ok((host.trim_matches(['[', ']']).to_owned(), i32::from(port)))
}

/// Opens storage, starts the controller, binds the listeners, joins the
/// cluster and starts serving.
pub async fn start(mut config: BrokerConfig) -> anyhow::Result<RunningBroker> {
    config.resolve_mode_defaults();
    config.validate()?;
    metrics::init();
    let config = Arc::new(config);
    let shutdown = CancellationToken::new();
    let data_dir = config.log_dirs.clone();
    let flush = config.log_flush_policy;
    let blob_gc = BlobGcPolicy {
        garbage_ratio: config.log_blob_gc_garbage_ratio,
        min_garbage_bytes: config.log_blob_gc_min_garbage_bytes,
    };
    let logs =
        tokio::task::spawn_blocking(move || LogManager::open(&data_dir, flush, blob_gc)).await??;
    let logs = Arc::new(logs);
    // The RPC listener first: peers reach this node's Raft through it.
    let rpc_listener = if config.is_cluster() {
        Some(
            TcpListener::bind(&config.controller_listener)
                .await
                .with_context(|| {
                    format!(
                        "binding the controller listener {}",
                        config.controller_listener
                    )
                })?,
        )
    } else {
        None
    };
    let controller = Controller::start(config.clone(), logs.db().clone()).await?;
    let metadata = Arc::new(MetadataStore::new(controller.clone(), config.clone()));
    let producer_ids = Arc::new(ProducerIdManager::new(metadata.clone()));
    let replicas = Arc::new(ReplicaManager::new(
        logs.clone(),
        config.clone(),
        shutdown.clone(),
    ));
    replicas.set_controller(controller.clone());

    let specs = config.listener_specs()?;
    let advertised = config.advertised_specs()?;
    let mut kafka_listeners = Vec::with_capacity(specs.len());
    let mut endpoints = Vec::with_capacity(specs.len());
    for (spec, advertised) in specs.into_iter().zip(advertised) {
        let listener = TcpListener::bind(&spec.address)
            .await
            .with_context(|| format!("binding the Kafka listener {}", spec.to_kafka_string()))?;
        let bound = listener.local_addr()?;
        let (mut host, mut port) = split_host_port(&advertised.address)?;
        if advertised.address == spec.address {
            // Port 0 (tests) or a wildcard host, not advertised otherwise:
            // advertise what was really bound.
            port = i32::from(bound.port());
            if bound.ip().is_unspecified() {
                host = "127.0.0.1".to_owned();
            }
        }
        let tls = if spec.protocol.uses_tls() {
            let keystore = config
                .ssl_keystore_location
                .as_deref()
                .context("`ssl.keystore.location` is required by TLS listeners")?;
            Some(server::tls::acceptor(keystore)?)
        } else {
            None
        };
        endpoints.push(Endpoint {
            listener: spec.name.clone(),
            host,
            port,
        });
        kafka_listeners.push((listener, bound, spec, tls));
    }
    let kafka_addr = kafka_listeners[0].1;
    let listener_addrs: Vec<(String, SocketAddr)> = kafka_listeners
        .iter()
        .map(|(_, bound, spec, _)| (spec.name.clone(), *bound))
        .collect();
    let http_listener = TcpListener::bind(&config.http_listener)
        .await
        .with_context(|| format!("binding the HTTP listener {}", config.http_listener))?;
    let http_addr = http_listener.local_addr()?;
    let registration = BrokerRegistration {
        id: config.node_id,
        host: endpoints[0].host.clone(),
        port: endpoints[0].port,
        rpc_address: config.controller_listener.clone(),
        endpoints: endpoints.clone(),
        incarnation: uuid::Uuid::new_v4().as_u64_pair().0,
        fenced: false,
        shutting_down: false,
    };
    let incarnation = registration.incarnation;
    let ready = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    let _ = tasks.spawn(metrics::serve_http(
        http_listener,
        ready.clone(),
        shutdown.clone(),
    ));
    if let Some(listener) = rpc_listener {
        let _ = tasks.spawn(crate::cluster::rpc::serve(
            listener,
            controller.clone(),
            replicas.clone(),
            shutdown.clone(),
        ));
    }
    let gossip = if config.is_cluster() {
        let handle = Arc::new(membership::start_gossip(&config, &registration).await?);
        let _ = tasks.spawn(membership::gossip_metrics_loop(
            handle.clone(),
            shutdown.clone(),
        ));
        Some(Gossip(handle))
    } else {
        None
    };
    let started = Arc::new(AtomicBool::new(false));
    let _ = tasks.spawn(membership::heartbeat_loop(
        controller.clone(),
        registration,
        Duration::from_millis(config.broker_heartbeat_interval_ms),
        Duration::from_millis(config.broker_session_timeout_ms),
        membership::Health {
            started: started.clone(),
            ready: ready.clone(),
        },
        shutdown.clone(),
    ));
    let _ = tasks.spawn(controller.clone().run_active_duties(shutdown.clone()));
    let _ = tasks.spawn(reconcile_loop(
        replicas.clone(),
        controller.clone(),
        shutdown.clone(),
    ));
    let _ = tasks.spawn(replicas.clone().isr_maintenance_loop());
    let _ = tasks.spawn(replicas.clone().high_watermark_checkpoint_loop());

    // Join: a leader elected, this broker registered and unfenced.
    let mut images = controller.subscribe();
    let joined = tokio::time::timeout(JOIN_TIMEOUT, async {
        loop {
            if controller.ready(incarnation) {
                return;
            }
            if images.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    if joined.is_err() || !controller.ready(incarnation) {
        shutdown.cancel();
        anyhow::bail!(
            "did not join the cluster within {}s (is a majority of `controller.quorum.voters` up?)",
            JOIN_TIMEOUT.as_secs()
        );
    }
    let image = controller.image();
    let reconcile_replicas = replicas.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let _ = reconcile_replicas.delete_strays(&image)?;
        reconcile_replicas.reconcile(&image)
    })
    .await??;

    let groups = GroupCoordinator::new(
        config.clone(),
        metadata.clone(),
        replicas.clone(),
        shutdown.clone(),
    );
    // Load the groups this node coordinates before taking requests, so
    // clients do not start with COORDINATOR_LOAD_IN_PROGRESS.
    groups.sync_leadership(&controller.image()).await;
    groups.start();
    replicas.set_txn_completion(Arc::new(GroupTxnCompletion(Arc::downgrade(&groups))));
    let txns = TransactionCoordinator::new(
        config.clone(),
        metadata.clone(),
        replicas.clone(),
        producer_ids.clone(),
        shutdown.clone(),
    );
    txns.sync_leadership(&controller.image()).await;
    txns.start();
    let broker = Arc::new(Broker {
        config: config.clone(),
        metadata: metadata.clone(),
        replicas: replicas.clone(),
        groups,
        txns,
        producer_ids,
        request_memory: Arc::new(tokio::sync::Semaphore::new(
            config.queued_max_request_bytes as usize,
        )),
        endpoints,
        connection_slots: Arc::new(tokio::sync::Semaphore::new(config.max_connections)),
        quotas: Arc::new(crate::tenant::quota::ClientQuotaManager::new(
            crate::tenant::quota::QuotaConfig {
                samples: config.quota_window_num,
                window_ms: config.quota_window_size_seconds * 1000,
            },
        )),
    });
    for (listener, _, spec, tls) in kafka_listeners {
        let _ = tasks.spawn(server::listener::run(
            listener,
            server::listener::ListenerSecurity {
                name: spec.name.as_str().into(),
                protocol: spec.protocol,
                tls,
            },
            broker.clone(),
            shutdown.clone(),
        ));
    }
    let image_source = metadata.clone();
    let _ = tasks.spawn(replicas.retention_loop(move || image_source.image(), shutdown.clone()));
    ready.store(true, Ordering::Release);
    started.store(true, Ordering::Release);
    info!(kafka = %kafka_addr, http = %http_addr, data = %config.log_dirs.display(),
        flush = %config.log_flush_policy, cluster_id = %metadata.image().cluster_id,
        node_id = config.node_id, voters = controller_voters_len(&config), "broker started");
    Ok(RunningBroker {
        broker,
        kafka_addr,
        listener_addrs,
        http_addr,
        shutdown,
        tasks,
        ready,
        started,
        gossip,
    })
}

fn controller_voters_len(config: &BrokerConfig) -> usize {
    config.controller_voters().map(|v| v.len()).unwrap_or(0)
}

impl RunningBroker {
    /// The first listener's bound address.
    pub fn kafka_addr(&self) -> SocketAddr {
        self.kafka_addr
    }

    /// Every Kafka listener's bound address, by name.
    pub fn listener_addrs(&self) -> &[(String, SocketAddr)] {
        &self.listener_addrs
    }

    /// The bound address of listener `name`.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listener_addrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, addr)| *addr)
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Stops in order; see the module doc.
    pub async fn shutdown(mut self) {
        info!("broker shutting down");
        self.started.store(false, Ordering::Release);
        self.ready.store(false, Ordering::Release);
        if self.broker.config.is_cluster() {
            // Kafka's controlled shutdown: hand leadership over first, so
            // clients move on without losing acknowledged writes.
            let timeout = Duration::from_millis(self.broker.config.shutdown_timeout_ms);
            membership::controlled_shutdown(
                self.broker.controller(),
                self.broker.node_id(),
                timeout,
            )
            .await;
        }
        self.shutdown.cancel();
        let timeout = Duration::from_millis(self.broker.config.shutdown_timeout_ms);
        let drained = tokio::time::timeout(timeout, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                timeout_ms = timeout.as_millis() as u64,
                "connections did not finish in time, aborting them"
            );
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        self.broker.groups.shutdown().await;
        self.broker.txns.shutdown().await;
        self.broker.replicas.stop_fetchers();
        if let Some(Gossip(gossip)) = self.gossip.take() {
            if let Ok(handle) = Arc::try_unwrap(gossip) {
                let _ = handle.shutdown().await;
            }
        }
        let _ = self.broker.controller().raft().shutdown().await;
        // Queued ahead of the writer's shutdown, so committed with it.
        self.broker
            .replicas
            .checkpoint_high_watermarks(&mut Default::default());
        let logs = self.broker.replicas.logs().clone();
        let _ = tokio::task::spawn_blocking(move || logs.shutdown()).await;
        info!("broker stopped");
    }
}
