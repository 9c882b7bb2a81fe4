//! [`Broker`] builds and owns the components; [`start`] brings them up in
//! order and [`RunningBroker::shutdown`] takes them down in reverse:
//!
//! 1. open RocksDB and the log writer, load metadata, host the partitions;
//!    start the group coordinator (it loads `__consumer_offsets` in the
//!    background, answering COORDINATOR_LOAD_IN_PROGRESS until done);
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

use crate::cluster::metadata::{MetadataImage, MetadataStore};
use crate::cluster::topic_record::TopicRecord;
use crate::config::BrokerConfig;
use crate::coordinator::group_coordinator::GroupCoordinator;
use crate::coordinator::producer_id::ProducerIdManager;
use crate::error::{Error, Result};
use crate::log::LogManager;
use crate::replication::ReplicaManager;
use crate::{metrics, server};

/// The components every request handler reaches.
#[derive(Debug)]
pub struct Broker {
    pub config: Arc<BrokerConfig>,
    pub metadata: Arc<MetadataStore>,
    pub replicas: Arc<ReplicaManager>,
    /// Consumer groups and committed offsets.
    pub groups: Arc<GroupCoordinator>,
    /// Producer ids for InitProducerId.
    pub producer_ids: Arc<ProducerIdManager>,
    /// Bytes of requests in flight (`queued.max.request.bytes`), one permit
    /// per byte: the broker's request-memory bound.
    pub request_memory: Arc<tokio::sync::Semaphore>,
    /// Host and port clients are told to connect to.
    pub advertised_host: String,
    pub advertised_port: i32,
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

    pub fn image(&self) -> Arc<MetadataImage> {
        self.metadata.image()
    }

    /// Creates a topic and hosts its partitions.
    pub async fn create_topic(
        &self,
        name: String,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicRecord>> {
        let metadata = self.metadata.clone();
        let replicas = self.replicas.clone();
        blocking(move || {
            let record = metadata.create_topic(&name, partitions, configs)?;
            replicas.reconcile(&metadata.image())?;
            info!(topic = %name, partitions, topic_id = %record.id, "topic created");
            Ok(record)
        })
        .await
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, name: String) -> Result<Arc<TopicRecord>> {
        if !self.config.delete_topic_enable {
            return Err(Error::api_msg(
                ResponseError::TopicDeletionDisabled,
                "topic deletion is disabled (delete.topic.enable=false)",
            ));
        }
        let metadata = self.metadata.clone();
        let replicas = self.replicas.clone();
        let (record, done) = blocking(move || {
            let record = metadata.delete_topic(&name)?;
            let done = replicas.logs().delete_topic(record.id)?;
            replicas.reconcile(&metadata.image())?;
            Ok((record, done))
        })
        .await?;
        done.await
            .map_err(|_| Error::api(ResponseError::KafkaStorageError))??;
        info!(topic = %record.name, topic_id = %record.id, "topic deleted");
        Ok(record)
    }

    /// Changes a topic's record (partitions, configs) and reconciles.
    pub async fn update_topic(
        &self,
        name: String,
        change: impl FnOnce(&mut TopicRecord) -> Result<()> + Send + 'static,
    ) -> Result<Arc<TopicRecord>> {
        let metadata = self.metadata.clone();
        let replicas = self.replicas.clone();
        blocking(move || {
            let record = metadata.update_topic(&name, change)?;
            replicas.reconcile(&metadata.image())?;
            Ok(record)
        })
        .await
    }
}

/// A started broker.
#[derive(Debug)]
pub struct RunningBroker {
    pub broker: Arc<Broker>,
    kafka_addr: SocketAddr,
    http_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    ready: Arc<AtomicBool>,
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

/// Opens storage, binds the listeners and starts serving.
pub async fn start(config: BrokerConfig) -> anyhow::Result<RunningBroker> {
    config.validate()?;
    metrics::init();
    let config = Arc::new(config);
    let data_dir = config.log_dirs.clone();
    let flush = config.log_flush_policy;
    let static_config = config.clone();
    let (logs, metadata, producer_ids) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let logs = Arc::new(LogManager::open(&data_dir, flush)?);
            let metadata = Arc::new(MetadataStore::load(logs.db().clone(), static_config)?);
            let producer_ids = Arc::new(ProducerIdManager::load(logs.db().clone())?);
            Ok((logs, metadata, producer_ids))
        })
        .await??;
    let replicas = Arc::new(ReplicaManager::new(logs.clone(), config.clone()));
    let image = metadata.image();
    let reconcile_replicas = replicas.clone();
    tokio::task::spawn_blocking(move || reconcile_replicas.reconcile(&image)).await??;

    let kafka_listener = TcpListener::bind(&config.listeners)
        .await
        .with_context(|| format!("binding the Kafka listener {}", config.listeners))?;
    let http_listener = TcpListener::bind(&config.http_listener)
        .await
        .with_context(|| format!("binding the HTTP listener {}", config.http_listener))?;
    let kafka_addr = kafka_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    let (mut host, mut port) = split_host_port(&config.advertised_listener())?;
    if config.advertised_listeners.is_none() {
        // Port 0 (tests) or a wildcard host: advertise what was really bound.
        port = i32::from(kafka_addr.port());
        if kafka_addr.ip().is_unspecified() {
            host = "127.0.0.1".to_owned();
        }
    }
    let shutdown = CancellationToken::new();
    let groups = GroupCoordinator::new(
        config.clone(),
        metadata.clone(),
        replicas.clone(),
        shutdown.clone(),
    );
    groups.start();
    let broker = Arc::new(Broker {
        config: config.clone(),
        metadata: metadata.clone(),
        replicas: replicas.clone(),
        groups,
        producer_ids,
        request_memory: Arc::new(tokio::sync::Semaphore::new(
            config.queued_max_request_bytes as usize,
        )),
        advertised_host: host,
        advertised_port: port,
    });
    let ready = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    let _ = tasks.spawn(server::listener::run(
        kafka_listener,
        broker.clone(),
        shutdown.clone(),
    ));
    let _ = tasks.spawn(metrics::serve_http(
        http_listener,
        ready.clone(),
        shutdown.clone(),
    ));
    let image_source = metadata.clone();
    let _ = tasks.spawn(replicas.retention_loop(move || image_source.image(), shutdown.clone()));
    ready.store(true, Ordering::Release);
    info!(kafka = %kafka_addr, http = %http_addr, data = %config.log_dirs.display(),
        flush = %config.log_flush_policy, cluster_id = %metadata.image().cluster_id, "broker started");
    Ok(RunningBroker {
        broker,
        kafka_addr,
        http_addr,
        shutdown,
        tasks,
        ready,
    })
}

impl RunningBroker {
    pub fn kafka_addr(&self) -> SocketAddr {
        self.kafka_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Stops in order; see the module doc.
    pub async fn shutdown(mut self) {
        info!("broker shutting down");
        self.ready.store(false, Ordering::Release);
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
        let logs = self.broker.replicas.logs().clone();
        let _ = tokio::task::spawn_blocking(move || logs.shutdown()).await;
        info!("broker stopped");
    }
}
