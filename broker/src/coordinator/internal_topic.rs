//! What the coordinators share about their internal topics
//! (`__consumer_offsets`, `__transaction_state`): creating the topic on
//! first use, finding the node that coordinates a key, reading a partition
//! back at load time, and writing records with acks=all.
//!
//! A key (group id, transactional id) lives in partition
//! `abs(key.hashCode) % partitions`, Kafka's placement, so it moves with
//! its partition's leader.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cluster::metadata::MetadataImage;
use crate::cluster::store::MetadataStore;
use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::log::now_ms;
use crate::log::partition::PartitionLog;
use crate::log::reader;
use crate::log::writer::{AppendOrigin, AppendResult};
use crate::replication::replica_manager::AppendRequest;
use crate::replication::ReplicaManager;

/// How long a coordinator's write waits for the in-sync replicas.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request waits for its partition to finish loading before
/// answering COORDINATOR_LOAD_IN_PROGRESS.
const LOAD_WAIT: Duration = Duration::from_secs(2);

/// Where one of the partitions this node leads stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionStatus {
    /// Being replayed: its keys' requests wait, then get
    /// COORDINATOR_LOAD_IN_PROGRESS.
    Loading,
    Loaded,
}

/// Calls `sync` with each new metadata image until shutdown: how a
/// coordinator follows its topic's leadership.
pub async fn follow_images<F, Fut>(
    metadata: &MetadataStore,
    shutdown: &CancellationToken,
    mut sync: F,
) where
    F: FnMut(Arc<MetadataImage>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut images = metadata.controller().subscribe();
    loop {
        let image = images.borrow_and_update().clone();
        sync(image).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = images.changed() => if changed.is_err() { return },
        }
    }
}

/// Java's `String.hashCode`, which Kafka's placement uses.
fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The partition of `key` among `partitions`, as Kafka computes it
/// (`Utils.abs(key.hashCode) % partitions`).
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    // Kafka's Utils.abs maps i32::MIN to 0 rather than overflowing.
    let hash = java_string_hash(key);
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

/// The producer fields of a batch a coordinator writes for a transaction
/// (TxnOffsetCommit): the producer's id and epoch, no sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// One record read back from an internal topic.
#[derive(Debug, Clone)]
pub struct LoadedRecord {
    pub offset: i64,
    pub producer_id: i64,
    pub transactional: bool,
    /// A transaction marker: `Some(commit)`.
    pub marker: Option<bool>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}

/// One internal topic of a coordinator.
#[derive(Debug)]
pub struct InternalTopic {
    pub name: &'static str,
    default_partitions: i32,
    configs: BTreeMap<String, String>,
    config: Arc<BrokerConfig>,
    metadata: Arc<MetadataStore>,
    replicas: Arc<ReplicaManager>,
    create_lock: tokio::sync::Mutex<()>,
}

