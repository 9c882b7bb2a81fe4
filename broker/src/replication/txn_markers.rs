//! Transaction markers (Kafka's WriteTxnMarkers): a transaction
//! coordinator ends a transaction by asking each partition's leader to
//! append a COMMIT or ABORT control batch for the producer. The leader
//! writes it like any batch (the producer state closes the transaction,
//! an abort enters the aborted-transaction index) and answers once the
//! in-sync replicas have it, as Kafka's acks=all marker write does.
//!
//! Between nodes this travels on the internal RPC, not the Kafka listener:
//! it is inter-broker traffic, which Kafka clients never see.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use tracing::debug;
use uuid::Uuid;

use crate::coordinator::group_coordinator::OFFSETS_TOPIC;
use crate::error::{Error, Result};
use crate::log::batch;
use crate::log::writer::AppendOrigin;
use crate::replication::replica_manager::AppendRequest;
use crate::replication::ReplicaManager;

/// How long a marker waits for the in-sync replicas.
const MARKER_TIMEOUT: Duration = Duration::from_secs(5);

/// Who learns that a marker landed in a `__consumer_offsets` partition:
/// the group coordinator, whose transactional offsets then count or go.
pub trait TxnCompletion: Send + Sync + std::fmt::Debug {
    fn complete_txn(&self, offsets_partition: i32, producer_id: i64, commit: bool);
}

/// One transaction's markers for partitions led by one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TxnMarkers {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    /// The coordinator's epoch (its partition's leader epoch), stored in
    /// the marker as Kafka does.
    pub coordinator_epoch: i32,
    pub partitions: Vec<(Uuid, i32)>,
}

/// Each partition's outcome: topic id, index, Kafka error code (0: written).
pub type MarkerResults = Vec<(Uuid, i32, i16)>;

impl ReplicaManager {
    /// Connects the group coordinator (once, at startup).
    pub fn set_txn_completion(&self, completion: Arc<dyn TxnCompletion>) {
        let _ = self.txn_completion.set(completion);
    }

    /// Writes a transaction's markers to the partitions this node leads.
    pub async fn write_txn_markers(self: &Arc<Self>, markers: TxnMarkers) -> MarkerResults {
        let now = crate::log::now_ms();
        let marker = Bytes::from(batch::encode_marker(
            markers.producer_id,
            markers.producer_epoch,
            markers.commit,
            markers.coordinator_epoch,
            now,
        ));
        let markers = &markers;
        let writes = markers.partitions.iter().map(|&(topic_id, partition)| {
            let marker = marker.clone();
            async move {
                let code = match self.write_marker(topic_id, partition, marker).await {
                    Ok(()) => {
                        self.note_offsets_marker(topic_id, partition, markers);
                        0
                    }
                    Err(e) => {
                        debug!(%topic_id, partition, producer_id = markers.producer_id,
                            error = %e, "writing a transaction marker failed");
                        e.code()
                    }
                };
                (topic_id, partition, code)
            }
        });
        futures_util::future::join_all(writes).await
    }

    async fn write_marker(&self, topic_id: Uuid, partition: i32, marker: Bytes) -> Result<()> {
        let log = self
            .logs()
            .get(topic_id, partition)
            .ok_or_else(|| Error::api(ResponseError::UnknownTopicOrPartition))?;
        log.check_leader()?;
        let result = self
            .append_records(vec![AppendRequest {
                partition: log.clone(),
                records: marker,
                max_message_bytes: i32::MAX,
                origin: AppendOrigin::Coordinator,
            }])
            .await
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("no append result".into())))?;
        self.wait_replicated(&log, result.last_offset + 1, 1, MARKER_TIMEOUT)
            .await
    }

    fn note_offsets_marker(&self, topic_id: Uuid, partition: i32, markers: &TxnMarkers) {
        let is_offsets = self
            .controller()
            .and_then(|c| {
                c.image()
                    .topic_by_id(&topic_id)
                    .map(|t| t.name == OFFSETS_TOPIC)
            })
            .unwrap_or(false);
        if !is_offsets {
            return;
        }
        if let Some(completion) = self.txn_completion.get() {
            completion.complete_txn(partition, markers.producer_id, markers.commit);
        }
    }
}

/// Whether a marker's failure is worth retrying (Kafka's coordinator
/// retries everything but a partition that no longer exists).
/// A stale marker (INVALID_PRODUCER_EPOCH: the producer moved past this
/// epoch in the partition) is dropped too.
pub fn is_retriable(code: i16) -> bool {
    code != 0
        && code != ResponseError::UnknownTopicOrPartition.code()
        && code != ResponseError::InvalidProducerEpoch.code()
}
