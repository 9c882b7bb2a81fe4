//! [`ReplicaManager`]: one call per request, fanned out per partition.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use tokio_util::sync::CancellationToken;

use crate::cluster::controller::Controller;
use crate::cluster::metadata::MetadataImage;
use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::log::partition::PartitionLog;
use crate::log::retention::{self, RetentionPolicy};
use crate::log::topic_config::TopicConfig;
use crate::log::writer::{AppendJob, AppendOrigin, AppendResult, TruncateFront};
use crate::log::{now_ms, reader, LogManager};
use crate::replication::follower::ReplicaFetchers;
use crate::replication::partition::Role;

/// ListOffsets special timestamps.
pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;
pub const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
pub const LATEST_TIERED_TIMESTAMP: i64 = -5;

/// One partition's share of a produce request, already authorised and
/// resolved to a hosted log.
#[derive(Debug)]
pub struct AppendRequest {
    pub partition: Arc<PartitionLog>,
    pub records: Bytes,
    pub max_message_bytes: i32,
    pub origin: AppendOrigin,
}

/// The answer to a ListOffsets lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetAndTimestamp {
    pub offset: i64,
    pub timestamp: i64,
    pub leader_epoch: i32,
}

/// Owns the hosted partitions' read and write paths.
#[derive(Debug)]
pub struct ReplicaManager {
    pub(crate) logs: Arc<LogManager>,
    pub(crate) config: Arc<BrokerConfig>,
    pub(crate) node_id: i32,
    /// Set once the controller is up; ISR changes and leader addresses
    /// come from it.
    controller: OnceLock<Arc<Controller>>,
    pub(crate) fetchers: ReplicaFetchers,
    pub(crate) shutdown: CancellationToken,
    /// The group coordinator's hook, told when a marker lands in an
    /// offsets partition (it holds the coordinator weakly: the coordinator
    /// holds this manager).
    pub(crate) txn_completion: OnceLock<Arc<dyn super::txn_markers::TxnCompletion>>,
}

fn storage_gone() -> Error {
    Error::api_msg(
        ResponseError::KafkaStorageError,
        "log writer dropped the request",
    )
}

impl ReplicaManager {
    pub fn new(
        logs: Arc<LogManager>,
        config: Arc<BrokerConfig>,
        shutdown: CancellationToken,
    ) -> Self {
        ReplicaManager {
            node_id: config.node_id,
            logs,
            config,
            controller: OnceLock::new(),
            fetchers: ReplicaFetchers::default(),
            shutdown,
            txn_completion: OnceLock::new(),
        }
    }

    /// Connects the controller (once, at startup).
    pub fn set_controller(&self, controller: Arc<Controller>) {
        let _ = self.controller.set(controller);
    }

    pub(crate) fn controller(&self) -> Option<&Arc<Controller>> {
        self.controller.get()
    }

    /// A broker's RPC address, from the metadata image.
    pub(crate) fn broker_rpc_address(&self, id: i32) -> Option<String> {
        self.controller()?
            .image()
            .brokers
            .get(&id)
            .map(|b| b.rpc_address.clone())
    }

    /// Stops the replica fetchers.
    pub fn stop_fetchers(&self) {
        self.fetchers.shutdown();
    }

    pub fn logs(&self) -> &Arc<LogManager> {
        &self.logs
    }

