//! One partition's log: its offsets, kept in memory and published through a
//! watch channel so waiting fetches wake on an append instead of polling.
//!
//! Invariants: `log_start_offset <= high_watermark <= log_end_offset <=
//! next_offset`. `next_offset` is where the writer thread assigns the next
//! batch; `log_end_offset` only advances once that batch is durable in
//! RocksDB; `high_watermark` is what consumers may read.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use prometheus::{IntCounter, IntGauge};
use tokio::sync::watch;
use uuid::Uuid;

use kafka_protocol::error::ResponseError;

use crate::cluster::records::PartitionRegistration;
use crate::error::{Error, Result};
use crate::log::batch_sizes::RecentBatchSizes;
use crate::log::producer_state::{AbortedTxn, ProducerStateTable};
use crate::metrics;
use crate::replication::partition::{self as rules, FollowerProgress, Role};

/// A consistent snapshot of a partition's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    pub leader_epoch: i32,
    /// Where read_committed consumers stop: the first offset of the oldest
    /// open transaction, or the high watermark if that is lower.
    pub last_stable_offset: i64,
}

/// The mutable state behind the partition's lock.
#[derive(Debug)]
pub(crate) struct PartitionState {
    pub(crate) log_start_offset: i64,
    pub(crate) log_end_offset: i64,
    pub(crate) high_watermark: i64,
    /// Owned by the writer thread: the offset the next batch gets.
    pub(crate) next_offset: i64,
    /// Bytes of stored batches (for `retention.bytes`).
    pub(crate) size_bytes: i64,
    pub(crate) leader_epoch: i32,
    /// Leader epoch -> first offset written in it.
    pub(crate) epoch_starts: BTreeMap<i32, i64>,
    /// Owned by the writer thread: idempotent producers' epochs and last
    /// batches, checked and updated where offsets are assigned.
    pub(crate) producers: ProducerStateTable,
    /// Owned by the writer thread: aborted transactions, ordered by the
    /// offset of their ABORT marker.
    pub(crate) aborted: VecDeque<AbortedTxn>,
    /// Owned by the writer thread: recent batches' sizes, for reads.
    pub(crate) batch_sizes: RecentBatchSizes,
    /// This node's part, from the metadata image.
    pub(crate) role: Role,
    /// This node's id (set with the role).
    pub(crate) local_id: i32,
    pub(crate) replicas: Vec<i32>,
    pub(crate) isr: Vec<i32>,
    pub(crate) partition_epoch: i32,
    /// Leader only: each follower's progress.
    pub(crate) followers: HashMap<i32, FollowerProgress>,
    /// Leader only: an ISR change is on its way to the controller.
    pub(crate) isr_change_pending: bool,
}

impl PartitionState {
    /// Undoes, in memory, what staging batches from `start` on changed when
    /// their write then failed: numbering resumes at `start`, and the epoch
    /// cache, batch sizes and aborted transactions forget what was never
    /// stored. Without this, an epoch first seen in the failed group would
    /// stay cached but never be written, and the next append in it would
    /// not write it either. (Producer state is put back separately, entry
    /// by entry; `size_bytes` by the caller, who knows the sizes.)
    pub(crate) fn forget_unwritten(&mut self, start: i64) {
        self.next_offset = start;
        self.epoch_starts.retain(|_, first| *first < start);
        self.batch_sizes.truncate_from(start);
        self.aborted.retain(|a| a.last_offset < start);
    }

    /// Where a leader's high watermark may move now (Kafka's rule, see
    /// [`rules::high_watermark`]).
    fn leader_high_watermark(&self) -> i64 {
        rules::high_watermark(
            self.high_watermark,
            self.local_id,
            self.log_end_offset,
            &self.isr,
            &self.followers,
        )
    }

    /// Kafka's rule: the first offset of the oldest open transaction, at
    /// most the high watermark and at least the log start (retention may
    /// have deleted the transaction's first records).
    fn last_stable_offset(&self) -> i64 {
        self.producers
            .first_unstable_offset()
            .map_or(self.high_watermark, |first| {
                first.min(self.high_watermark).max(self.log_start_offset)
            })
    }
}

/// The replica state a leader acts on, copied out of the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaView {
    pub role: Role,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// Counters cached per partition so the hot path skips label lookups.