impl InternalTopic {
    pub fn new(
        name: &'static str,
        default_partitions: i32,
        configs: BTreeMap<String, String>,
        config: Arc<BrokerConfig>,
        metadata: Arc<MetadataStore>,
        replicas: Arc<ReplicaManager>,
    ) -> Self {
        InternalTopic {
            name,
            default_partitions,
            configs,
            config,
            metadata,
            replicas,
            create_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The topic's partition count (the configured one until it exists).
    pub fn partitions(&self) -> i32 {
        self.metadata
            .image()
            .topic(self.name)
            .map(|t| t.partitions)
            .unwrap_or(self.default_partitions)
    }

    /// The partition that holds `key`.
    pub fn partition_of(&self, key: &str) -> i32 {
        partition_for(key, self.partitions())
    }

    /// Creates the topic if it does not exist yet (Kafka creates it on the
    /// first FindCoordinator too) and hosts its partitions. Returns the new
    /// topic's image if this call created it.
    pub async fn ensure(&self) -> std::result::Result<Option<Arc<MetadataImage>>, ResponseError> {
        if self.metadata.image().topic(self.name).is_some() {
            return Ok(None);
        }
        let _guard = self.create_lock.lock().await;
        if self.metadata.image().topic(self.name).is_some() {
            return Ok(None);
        }
        let replication_factor = self
            .config
            .replication_factor()
            .min(self.metadata.image().live_brokers().len().max(1) as i16);
        let created = match self
            .metadata
            .create_topic(
                self.name,
                self.default_partitions,
                replication_factor,
                None,
                self.configs.clone(),
            )
            .await
        {
            Ok(_) => {
                let image = self.metadata.image();
                let replicas = self.replicas.clone();
                let hosted = image.clone();
                tokio::task::spawn_blocking(move || replicas.reconcile(&hosted).map(|_| ()))
                    .await
                    .map_err(|e| Error::Internal(format!("hosting task: {e}")))
                    .and_then(|r| r)
                    .map(|()| image)
            }
            Err(e) => Err(e),
        };
        match created {
            Ok(image) => {
                info!(
                    topic = self.name,
                    partitions = self.default_partitions,
                    "created an internal topic"
                );
                Ok(Some(image))
            }
            Err(e) => {
                warn!(topic = self.name, error = %e, "creating an internal topic failed");
                Err(ResponseError::CoordinatorNotAvailable)
            }
        }
    }

    /// The node that coordinates `key`: the leader of its partition (None
    /// while the topic is missing or the partition has no leader).
    pub fn coordinator_node(&self, key: &str) -> Option<i32> {
        let image = self.metadata.image();
        let topic = image.topic(self.name)?;
        let partition = partition_for(key, topic.partitions);
        let leader = image.partition(&topic.id, partition)?.leader;
        (leader >= 0).then_some(leader)
    }

    /// The checks every coordinator request makes once the topic exists:
    /// this node leads `key`'s partition and has loaded it. A partition
    /// being loaded (a new leader, a new topic) is usually ready within
    /// moments, so this waits a little (woken by `loaded`) before telling
    /// the client to retry. `status` reads a partition's status under the
    /// coordinator's lock. Returns the partition.
    pub async fn wait_ready(
        &self,
        key: &str,
        loaded: &Notify,
        status: impl Fn(i32) -> Option<PartitionStatus>,
    ) -> std::result::Result<i32, ResponseError> {
        let partition = self.partition_of(key);
        match self.coordinator_node(key) {
            Some(node) if node == self.config.node_id => {}
            Some(_) => return Err(ResponseError::NotCoordinator),
            None => return Err(ResponseError::CoordinatorNotAvailable),
        }
        let deadline = tokio::time::Instant::now() + LOAD_WAIT;
        loop {
            let woken = loaded.notified();
            match status(partition) {
                Some(PartitionStatus::Loaded) => return Ok(partition),
                Some(PartitionStatus::Loading) => {}
                None => return Err(ResponseError::CoordinatorNotAvailable),
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return Err(ResponseError::CoordinatorLoadInProgress);
            }
        }
    }

    /// The partitions this node leads in `image` (None: no topic yet).
    pub fn led_partitions(&self, image: &MetadataImage) -> Option<Vec<i32>> {
        let topic = image.topic(self.name)?;
        Some(
            image
                .partitions(&topic.id)
                .iter()
                .enumerate()
                .filter(|(_, p)| p.leader == self.config.node_id)
                .map(|(i, _)| i as i32)
                .collect(),
        )
    }

    /// Hosts `image`'s partitions if any of `partitions` is not hosted yet
    /// (the replica manager follows the same images; reconciling is
    /// idempotent).
    pub async fn host(&self, image: &Arc<MetadataImage>, partitions: &[i32]) {
        let Some(topic) = image.topic(self.name) else {
            return;
        };
        if partitions
            .iter()
            .all(|p| self.replicas.logs().get(topic.id, *p).is_some())
        {
            return;
        }
        let replicas = self.replicas.clone();
        let image = image.clone();
        match tokio::task::spawn_blocking(move || replicas.reconcile(&image)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                warn!(topic = self.name, error = %e, "hosting internal partitions failed")
            }
            Err(e) => warn!(error = %e, "hosting task failed"),
        }
    }

    /// The hosted log of one partition.
    pub fn log(&self, partition: i32) -> Result<Arc<PartitionLog>> {
        let image = self.metadata.image();
        let topic = image
            .topic(self.name)
            .ok_or_else(|| Error::api(ResponseError::CoordinatorNotAvailable))?;
        self.replicas
            .logs()
            .get(topic.id, partition)
            .ok_or_else(|| Error::api(ResponseError::CoordinatorNotAvailable))
    }

    /// Every record of a partition, to its log end, in log order (Kafka's
    /// coordinators load to the log end: a new leader's high watermark lags
    /// the old leader's until its followers fetch again, and a write
    /// acknowledged just before the old leader died sits between the two).
    pub async fn read_all(&self, partition: i32) -> Result<Vec<LoadedRecord>> {
        let log = self.log(partition)?;
        let db = self.replicas.logs().db().clone();
        let upper = log.offsets().log_end_offset;
        tokio::task::spawn_blocking(move || -> Result<Vec<LoadedRecord>> {
            let mut out = Vec::new();
            let mut failed = None;
            reader::scan(&db, &log, upper, |_, bytes| {
                let mut buf = Bytes::copy_from_slice(bytes);
                match RecordBatchDecoder::decode(&mut buf) {
                    Ok(set) => {
                        for r in set.records {
                            let marker = if r.control {
                                crate::log::batch::BatchHeader::new(bytes)
                                    .and_then(|h| h.control_marker())
                            } else {
                                None
                            };
                            out.push(LoadedRecord {
                                offset: r.offset,
                                producer_id: r.producer_id,
                                transactional: r.transactional,
                                marker,
                                key: if r.control { None } else { r.key },
                                value: r.value,
                            });
                        }
                        true
                    }
                    Err(e) => {
                        failed = Some(e.to_string());
                        false
                    }
                }
            })?;
            match failed {
                Some(e) => Err(Error::Internal(format!("decoding an internal batch: {e}"))),
                None => Ok(out),
            }
        })
        .await
        .map_err(|e| Error::Internal(format!("load task: {e}")))?
    }

    /// Queues records for one partition with the log writer (their order
    /// is fixed when this returns) and returns the write, which completes
    /// once every in-sync replica has it: coordinators write with
    /// acks=all, so what they answered survives the loss of their node.
    pub fn append(
        &self,
        partition: i32,
        records: Vec<(Bytes, Option<Bytes>)>,
        producer: Option<TxnProducer>,
    ) -> Result<impl std::future::Future<Output = Result<AppendResult>> + Send + 'static> {
        let log = self.log(partition)?;
        if !log.is_leader() {
            return Err(Error::api(ResponseError::NotCoordinator));
        }
        let batch = encode_batch(records, producer)?;
        let append = self.replicas.append_records(vec![AppendRequest {
            partition: log.clone(),
            records: batch,
            max_message_bytes: i32::MAX,
            origin: AppendOrigin::Coordinator,
        }]);
        let replicas = self.replicas.clone();
        Ok(async move {
            let result = append
                .await
                .pop()
                .unwrap_or_else(|| Err(Error::Internal("no append result".into())))?;
            replicas
                .wait_replicated(&log, result.last_offset + 1, 1, WRITE_TIMEOUT)
                .await?;
            Ok(result)
        })
    }
}

