//! The follower side of replication: one fetcher task per leader broker
//! (Kafka's `ReplicaFetcherThread`) pulls the partitions this node follows
//! from that leader, appends the batches as the leader numbered them, and
//! takes the leader's high watermark. A fetch names the epoch of the last
//! batch the follower has; when the leader says the logs diverged, the
//! follower truncates to the leader's end of that epoch before going on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::cluster::rpc::{
    ReplicaFetchPartition, ReplicaFetchRequest, RpcConnection, RpcRequest, RpcResponse,
};
use crate::error::{Error, Result};
use crate::log::partition::PartitionLog;
use crate::log::reader;
use crate::log::writer::{ReplicaAppend, TruncateBack};
use crate::replication::partition::Role;
use crate::replication::ReplicaManager;

type PartitionKey = (Uuid, i32);

/// The partitions one fetcher pulls, shared with the replica manager.
#[derive(Debug, Default)]
struct FetcherState {
    partitions: Mutex<HashMap<PartitionKey, Arc<PartitionLog>>>,
    wake: Notify,
}

/// A running fetcher for one leader.
#[derive(Debug)]
struct Fetcher {
    state: Arc<FetcherState>,
    cancel: CancellationToken,
}

/// Every fetcher of this node, by leader id.
#[derive(Debug, Default)]
pub struct ReplicaFetchers {
    fetchers: Mutex<HashMap<i32, Fetcher>>,
}

impl ReplicaFetchers {
    /// Follows `log` from `leader` (and from nobody else).
    pub(crate) fn follow(&self, rm: &Arc<ReplicaManager>, log: &Arc<PartitionLog>, leader: i32) {
        let key = (log.topic_id, log.partition);
        let mut fetchers = self.fetchers.lock().unwrap_or_else(|p| p.into_inner());
        for (id, fetcher) in fetchers.iter() {
            if *id != leader {
                let _ = fetcher
                    .state
                    .partitions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
            }
        }
        if leader < 0 {
            return;
        }
        let fetcher = fetchers.entry(leader).or_insert_with(|| {
            let state = Arc::new(FetcherState::default());
            let cancel = rm.shutdown.child_token();
            let _task = tokio::spawn(run(rm.clone(), leader, state.clone(), cancel.clone()));
            info!(leader, "replica fetcher started");
            Fetcher { state, cancel }
        });
        let _ = fetcher
            .state
            .partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, log.clone());
        fetcher.state.wake.notify_one();
    }

    /// Stops following `log` from anyone.
    pub(crate) fn unfollow(&self, log: &PartitionLog) {
        let key = (log.topic_id, log.partition);
        let fetchers = self.fetchers.lock().unwrap_or_else(|p| p.into_inner());
        for fetcher in fetchers.values() {
            let _ = fetcher
                .state
                .partitions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        }
    }

    /// Stops every fetcher.
    pub(crate) fn shutdown(&self) {
        let fetchers = self.fetchers.lock().unwrap_or_else(|p| p.into_inner());
        for fetcher in fetchers.values() {
            fetcher.cancel.cancel();
        }
    }
}

const BACKOFF: Duration = Duration::from_millis(200);

async fn run(
    rm: Arc<ReplicaManager>,
    leader: i32,
    state: Arc<FetcherState>,
    cancel: CancellationToken,
) {
    let mut connection: Option<RpcConnection> = None;
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let partitions: Vec<Arc<PartitionLog>> = state
            .partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|log| !log.is_deleted() && log.replica_view().role == Role::Follower { leader })
            .cloned()
            .collect();
        if partitions.is_empty() {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = state.wake.notified() => continue,
            }
        }
        let Some(addr) = rm.broker_rpc_address(leader) else {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(BACKOFF) => continue,
            }
        };
        let conn = match &mut connection {
            Some(c) if c.addr() == addr => c,
            slot => slot.insert(RpcConnection::new(addr)),
        };
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return,
            outcome = fetch_once(&rm, conn, &partitions) => outcome,
        };
        if let Err(e) = outcome {
            debug!(leader, error = %e, "replica fetch failed");
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(BACKOFF) => {}
            }
        }
    }
}