#[derive(Debug)]
pub(crate) struct PartitionMetrics {
    pub(crate) bytes_in: IntCounter,
    pub(crate) bytes_out: IntCounter,
    pub(crate) messages_in: IntCounter,
    pub(crate) log_end_offset: IntGauge,
    pub(crate) log_start_offset: IntGauge,
    pub(crate) producer_ids: IntGauge,
}

/// A partition hosted on this node.
#[derive(Debug)]
pub struct PartitionLog {
    pub topic_id: Uuid,
    /// The internal topic name (tenant prefix included).
    pub topic: String,
    pub partition: i32,
    pub(crate) state: Mutex<PartitionState>,
    /// Carries the high watermark; every advance wakes the receivers.
    hw_tx: watch::Sender<i64>,
    /// Carries the log end offset, for followers' fetches waiting on it.
    leo_tx: watch::Sender<i64>,
    pub(crate) metrics: PartitionMetrics,
    /// Set when the topic is deleted: appends and reads fail from then on.
    deleted: AtomicBool,
}

/// What the loader found on disk for a partition.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoadedState {
    pub(crate) log_start_offset: i64,
    pub(crate) log_end_offset: i64,
    pub(crate) size_bytes: i64,
    pub(crate) epoch_starts: BTreeMap<i32, i64>,
    pub(crate) producers: ProducerStateTable,
    pub(crate) aborted: VecDeque<AbortedTxn>,
    /// The last high-watermark checkpoint, if any was written.
    pub(crate) high_watermark_checkpoint: Option<i64>,
}

/// The high watermark a replica starts from: its checkpoint, within the
/// log's bounds; with none (a crash before the first one), the log start.
fn initial_high_watermark(loaded: &LoadedState) -> i64 {
    loaded
        .high_watermark_checkpoint
        .unwrap_or(loaded.log_start_offset)
        .clamp(loaded.log_start_offset, loaded.log_end_offset)
}

impl PartitionLog {
    pub(crate) fn new(topic_id: Uuid, topic: &str, partition: i32, loaded: LoadedState) -> Self {
        let partition_label = partition.to_string();
        let labels = [topic, partition_label.as_str()];
        let metrics = PartitionMetrics {
            bytes_in: metrics::BYTES_IN_TOTAL.with_label_values(&[topic]),
            bytes_out: metrics::BYTES_OUT_TOTAL.with_label_values(&[topic]),
            messages_in: metrics::MESSAGES_IN_TOTAL.with_label_values(&[topic]),
            log_end_offset: metrics::LOG_END_OFFSET.with_label_values(&labels),
            log_start_offset: metrics::LOG_START_OFFSET.with_label_values(&labels),
            producer_ids: metrics::PRODUCER_IDS.with_label_values(&labels),
        };
        metrics.log_end_offset.set(loaded.log_end_offset);
        metrics.log_start_offset.set(loaded.log_start_offset);
        metrics.producer_ids.set(loaded.producers.len() as i64);
        let leader_epoch = loaded.epoch_starts.keys().next_back().copied().unwrap_or(0);
        let (hw_tx, _) = watch::channel(initial_high_watermark(&loaded));
        let (leo_tx, _) = watch::channel(loaded.log_end_offset);
        PartitionLog {
            topic_id,
            topic: topic.to_owned(),
            partition,
            state: Mutex::new(PartitionState {
                log_start_offset: loaded.log_start_offset,
                log_end_offset: loaded.log_end_offset,
                // Consumers read only below the high watermark, so a
                // restarted replica starts from its checkpoint, never its
                // log end: records past the checkpoint may exist on this
                // node alone. Leadership moves it up as the ISR catches up
                // (at once where the ISR is this node alone).
                high_watermark: initial_high_watermark(&loaded),
                next_offset: loaded.log_end_offset,
                size_bytes: loaded.size_bytes,
                leader_epoch,
                epoch_starts: loaded.epoch_starts,
                producers: loaded.producers,
                aborted: loaded.aborted,
                batch_sizes: RecentBatchSizes::default(),
                role: Role::None,
                local_id: -1,
                replicas: Vec::new(),
                isr: Vec::new(),
                partition_epoch: -1,
                followers: HashMap::new(),
                isr_change_pending: false,
            }),
            hw_tx,
            leo_tx,
            metrics,
            deleted: AtomicBool::new(false),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, PartitionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The partition's offsets now.
    pub fn offsets(&self) -> Offsets {
        let state = self.lock();
        Offsets {
            log_start_offset: state.log_start_offset,
            high_watermark: state.high_watermark,
            log_end_offset: state.log_end_offset,
            leader_epoch: state.leader_epoch,
            last_stable_offset: state.last_stable_offset(),
        }
    }

    /// The aborted transactions a read_committed fetch from `fetch_offset`
    /// up to `upper` must be told about: those whose ABORT marker lies at
    /// or past the fetch offset and whose first record lies below `upper`
    /// (Kafka's `collectAbortedTransactions`).
    pub fn aborted_between(&self, fetch_offset: i64, upper: i64) -> Vec<AbortedTxn> {
        let state = self.lock();
        let from = state
            .aborted
            .partition_point(|a| a.last_offset < fetch_offset);
        state
            .aborted
            .range(from..)
            .filter(|a| a.first_offset < upper)
            .copied()
            .collect()
    }

    /// A receiver that is woken whenever the high watermark moves.
    pub fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.hw_tx.subscribe()
    }

    /// Wakes the high-watermark watchers if it moved.
    fn publish_high_watermark(&self, high_watermark: i64) {
        let _ = self
            .hw_tx
            .send_if_modified(|hw| std::mem::replace(hw, high_watermark) != high_watermark);
    }

    /// A receiver that is woken whenever the log end offset moves.
    pub fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.leo_tx.subscribe()
    }