/// One uncompressed batch of keyed records (a null value is a tombstone),
/// transactional for `producer`.
pub fn encode_batch(
    records: Vec<(Bytes, Option<Bytes>)>,
    producer: Option<TxnProducer>,
) -> Result<Bytes> {
    let now = now_ms();
    let (producer_id, producer_epoch) = producer
        .map(|p| (p.producer_id, p.producer_epoch))
        .unwrap_or((-1, -1));
    let records: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // One batch: the encoder splits where offset - sequence
            // changes; the base sequence comes out as -1 (none).
            sequence: i as i32 - 1,
            timestamp: now,
            key: Some(key),
            value,
            headers: Default::default(),
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| Error::Internal(format!("encoding coordinator records: {e}")))?;
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::BatchHeader;

    #[test]
    fn placement_matches_kafka() {
        // "abc".hashCode() == 96354 in Java.
        assert_eq!(java_string_hash("abc"), 96354);
        assert_eq!(partition_for("abc", 50), 96354 % 50);
        // Negative hashes use the absolute value; MIN_VALUE maps to 0.
        let h = java_string_hash("polygenelubricants");
        assert_eq!(h, i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert!((0..50).contains(&partition_for("some-group-with-negative-hash-zz", 50)));
        assert_eq!(partition_for("x", 1), 0);
    }

    #[test]
    fn transactional_batches_carry_the_producer_and_no_sequence() {
        let producer = TxnProducer {
            producer_id: 77,
            producer_epoch: 2,
        };
        let key = Bytes::from_static(b"k");
        let batch = encode_batch(vec![(key.clone(), None), (key, None)], Some(producer)).unwrap();
        let header = BatchHeader::new(&batch).unwrap();
        assert!(header.is_transactional() && !header.is_control());
        assert_eq!((header.producer_id(), header.producer_epoch()), (77, 2));
        assert_eq!((header.base_sequence(), header.record_count()), (-1, 2));
        let plain = encode_batch(vec![(Bytes::from_static(b"k"), None)], None).unwrap();
        assert!(!BatchHeader::new(&plain).unwrap().is_transactional());
    }
}