/// One fetch round: ask, append, take the high watermarks.
async fn fetch_once(
    rm: &Arc<ReplicaManager>,
    conn: &mut RpcConnection,
    partitions: &[Arc<PartitionLog>],
) -> Result<()> {
    let config = &rm.config;
    let request = ReplicaFetchRequest {
        replica_id: rm.node_id,
        max_wait_ms: config.replica_fetch_wait_max_ms,
        min_bytes: 1,
        max_bytes: config.replica_fetch_response_max_bytes,
        partitions: partitions
            .iter()
            .map(|log| {
                let offsets = log.offsets();
                ReplicaFetchPartition {
                    topic_id: log.topic_id,
                    partition: log.partition,
                    fetch_offset: offsets.log_end_offset,
                    leader_epoch: offsets.leader_epoch,
                    last_fetched_epoch: log.last_epoch(),
                }
            })
            .collect(),
    };
    let timeout = Duration::from_millis(config.replica_fetch_wait_max_ms) + Duration::from_secs(10);
    let response = conn
        .call(&RpcRequest::ReplicaFetch(request), timeout)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    let RpcResponse::ReplicaFetch(answers) = response else {
        return Err(Error::Internal(
            "unexpected answer to a replica fetch".into(),
        ));
    };
    let by_key: HashMap<PartitionKey, &Arc<PartitionLog>> = partitions
        .iter()
        .map(|log| ((log.topic_id, log.partition), log))
        .collect();
    let mut appends: Vec<(Arc<PartitionLog>, i64, oneshot::Receiver<Result<i64>>)> = Vec::new();
    let mut backoff = false;
    for answer in answers {
        let Some(log) = by_key.get(&(answer.topic_id, answer.partition)) else {
            continue;
        };
        if answer.error_code != 0 {
            // These settle once both sides have the same metadata (the
            // leader may not host a new partition for a moment).
            let transient = [
                ResponseError::NotLeaderOrFollower,
                ResponseError::FencedLeaderEpoch,
                ResponseError::UnknownLeaderEpoch,
                ResponseError::UnknownTopicOrPartition,
            ];
            if transient.iter().all(|e| e.code() != answer.error_code) {
                warn!(topic = %log.topic, partition = log.partition,
                    error_code = answer.error_code, "replica fetch error");
            }
            // Metadata will move this partition on; do not spin meanwhile.
            backoff = true;
            continue;
        }
        if let Some((epoch, end_offset)) = answer.diverging_epoch {
            truncate(rm, log, epoch, end_offset).await?;
            continue;
        }
        if answer.records.is_empty() {
            log.set_follower_high_watermark(answer.high_watermark);
            continue;
        }
        let (reply, done) = oneshot::channel();
        rm.logs.writer().append_replica(ReplicaAppend {
            partition: (*log).clone(),
            records: answer.records,
            reply,
        });
        appends.push(((*log).clone(), answer.high_watermark, done));
    }
    for (log, high_watermark, done) in appends {
        match done.await {
            Ok(Ok(_)) => log.set_follower_high_watermark(high_watermark),
            Ok(Err(e)) => warn!(topic = %log.topic, partition = log.partition, error = %e,
                "storing fetched batches failed"),
            Err(_) => return Err(Error::api(ResponseError::KafkaStorageError)),
        }
    }
    if backoff {
        tokio::time::sleep(BACKOFF).await;
    }
    Ok(())
}

/// Cuts the log back to where it agrees with the leader: the leader's end
/// of `epoch`, never past our own end.
async fn truncate(
    rm: &Arc<ReplicaManager>,
    log: &Arc<PartitionLog>,
    epoch: i32,
    end_offset: i64,
) -> Result<()> {
    let offsets = log.offsets();
    // Batches of later epochs than the leader's answer go too, even below
    // its end offset: the leader never had them.
    let later_epoch_start = log.start_of_epoch_after(epoch).unwrap_or(i64::MAX);
    let target = end_offset
        .min(offsets.log_end_offset)
        .min(later_epoch_start)
        .max(offsets.log_start_offset);
    info!(topic = %log.topic, partition = log.partition, epoch, from = offsets.log_end_offset,
        to = target, "truncating to the leader's epoch boundary");
    let db = rm.logs.db().clone();
    let scan_log = log.clone();
    let producers =
        tokio::task::spawn_blocking(move || reader::rebuild_producers(&db, &scan_log, target))
            .await
            .map_err(|e| Error::Internal(format!("rebuilding producer state: {e}")))??;
    let (reply, done) = oneshot::channel();
    rm.logs.writer().truncate_back(TruncateBack {
        partition: log.clone(),
        offset: target,
        producers,
        reply,
    })?;
    done.await
        .map_err(|_| Error::api(ResponseError::KafkaStorageError))?
}
