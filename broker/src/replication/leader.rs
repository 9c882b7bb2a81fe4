//! The leader side of replication: answering followers' fetches (their
//! progress moves the high watermark and may bring them into the ISR),
//! dropping followers that lag from the ISR, and waiting for acks=all.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::cluster::rpc::{
    AlterPartitionRequest, ReplicaFetchPartition, ReplicaFetchRequest, ReplicaFetchedPartition,
};
use crate::error::{Error, Result};
use crate::log::partition::PartitionLog;
use crate::log::reader;
use crate::replication::fetch::wait_for_append;
use crate::replication::partition::Role;
use crate::replication::ReplicaManager;

fn answer(p: &ReplicaFetchPartition, error: ResponseError) -> ReplicaFetchedPartition {
    ReplicaFetchedPartition {
        topic_id: p.topic_id,
        partition: p.partition,
        error_code: error.code(),
        high_watermark: -1,
        log_start_offset: -1,
        diverging_epoch: None,
        records: bytes::Bytes::new(),
        records_len: 0,
    }
}

impl ReplicaManager {
    /// Answers a follower's fetch, waiting up to its max wait for data.
    pub async fn replica_fetch(
        self: &Arc<Self>,
        request: ReplicaFetchRequest,
    ) -> Vec<ReplicaFetchedPartition> {
        let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.min(30_000));
        let logs: Vec<Option<Arc<PartitionLog>>> = request
            .partitions
            .iter()
            .map(|p| self.logs.get(p.topic_id, p.partition))
            .collect();
        let mut watches: Vec<_> = logs
            .iter()
            .flatten()
            .map(|l| l.subscribe_log_end())
            .collect();
        let request = Arc::new(request);
        let logs = Arc::new(logs);
        let mut first = true;
        loop {
            for watch in &mut watches {
                let _ = watch.borrow_and_update();
            }
            let rm = self.clone();
            let (req, ls) = (request.clone(), logs.clone());
            let record = first;
            let answers =
                match tokio::task::spawn_blocking(move || rm.read_for_follower(&req, &ls, record))
                    .await
                {
                    Ok(answers) => answers,
                    Err(e) => {
                        warn!(error = %e, "replica fetch task failed");
                        return request
                            .partitions
                            .iter()
                            .map(|p| answer(p, ResponseError::UnknownServerError))
                            .collect();
                    }
                };
            first = false;
            let bytes: usize = answers.iter().map(|a| a.records.len()).sum();
            let stop = answers
                .iter()
                .any(|a| a.error_code != 0 || a.diverging_epoch.is_some());
            if bytes >= request.min_bytes || stop || Instant::now() >= deadline {
                return answers;
            }
            wait_for_append(&mut watches, deadline).await;
        }
    }

    /// Blocking: checks each partition, records the follower's progress
    /// (once per request), and reads up to the log end offset.
    fn read_for_follower(
        self: &Arc<Self>,
        request: &ReplicaFetchRequest,
        logs: &[Option<Arc<PartitionLog>>],
        record_progress: bool,
    ) -> Vec<ReplicaFetchedPartition> {
        let mut remaining = request.max_bytes;
        request
            .partitions
            .iter()
            .zip(logs)
            .map(|(p, log)| {
                let Some(log) = log.as_ref().filter(|l| !l.is_deleted()) else {
                    return answer(p, ResponseError::UnknownTopicOrPartition);
                };
                let view = log.replica_view();
                if view.role != Role::Leader {
                    return answer(p, ResponseError::NotLeaderOrFollower);
                }
                if p.leader_epoch < view.leader_epoch {
                    return answer(p, ResponseError::FencedLeaderEpoch);
                }
                if p.leader_epoch > view.leader_epoch {
                    return answer(p, ResponseError::UnknownLeaderEpoch);
                }
                let offsets = log.offsets();
                if p.last_fetched_epoch >= 0 {
                    let diverged = match log.end_offset_for_epoch(p.last_fetched_epoch) {
                        Some((epoch, end)) if epoch == p.last_fetched_epoch && end >= p.fetch_offset => None,
                        Some((epoch, end)) => Some((epoch, end)),
                        None => Some((-1, offsets.log_start_offset)),
                    };
                    if let Some(diverging) = diverged {
                        let mut a = answer(p, ResponseError::UnknownServerError);
                        a.error_code = 0;
                        a.high_watermark = offsets.high_watermark;
                        a.log_start_offset = offsets.log_start_offset;
                        a.diverging_epoch = Some(diverging);
                        return a;
                    }
                }
                if p.fetch_offset < offsets.log_start_offset || p.fetch_offset > offsets.log_end_offset {
                    return answer(p, ResponseError::OffsetOutOfRange);
                }
                if record_progress {
                    if let Some(new_isr) = log.record_follower_fetch(request.replica_id, p.fetch_offset) {
                        self.spawn_alter_partition(log.clone(), new_isr);
                    }
                }
                let offsets = log.offsets();
                let limit = self.config.replica_fetch_max_bytes.min(remaining);
                let records = if p.fetch_offset < offsets.log_end_offset && limit > 0 {
                    match reader::read(self.logs.db(), log, p.fetch_offset, limit, offsets.log_end_offset, true) {
                        Ok(records) => records,
                        Err(e) => {
                            warn!(topic = %log.topic, partition = log.partition, error = %e, "reading for a follower failed");
                            return answer(p, ResponseError::KafkaStorageError);
                        }
                    }
                } else {
                    bytes::Bytes::new()
                };
                remaining = remaining.saturating_sub(records.len());
                log.metrics.bytes_out.inc_by(records.len() as u64);
                ReplicaFetchedPartition {
                    topic_id: p.topic_id,
                    partition: p.partition,
                    error_code: 0,
                    high_watermark: offsets.high_watermark,
                    log_start_offset: offsets.log_start_offset,
                    diverging_epoch: None,
                    records,
                    records_len: 0,
                }
            })
            .collect()
    }

    /// Proposes `new_isr` for `log` to the controller in the background.
    pub(crate) fn spawn_alter_partition(
        self: &Arc<Self>,
        log: Arc<PartitionLog>,
        new_isr: Vec<i32>,
    ) {
        let rm = self.clone();
        let _task = tokio::spawn(async move {
            let view = log.replica_view();
            let request = AlterPartitionRequest {
                broker: rm.node_id,
                topic_id: log.topic_id,
                partition: log.partition,
                leader_epoch: view.leader_epoch,
                partition_epoch: view.partition_epoch,
                new_isr: new_isr.clone(),
            };
            let Some(controller) = rm.controller() else {
                log.isr_change_failed();
                return;
            };
            let reply = controller.alter_partition(request).await;
            if reply.error_code != 0 {
                debug!(topic = %log.topic, partition = log.partition, isr = ?new_isr,
                    error_code = reply.error_code, "ISR change refused");
                log.isr_change_failed();
            }
        });
    }

    /// Drops lagging followers from the ISR of every partition led here,
    /// every half `replica.lag.time.max.ms`, until cancelled.
    pub async fn isr_maintenance_loop(self: Arc<Self>) {
        let lag = self.config.replica_lag_time_max_ms;
        let period = Duration::from_millis((lag as u64 / 2).max(50));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            for log in self.logs.all() {
                if let Some(shrunk) = log.isr_to_shrink(lag) {
                    warn!(topic = %log.topic, partition = log.partition, isr = ?shrunk,
                        "followers lag behind: shrinking the ISR");
                    self.spawn_alter_partition(log, shrunk);
                }
            }
        }
    }

    /// acks=all: waits until the high watermark passes `end_offset` (every
    /// in-sync replica has the batch), then checks the ISR is still at
    /// least `min_insync`.
    pub async fn wait_replicated(
        &self,
        log: &PartitionLog,
        end_offset: i64,
        min_insync: i32,
        timeout: Duration,
    ) -> Result<()> {
        let mut watch = log.subscribe_high_watermark();
        let reached = tokio::time::timeout(timeout, watch.wait_for(|hw| *hw >= end_offset)).await;
        match reached {
            Ok(Ok(_)) => {
                if (log.isr_len() as i32) < min_insync && log.is_leader() {
                    return Err(Error::api(ResponseError::NotEnoughReplicasAfterAppend));
                }
                Ok(())
            }
            Ok(Err(_)) => Err(Error::api(ResponseError::NotLeaderOrFollower)),
            Err(_) => Err(Error::api_msg(
                ResponseError::RequestTimedOut,
                "the in-sync replicas did not all confirm the batch in time",
            )),
        }
    }
}
