//! The fetch path shared by consumers (and, later, followers): read at once;
//! answer if `min_bytes` is met, the wait is zero, or a partition errs;
//! otherwise sleep on the partitions' high-watermark watches and the
//! `max_wait` timer together. An append wakes the fetch; nothing polls.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::select_all;
use kafka_protocol::error::ResponseError;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::log::partition::PartitionLog;
use crate::log::producer_state::AbortedTxn;
use crate::log::reader;
use crate::replication::ReplicaManager;

/// One partition to read.
#[derive(Debug, Clone)]
pub struct FetchSpec {
    pub log: Arc<PartitionLog>,
    pub fetch_offset: i64,
    pub partition_max_bytes: usize,
    /// The client's idea of the leader epoch, or -1.
    pub current_leader_epoch: i32,
}

/// What one partition returns.
#[derive(Debug)]
pub struct FetchData {
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// read_committed only: the aborted transactions among the records.
    pub aborted: Vec<AbortedTxn>,
    pub result: Result<Bytes>,
}

/// The limits of a whole fetch request.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    pub max_wait: Duration,
    pub min_bytes: usize,
    pub max_bytes: usize,
    /// Kafka's isolation level 1: read up to the last stable offset only,
    /// and learn the aborted transactions there.
    pub read_committed: bool,
}

fn check_epoch(spec: &FetchSpec, leader_epoch: i32) -> Result<()> {
    match spec.current_leader_epoch {
        e if e < 0 || e == leader_epoch => Ok(()),
        e if e < leader_epoch => Err(Error::api(ResponseError::FencedLeaderEpoch)),
        _ => Err(Error::api(ResponseError::UnknownLeaderEpoch)),
    }
}

fn read_all(rm: &ReplicaManager, specs: &[FetchSpec], limits: &FetchLimits) -> Vec<FetchData> {
    let max_bytes = limits.max_bytes;
    let db = rm.logs.db();
    let mut remaining = max_bytes;
    let mut first_data = true;
    specs
        .iter()
        .map(|spec| {
            let offsets = spec.log.offsets();
            // A read_committed consumer stops at the first open transaction.
            let upper = if limits.read_committed {
                offsets.last_stable_offset
            } else {
                offsets.high_watermark
            };
            let mut aborted = Vec::new();
            let result = spec
                .log
                .check_leader()
                .and_then(|()| check_epoch(spec, offsets.leader_epoch))
                .and_then(|()| {
                    if spec.log.is_deleted() {
                        return Err(Error::api(ResponseError::UnknownTopicOrPartition));
                    }
                    if spec.fetch_offset < offsets.log_start_offset
                        || spec.fetch_offset > offsets.log_end_offset
                    {
                        return Err(Error::api_msg(
                            ResponseError::OffsetOutOfRange,
                            format!(
                                "fetch offset {} is outside [{}, {}]",
                                spec.fetch_offset, offsets.log_start_offset, offsets.log_end_offset
                            ),
                        ));
                    }
                    if spec.fetch_offset >= upper {
                        return Ok(Bytes::new());
                    }
                    let limit = spec.partition_max_bytes.min(remaining);
                    let records =
                        reader::read(db, &spec.log, spec.fetch_offset, limit, upper, first_data)?;
                    if !records.is_empty() {
                        first_data = false;
                        remaining = remaining.saturating_sub(records.len());
                        if limits.read_committed {
                            aborted = spec.log.aborted_between(spec.fetch_offset, upper);
                        }
                    }
                    Ok(records)
                });
            FetchData {
                high_watermark: offsets.high_watermark,
                last_stable_offset: offsets.last_stable_offset,
                log_start_offset: offsets.log_start_offset,
                aborted,
                result,
            }
        })
        .collect()
}

async fn read_blocking(
    rm: &Arc<ReplicaManager>,
    specs: &Arc<Vec<FetchSpec>>,
    limits: FetchLimits,
) -> Result<Vec<FetchData>> {
    let rm = rm.clone();
    let specs = specs.clone();
    tokio::task::spawn_blocking(move || read_all(&rm, &specs, &limits))
        .await
        .map_err(|e| Error::Internal(format!("fetch task: {e}")))
}

/// Waits until one of the watches changes or the deadline passes.
pub(crate) async fn wait_for_append(watches: &mut [watch::Receiver<i64>], deadline: Instant) {
    if watches.is_empty() {
        tokio::time::sleep_until(deadline).await;
        return;
    }
    let changes = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
    let _ = tokio::time::timeout_at(deadline, changes).await;
}

impl ReplicaManager {
    /// Reads the partitions, long-polling per the limits.
    pub async fn fetch(
        self: &Arc<Self>,
        specs: Vec<FetchSpec>,
        limits: FetchLimits,
    ) -> Result<Vec<FetchData>> {
        let deadline = Instant::now() + limits.max_wait;
        // Subscribe before the first read so an append between the read and
        // the wait still wakes us.
        let mut watches: Vec<_> = specs
            .iter()
            .map(|s| s.log.subscribe_high_watermark())
            .collect();
        let specs = Arc::new(specs);
        loop {
            for watch in &mut watches {
                let _ = watch.borrow_and_update();
            }
            let data = read_blocking(self, &specs, limits).await?;
            let bytes: usize = data
                .iter()
                .map(|d| d.result.as_ref().map(|b| b.len()).unwrap_or(0))
                .sum();
            let any_error = data.iter().any(|d| d.result.is_err());
            if bytes >= limits.min_bytes || any_error || Instant::now() >= deadline {
                for (spec, d) in specs.iter().zip(&data) {
                    if let Ok(records) = &d.result {
                        spec.log.metrics.bytes_out.inc_by(records.len() as u64);
                    }
                }
                return Ok(data);
            }
            wait_for_append(&mut watches, deadline).await;
        }
    }
}