    /// Deletes the stored partitions this node no longer hosts: those of
    /// topics deleted, and replicas moved away, while it was down (a running
    /// node deletes them in [`Self::reconcile`]; Kafka calls them stray
    /// partitions). Call once at startup with an image at least as new as
    /// the one the node last ran with: the metadata log is durable, so a
    /// partition written here is in that image's assignment unless it was
    /// since moved or deleted. Blocking; returns how many were deleted.
    pub fn delete_strays(&self, image: &MetadataImage) -> Result<usize> {
        let stored = reader::stored_partitions(self.logs.db())?;
        let mut deleted = 0;
        for (topic_id, partition) in stored {
            let hosted = image.topic_by_id(&topic_id).is_some_and(|_| {
                image
                    .partitions(&topic_id)
                    .get(partition as usize)
                    .is_some_and(|r| r.replicas.contains(&self.node_id))
            });
            if hosted {
                continue;
            }
            info!(%topic_id, partition,
                "stray partition, deleted or moved away while this node was down: deleting the local copy");
            self.logs.delete_partition(topic_id, partition)?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Brings the hosted partitions in line with the image: deletes the
    /// data of topics gone from it, hosts every partition assigned here,
    /// and makes this node leader or follower of each as the image says
    /// (starting or stopping replica fetchers). Blocking; returns the
    /// deletions still being committed.
    pub fn reconcile(
        self: &Arc<Self>,
        image: &MetadataImage,
    ) -> Result<Vec<oneshot::Receiver<Result<()>>>> {
        let mut deletions = Vec::new();
        let mut gone: Vec<uuid::Uuid> = self
            .logs
            .all()
            .iter()
            .map(|log| log.topic_id)
            .filter(|id| image.topic_by_id(id).is_none())
            .collect();
        gone.sort_unstable();
        gone.dedup();
        for topic_id in gone {
            for log in self.logs.all().iter().filter(|l| l.topic_id == topic_id) {
                self.fetchers.unfollow(log);
            }
            deletions.push(self.logs.delete_topic(topic_id)?);
        }
        let mut leaders = 0;
        let mut under_replicated = 0;
        let mut offline = 0;
        for topic in image.topics() {
            for (index, registration) in image.partitions(&topic.id).iter().enumerate() {
                let index = index as i32;
                if registration.leader < 0 {
                    offline += 1;
                }
                if registration.leader == self.node_id
                    && registration.isr.len() < registration.replicas.len()
                {
                    under_replicated += 1;
                }
                if !registration.replicas.contains(&self.node_id) {
                    if let Some(log) = self.logs.get(topic.id, index) {
                        // Reassigned away (Kafka's StopReplica with delete):
                        // the new replica set holds every committed record,
                        // so this copy only takes disk. Stop replicating,
                        // then delete it.
                        let _ = log.apply_registration(self.node_id, registration);
                        self.fetchers.unfollow(&log);
                        info!(topic = %topic.name, partition = index,
                            "replica moved to other nodes; deleting the local copy");
                        if let Err(e) = self.logs.delete_partition(topic.id, index) {
                            warn!(topic = %topic.name, partition = index, error = %e,
                                "deleting a moved replica failed; its data stays");
                        }
                    }
                    continue;
                }
                let log = self.logs.ensure_partition(topic, index)?;
                if registration.leader == self.node_id {
                    leaders += 1;
                }
                match log.apply_registration(self.node_id, registration) {
                    Some(Role::Follower { leader }) => self.fetchers.follow(self, &log, leader),
                    Some(_) => self.fetchers.unfollow(&log),
                    None => {}
                }
            }
        }
        crate::metrics::TOPICS.set(image.topics().count() as i64);
        let mut per_tenant: std::collections::BTreeMap<&str, i64> =
            image.tenants().into_iter().map(|t| (t, 0)).collect();
        for topic in image.topics() {
            if let Some(count) = crate::tenant::tenant_of_resource(&topic.name)
                .and_then(|tenant| per_tenant.get_mut(tenant))
            {
                *count += 1;
            }
        }
        for (tenant, count) in per_tenant {
            crate::metrics::TENANT_TOPICS
                .with_label_values(&[tenant])
                .set(count);
        }
        crate::metrics::LEADER_PARTITIONS.set(leaders);
        crate::metrics::UNDER_REPLICATED_PARTITIONS.set(under_replicated);
        crate::metrics::OFFLINE_PARTITIONS.set(offline);
        Ok(deletions)
    }

    /// Queues every partition's batch with the writer now (fixing their
    /// order), and returns a future of the results in request order.
    pub fn append_records(
        &self,
        requests: Vec<AppendRequest>,
    ) -> impl Future<Output = Vec<Result<AppendResult>>> + Send + 'static {
        let writer = self.logs.writer();
        let replies: Vec<_> = requests
            .into_iter()
            .map(|request| {
                let (reply, done) = oneshot::channel();
                writer.append(AppendJob {
                    partition: request.partition,
                    records: request.records,
                    max_message_bytes: request.max_message_bytes,
                    origin: request.origin,
                    reply,
                });
                done
            })
            .collect();
        async move {
            let mut results = Vec::with_capacity(replies.len());
            for done in replies {
                results.push(done.await.unwrap_or_else(|_| Err(storage_gone())));
            }
            results
        }
    }

    /// ListOffsets for one partition; read_committed (isolation level 1)
    /// sees the log up to the last stable offset only, as its fetches do.
    pub async fn list_offset(
        &self,
        log: Arc<PartitionLog>,
        timestamp: i64,
        read_committed: bool,
    ) -> Result<OffsetAndTimestamp> {
        let mut offsets = log.offsets();
        if read_committed {
            offsets.high_watermark = offsets.last_stable_offset;
        }
        let epoch_at = |offset: i64| log.epoch_for_offset(offset).unwrap_or(offsets.leader_epoch);
        let plain = |offset: i64| OffsetAndTimestamp {
            offset,
            timestamp: -1,
            leader_epoch: epoch_at(offset),
        };
        match timestamp {
            EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => Ok(plain(offsets.log_start_offset)),
            LATEST_TIMESTAMP => Ok(plain(offsets.high_watermark)),
            LATEST_TIERED_TIMESTAMP => Ok(OffsetAndTimestamp {
                offset: -1,
                timestamp: -1,
                leader_epoch: -1,
            }),
            MAX_TIMESTAMP | 0.. => {
                let db = self.logs.db().clone();
                let lookup_log = log.clone();
                let found = tokio::task::spawn_blocking(move || {
                    let p = &lookup_log;
                    if timestamp == MAX_TIMESTAMP {
                        reader::max_timestamp(
                            &db,
                            p,
                            offsets.log_start_offset,
                            offsets.high_watermark,
                        )
                    } else {
                        reader::offset_for_timestamp(
                            &db,
                            p,
                            timestamp,
                            offsets.log_start_offset,
                            offsets.high_watermark,
                        )
                    }
                })
                .await
                .map_err(|e| Error::Internal(format!("offset lookup task: {e}")))??;
                Ok(match found {
                    Some((offset, ts)) => OffsetAndTimestamp {
                        offset,
                        timestamp: ts,
                        leader_epoch: epoch_at(offset),
                    },
                    None => OffsetAndTimestamp {
                        offset: -1,
                        timestamp: -1,
                        leader_epoch: -1,
                    },
                })
            }
            _ => Err(Error::api_msg(
                ResponseError::InvalidRequest,
                format!("unknown special timestamp {timestamp}"),
            )),
        }
    }

    /// DeleteRecords for one partition: moves the log start offset to
    /// `offset` (-1: the high watermark) and frees whole batches below it.
    /// Returns the new low watermark.
    pub async fn delete_records(&self, log: Arc<PartitionLog>, offset: i64) -> Result<i64> {
        let offsets = log.offsets();
        let target = if offset == -1 {
            offsets.high_watermark
        } else {
            offset
        };
        if target < 0 || target > offsets.high_watermark {
            return Err(Error::api_msg(
                ResponseError::OffsetOutOfRange,
                format!(
                    "cannot delete records before offset {offset}: the high watermark is {}",
                    offsets.high_watermark
                ),
            ));
        }
        if target <= offsets.log_start_offset {
            return Ok(offsets.log_start_offset);
        }
        self.truncate_front(log, target, offsets.high_watermark)
            .await
    }

    async fn truncate_front(
        &self,
        log: Arc<PartitionLog>,
        new_start: i64,
        upper: i64,
    ) -> Result<i64> {
        let db = self.logs.db().clone();
        let scan_log = log.clone();
        let (delete_below, freed_bytes) = tokio::task::spawn_blocking(move || {
            reader::front_below(&db, &scan_log, new_start, upper)
        })
        .await
        .map_err(|e| Error::Internal(format!("delete records task: {e}")))??;
        let (reply, done) = oneshot::channel();
        self.logs.writer().truncate_front(TruncateFront {
            partition: log,
            new_start,
            delete_below,
            freed_bytes,
            reply,
        })?;
        done.await.unwrap_or_else(|_| Err(storage_gone()))
    }

    /// One retention pass over every hosted partition.
    pub async fn apply_retention(&self, image: &MetadataImage) {
        for log in self.logs.all() {
            let Some(topic) = image.topic_by_id(&log.topic_id) else {
                continue;
            };
            let config = TopicConfig::resolve(&topic.configs, &image.broker_config);
            let policy = RetentionPolicy {
                retention_ms: config.retention_ms,
                retention_bytes: config.retention_bytes,
            };
            if policy.retention_ms < 0 && policy.retention_bytes < 0 {
                continue;
            }
            let offsets = log.offsets();
            let total = log.lock().size_bytes;
            let db = self.logs.db().clone();
            let scan_log = log.clone();
            let decision = tokio::task::spawn_blocking(move || {
                let mut batches = Vec::new();
                // Collect lazily: decide() stops at the first kept batch, so
                // scan only while the policy could still delete.
                let now = now_ms();
                let mut freed = 0;
                reader::scan(&db, &scan_log, offsets.high_watermark, |info, _| {
                    let expired = policy.retention_ms >= 0
                        && info.max_timestamp < now.saturating_sub(policy.retention_ms);
                    let oversized = policy.retention_bytes >= 0
                        && total - freed - info.size >= policy.retention_bytes;
                    batches.push(info);
                    freed += info.size;
                    expired || oversized
                })
                .map(|()| retention::decide(batches, policy, now, total, offsets.high_watermark))
            })
            .await;
            match decision {
                Ok(Ok(Some(truncation))) => {
                    debug!(topic = %log.topic, partition = log.partition,
                        new_log_start = truncation.new_log_start, "retention deletes old batches");
                    if let Err(e) = self
                        .truncate_front(
                            log.clone(),
                            truncation.new_log_start,
                            offsets.high_watermark,
                        )
                        .await
                    {
                        warn!(topic = %log.topic, partition = log.partition, error = %e, "retention failed");
                    }
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => warn!(topic = %log.topic, error = %e, "retention scan failed"),
                Err(e) => warn!(error = %e, "retention task failed"),
            }
        }
    }

    /// Forgets, in every hosted partition, the idempotent producers idle for
    /// `producer.id.expiration.ms` (Kafka's `removeExpiredProducers`). Only
    /// partitions with something to expire reach the writer.
    pub fn expire_producers(&self) {
        let now = now_ms();
        let expiration_ms = self.config.producer_id_expiration_ms;
        let partitions: Vec<_> = self
            .logs
            .all()
            .into_iter()
            .filter(|log| log.lock().producers.has_expired(now, expiration_ms))
            .collect();
        if partitions.is_empty() {
            return;
        }
        debug!(partitions = partitions.len(), "expiring idle producer ids");
        if let Err(e) = self
            .logs
            .writer()
            .expire_producers(partitions, expiration_ms)
        {
            warn!(error = %e, "producer id expiration failed");
        }
    }

    /// Runs retention and producer-id expiration every
    /// `log.retention.check.interval.ms` until cancelled.
    pub async fn retention_loop(
        self: Arc<Self>,
        image: impl Fn() -> Arc<MetadataImage> + Send + 'static,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let period = Duration::from_millis(self.config.log_retention_check_interval_ms);
        // Like Kafka's initial task delay: the first pass waits one period,
        // so startup is not slowed by a scan of every partition.
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {
                    self.apply_retention(&image()).await;
                    self.expire_producers();
                }
            }
        }
    }
}