    /// Called by the writer once appends up to `next_offset` are durable.
    pub(crate) fn on_durable(&self, end_offset: i64) {
        let (log_end, high_watermark) = {
            let mut state = self.lock();
            state.log_end_offset = state.log_end_offset.max(end_offset);
            state.high_watermark = match state.role {
                Role::Leader => state.leader_high_watermark(),
                // A follower learns it from its leader's fetch answers.
                Role::Follower { .. } => state.high_watermark,
                Role::None => state.log_end_offset,
            };
            (state.log_end_offset, state.high_watermark)
        };
        self.metrics.log_end_offset.set(log_end);
        let _ = self.leo_tx.send_replace(log_end);
        self.publish_high_watermark(high_watermark);
    }

    /// Takes this node's part from the partition's registration. Returns
    /// the role if it or the leader epoch changed (the caller starts or
    /// stops fetching).
    pub fn apply_registration(
        &self,
        local_id: i32,
        registration: &PartitionRegistration,
    ) -> Option<Role> {
        let role = if registration.leader == local_id {
            Role::Leader
        } else if registration.replicas.contains(&local_id) {
            Role::Follower {
                leader: registration.leader,
            }
        } else {
            Role::None
        };
        let now = crate::log::now_ms();
        let (changed, high_watermark) = {
            let mut state = self.lock();
            let changed = state.role != role || state.leader_epoch != registration.leader_epoch;
            state.local_id = local_id;
            state.replicas = registration.replicas.clone();
            state.isr = registration.isr.clone();
            state.partition_epoch = registration.partition_epoch;
            state.isr_change_pending = false;
            if changed {
                state.role = role;
                state.leader_epoch = registration.leader_epoch;
                state.followers = if role == Role::Leader {
                    registration
                        .replicas
                        .iter()
                        .filter(|r| **r != local_id)
                        .map(|r| (*r, FollowerProgress::new(now)))
                        .collect()
                } else {
                    HashMap::new()
                };
            }
            if role == Role::Leader {
                state.high_watermark = state.leader_high_watermark();
            }
            (changed, state.high_watermark)
        };
        self.publish_high_watermark(high_watermark);
        changed.then_some(role)
    }

    /// The replica state, copied.
    pub fn replica_view(&self) -> ReplicaView {
        let state = self.lock();
        ReplicaView {
            role: state.role,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            replicas: state.replicas.clone(),
            isr: state.isr.clone(),
        }
    }

    /// How many replicas are in sync (what `min.insync.replicas` counts).
    pub fn isr_len(&self) -> usize {
        self.lock().isr.len()
    }

    pub fn is_leader(&self) -> bool {
        self.lock().role == Role::Leader
    }

    /// NOT_LEADER_OR_FOLLOWER unless this node leads the partition.
    pub fn check_leader(&self) -> Result<()> {
        match self.lock().role {
            Role::Leader => Ok(()),
            _ => Err(Error::api(ResponseError::NotLeaderOrFollower)),
        }
    }

    /// Leader side of a follower's fetch at `fetch_offset`: records its
    /// progress and advances the high watermark. Returns the ISR to propose
    /// if the follower may join it now.
    pub fn record_follower_fetch(&self, follower: i32, fetch_offset: i64) -> Option<Vec<i32>> {
        let now = crate::log::now_ms();
        let (high_watermark, join) = {
            let mut state = self.lock();
            if state.role != Role::Leader {
                return None;
            }
            let leader_leo = state.log_end_offset;
            let progress = state
                .followers
                .entry(follower)
                .or_insert_with(|| FollowerProgress::new(now));
            progress.on_fetch(fetch_offset, leader_leo, now);
            let progress = *progress;
            metrics::FOLLOWER_LAG
                .with_label_values(&[
                    self.topic.as_str(),
                    &self.partition.to_string(),
                    &follower.to_string(),
                ])
                .set((leader_leo - fetch_offset).max(0));
            state.high_watermark = state.leader_high_watermark();
            let epoch_start = state
                .epoch_starts
                .get(&state.leader_epoch)
                .copied()
                .unwrap_or(state.log_end_offset);
            let join = !state.isr.contains(&follower)
                && !state.isr_change_pending
                && state.replicas.contains(&follower)
                && rules::may_join_isr(&progress, state.high_watermark, epoch_start);
            let join = join.then(|| {
                state.isr_change_pending = true;
                let mut isr = state.isr.clone();
                isr.push(follower);
                isr
            });
            (state.high_watermark, join)
        };
        self.publish_high_watermark(high_watermark);
        join
    }

    /// Leader side: the ISR without followers that lag too long, if any do
    /// and no change is pending (marks one pending).
    pub fn isr_to_shrink(&self, lag_max_ms: i64) -> Option<Vec<i32>> {
        let mut state = self.lock();
        if state.role != Role::Leader || state.isr_change_pending {
            return None;
        }
        let shrunk = rules::shrunk_isr(
            state.local_id,
            &state.isr,
            &state.followers,
            crate::log::now_ms(),
            lag_max_ms,
        )?;
        state.isr_change_pending = true;
        Some(shrunk)
    }

    /// An ISR change failed: allow another attempt.
    pub fn isr_change_failed(&self) {
        self.lock().isr_change_pending = false;
    }

    /// Follower side: the leader's high watermark, capped at what we have.
    pub fn set_follower_high_watermark(&self, leader_high_watermark: i64) {
        let high_watermark = {
            let mut state = self.lock();
            // Taken as it is (it may even move back after a leader change):
            // if this node becomes leader, it starts from the last
            // watermark a leader told it, as in Kafka.
            state.high_watermark = leader_high_watermark
                .min(state.log_end_offset)
                .max(state.log_start_offset);
            state.high_watermark
        };
        self.publish_high_watermark(high_watermark);
    }

    /// Where the first epoch after `epoch` starts, if there is one.
    pub fn start_of_epoch_after(&self, epoch: i32) -> Option<i64> {
        self.lock()
            .epoch_starts
            .range(epoch.saturating_add(1)..)
            .next()
            .map(|(_, start)| *start)
    }

    /// The stored size of the batch at `base`, if it is a recent one.
    pub(crate) fn batch_size_at(&self, base: i64) -> Option<usize> {
        self.lock().batch_sizes.size_at(base)
    }

    /// The epoch of the last batch this log holds (-1 if none).
    pub fn last_epoch(&self) -> i32 {
        self.lock()
            .epoch_starts
            .keys()
            .next_back()
            .copied()
            .unwrap_or(-1)
    }

    /// Raises the log start offset after retention or DeleteRecords.
    pub(crate) fn on_truncated_front(&self, new_start: i64, freed_bytes: i64) {
        let mut state = self.lock();
        if new_start > state.log_start_offset {
            state.log_start_offset = new_start;
            state.size_bytes = (state.size_bytes - freed_bytes).max(0);
            self.metrics.log_start_offset.set(new_start);
        }
    }

    /// The leader epoch that covers `epoch`, and where it ends, as
    /// OffsetForLeaderEpoch answers: the largest epoch <= the requested one,
    /// with the start offset of the next epoch (or the log end offset).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let state = self.lock();
        let (&found, _) = state.epoch_starts.range(..=epoch).next_back()?;
        let end = state
            .epoch_starts
            .range(found + 1..)
            .next()
            .map(|(_, &start)| start)
            .unwrap_or(state.log_end_offset);
        Some((found, end))
    }

    /// The leader epoch in which `offset` was written, from the epoch cache.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        let state = self.lock();
        state
            .epoch_starts
            .iter()
            .rev()
            .find(|(_, &start)| start <= offset)
            .map(|(&epoch, _)| epoch)
    }

    /// Bytes of stored batches.
    pub fn size_bytes(&self) -> i64 {
        self.lock().size_bytes
    }

    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
        let _ = metrics::LOG_END_OFFSET
            .remove_label_values(&[&self.topic, &self.partition.to_string()]);
        let _ = metrics::LOG_START_OFFSET
            .remove_label_values(&[&self.topic, &self.partition.to_string()]);
        let _ =
            metrics::PRODUCER_IDS.remove_label_values(&[&self.topic, &self.partition.to_string()]);
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// How many idempotent producer ids have state in this partition.
    pub fn producer_count(&self) -> usize {
        self.lock().producers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with_epochs(epochs: &[(i32, i64)], end: i64) -> PartitionLog {
        PartitionLog::new(
            Uuid::from_u128(1),
            "t-epochs",
            0,
            LoadedState {
                log_end_offset: end,
                epoch_starts: epochs.iter().copied().collect(),
                ..LoadedState::default()
            },
        )
    }

    #[test]
    fn end_offset_for_epoch_follows_kafka() {
        let log = log_with_epochs(&[(0, 0), (2, 50), (5, 80)], 100);
        assert_eq!(log.end_offset_for_epoch(0), Some((0, 50)));
        assert_eq!(log.end_offset_for_epoch(1), Some((0, 50)));
        assert_eq!(log.end_offset_for_epoch(2), Some((2, 80)));
        assert_eq!(log.end_offset_for_epoch(7), Some((5, 100)));
        assert_eq!(log.end_offset_for_epoch(-1), None);
        assert_eq!(log.offsets().leader_epoch, 5);
    }

    #[test]
    fn forgetting_unwritten_batches_keeps_what_came_before() {
        let log = log_with_epochs(&[(0, 0), (3, 40)], 60);
        let mut state = log.lock();
        // A group staged [60, 90): a new epoch at 70, two batches, an abort.
        state.next_offset = 90;
        let _ = state.epoch_starts.insert(4, 70);
        state.batch_sizes.record(50, 100);
        state.batch_sizes.record(60, 200);
        state.batch_sizes.record(70, 300);
        state.aborted.push_back(AbortedTxn {
            producer_id: 7,
            first_offset: 55,
            last_offset: 59,
        });
        state.aborted.push_back(AbortedTxn {
            producer_id: 8,
            first_offset: 61,
            last_offset: 80,
        });
        state.forget_unwritten(60);
        assert_eq!(state.next_offset, 60);
        assert_eq!(
            state
                .epoch_starts
                .iter()
                .map(|(e, s)| (*e, *s))
                .collect::<Vec<_>>(),
            vec![(0, 0), (3, 40)]
        );
        assert_eq!(state.batch_sizes.size_at(50), Some(100));
        assert_eq!(state.batch_sizes.size_at(60), None);
        assert_eq!(state.batch_sizes.size_at(70), None);
        assert_eq!(
            state
                .aborted
                .iter()
                .map(|a| a.producer_id)
                .collect::<Vec<_>>(),
            vec![7]
        );
    }

    #[test]
    fn durable_appends_wake_watchers() {
        let log = log_with_epochs(&[], 0);
        let mut rx = log.subscribe_high_watermark();
        log.on_durable(10);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 10);
        assert_eq!(log.offsets().high_watermark, 10);
    }
}
