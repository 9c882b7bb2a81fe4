//! The log writer thread: the only code that writes partition data.
//!
//! Producers on every connection hand appends to one channel. The thread
//! takes everything queued (up to a size cap), assigns offsets, patches the
//! batches, and commits them in one RocksDB `WriteBatch` with one fsync when
//! the flush policy is durable. While that fsync runs, new appends queue up
//! and share the next one: group commit, so concurrent producers share
//! fsyncs instead of paying one each. Only after the write returns do the
//! partitions' end offsets advance and the waiting requests get answers.
//!
//! Under the durable policy the fsync runs on a second thread, the syncer:
//! the writer hands it each written group and goes on writing the next one
//! while the write-ahead log is being synced, so memtable inserts and fsyncs
//! overlap. A group is acknowledged (and becomes readable) only after a
//! sync that started after its write returned.
//!
//! Idempotent producers are checked here too, because this is where the
//! order of appends and their offsets are fixed: a batch is checked against
//! its producer's state (see [`crate::log::producer_state`]) right before it
//! gets its offsets, a retried duplicate is answered with the original
//! offsets without writing anything, and the state of every producer a
//! group touched is written in the group's `WriteBatch`, so that data and
//! producer state are durable together. A failed write puts the producers'
//! previous state back.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use rocksdb::WriteBatch;
use tokio::sync::oneshot;
use tracing::{debug, error, info};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::log::batch::{self, BatchHeader};
use crate::log::db::Db;
use crate::log::keys::{self, MetaKind, CF_LOG, CF_PARTITION_META};
use crate::log::partition::PartitionLog;
use crate::log::producer_state::{self, AbortedTxn, Check, ProducerBatch, ProducerStateEntry};
use crate::log::reclaim::ReclaimHandle;
use crate::metrics;

/// Most bytes of appends committed in one write.
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;
/// Most commands committed in one write.
const MAX_GROUP_LEN: usize = 4096;

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_start_offset: i64,
}

/// Who wrote a batch (Kafka's `AppendOrigin`): clients may not write
/// control batches; the broker writes transaction markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    Client,
    /// A coordinator: its own records, and transaction markers.
    Coordinator,
}

/// One batch to append to one partition.
#[derive(Debug)]
pub struct AppendJob {
    pub partition: Arc<PartitionLog>,
    pub records: Bytes,
    pub max_message_bytes: i32,
    pub origin: AppendOrigin,
    pub reply: oneshot::Sender<Result<AppendResult>>,
}

/// Raise a partition's log start offset, deleting whole batches below it.
#[derive(Debug)]
pub struct TruncateFront {
    pub partition: Arc<PartitionLog>,
    /// The new log start offset (may fall inside a kept batch).
    pub new_start: i64,
    /// Batches with a base offset below this are deleted.
    pub delete_below: i64,
    pub freed_bytes: i64,
    pub reply: oneshot::Sender<Result<i64>>,
}

/// Batches fetched from the leader, offsets already assigned, to store as
/// they are (a follower's append).
#[derive(Debug)]
pub struct ReplicaAppend {
    pub partition: Arc<PartitionLog>,
    pub records: Bytes,
    /// Answered with the new log end offset once durable.
    pub reply: oneshot::Sender<Result<i64>>,
}

/// Cut a follower's log back to `offset` (its diverging point).
#[derive(Debug)]
pub struct TruncateBack {
    pub partition: Arc<PartitionLog>,
    pub offset: i64,
    /// The producer state rebuilt from the batches that stay.
    pub producers: crate::log::producer_state::ProducerStateTable,
    pub reply: oneshot::Sender<Result<()>>,
}

#[derive(Debug)]
enum Command {
    Append(AppendJob),
    Replica(ReplicaAppend),
    TruncateBack(TruncateBack),
    TruncateFront(TruncateFront),
    Delete(DeleteRange),
    /// Forget producers idle for `expiration_ms` or longer, on disk too.
    ExpireProducers {
        partitions: Vec<Arc<PartitionLog>>,
        expiration_ms: i64,
    },
    /// Write these partitions' high watermarks as their checkpoints.
    CheckpointHighWatermarks(Vec<(Arc<PartitionLog>, i64)>),
    Shutdown,
}

/// Delete every key of a range of partitions (a topic, or one partition),
/// in the log and partition-metadata column families.
#[derive(Debug)]
struct DeleteRange {
    from: Vec<u8>,
    to: Vec<u8>,
    reply: oneshot::Sender<Result<()>>,
}

/// Handle to the writer thread.
#[derive(Debug)]
pub struct LogWriter {
    sender: mpsc::Sender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The syncer thread, under the durable policy.
    syncer: Mutex<Option<JoinHandle<()>>>,
}

impl LogWriter {
    /// Starts the thread. `sync` fsyncs every write (the durable policy).
    /// Deletions it commits are handed to `reclaim` to free their disk.
    pub fn start(db: Arc<Db>, sync: bool, reclaim: ReclaimHandle) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel();
        let (to_syncer, syncer) = if sync {
            let (to_syncer, from_writer) = mpsc::channel();
            let syncer_db = db.clone();
            let syncer_reclaim = reclaim.clone();
            let handle = std::thread::Builder::new()
                .name("log-syncer".to_owned())
                .spawn(move || run_syncer(&syncer_db, &from_writer, &syncer_reclaim))?;
            (Some(to_syncer), Some(handle))
        } else {
            (None, None)
        };
        // The writer owns the syncer's sender: when the writer stops, the
        // syncer syncs what it was handed and stops too.
        let thread = std::thread::Builder::new()
            .name("log-writer".to_owned())
            .spawn(move || run(&db, &receiver, to_syncer.as_ref(), &reclaim))?;
        Ok(LogWriter {
            sender,
            thread: Mutex::new(Some(thread)),
            syncer: Mutex::new(syncer),
        })
    }

    fn send(&self, command: Command) -> Result<()> {
        self.sender
            .send(command)
            .map_err(|_| Error::api_msg(ResponseError::KafkaStorageError, "log writer stopped"))
    }

    /// Queues an append. Ordering is fixed when this returns: appends to one
    /// partition are committed in the order they were submitted.
    pub fn append(&self, job: AppendJob) {
        if let Err(Command::Append(job)) = self.sender.send(Command::Append(job)).map_err(|e| e.0) {
            let _ = job.reply.send(Err(Error::api_msg(
                ResponseError::KafkaStorageError,
                "log writer stopped",
            )));
        }
    }

    /// Queues a follower's append of batches fetched from the leader.
    pub fn append_replica(&self, job: ReplicaAppend) {
        if let Err(Command::Replica(job)) = self.sender.send(Command::Replica(job)).map_err(|e| e.0)
        {
            let _ = job.reply.send(Err(Error::api_msg(
                ResponseError::KafkaStorageError,
                "log writer stopped",
            )));
        }
    }

    /// Queues a follower's truncation to its diverging point.
    pub fn truncate_back(&self, job: TruncateBack) -> Result<()> {
        self.send(Command::TruncateBack(job))
    }

    pub fn truncate_front(&self, job: TruncateFront) -> Result<()> {
        self.send(Command::TruncateFront(job))
    }

    /// Queues the deletion of all of a topic's data.
    pub fn delete_topic(&self, topic_id: Uuid, reply: oneshot::Sender<Result<()>>) -> Result<()> {
        self.send(Command::Delete(DeleteRange {
            from: keys::partition_prefix(topic_id, 0).to_vec(),
            to: keys::topic_end(topic_id).to_vec(),
            reply,
        }))
    }

    /// Queues the deletion of one partition's data (a replica moved away).
    pub fn delete_partition(
        &self,
        topic_id: Uuid,
        partition: i32,
        reply: oneshot::Sender<Result<()>>,
    ) -> Result<()> {
        let to = match partition.checked_add(1) {
            Some(next) => keys::partition_prefix(topic_id, next).to_vec(),
            None => keys::topic_end(topic_id).to_vec(),
        };
        self.send(Command::Delete(DeleteRange {
            from: keys::partition_prefix(topic_id, partition).to_vec(),
            to,
            reply,
        }))
    }

    /// Queues the expiration of idle producers (`producer.id.expiration.ms`)
    /// in these partitions.
    pub fn expire_producers(
        &self,
        partitions: Vec<Arc<PartitionLog>>,
        expiration_ms: i64,
    ) -> Result<()> {
        self.send(Command::ExpireProducers {
            partitions,
            expiration_ms,
        })
    }

    /// Queues high-watermark checkpoints (partition, high watermark). Not
    /// fsynced on their own: a checkpoint lost in a crash leaves an older,
    /// lower one, which is still safe to start from.
    pub fn checkpoint_high_watermarks(
        &self,
        checkpoints: Vec<(Arc<PartitionLog>, i64)>,
    ) -> Result<()> {
        self.send(Command::CheckpointHighWatermarks(checkpoints))
    }

    /// Commits everything queued, then stops the thread. Blocking.
    pub fn shutdown(&self) {
        let _ = self.sender.send(Command::Shutdown);
        for (name, thread) in [("writer", &self.thread), ("syncer", &self.syncer)] {
            let handle = thread.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(handle) = handle {
                if handle.join().is_err() {
                    error!(thread = name, "log thread panicked");
                }
            }
        }
    }
}

/// A writer dropped without [`LogWriter::shutdown`] (a broker that was never
/// stopped, as in a test that ends early) still commits what was queued and
/// joins its threads, so their handles on the database are gone before the
/// process exits: RocksDB aborts the process ("pthread lock: Invalid
/// argument") if a database is still open while its static state is torn
/// down. After an explicit shutdown this finds nothing left to join.
impl Drop for LogWriter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(
    db: &Db,
    receiver: &mpsc::Receiver<Command>,
    syncer: Option<&mpsc::Sender<Committed>>,
    reclaim: &ReclaimHandle,
) {
    let mut stopping = false;
    while !stopping {
        let Ok(first) = receiver.recv() else { break };
        let mut group = Vec::new();
        let mut bytes = 0usize;
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Shutdown => stopping = true,
                Command::Append(job) => {
                    bytes += job.records.len();
                    group.push(Command::Append(job));
                }
                Command::Replica(job) => {
                    bytes += job.records.len();
                    group.push(Command::Replica(job));
                }
                other => group.push(other),
            }
            if !stopping && bytes < MAX_GROUP_BYTES && group.len() < MAX_GROUP_LEN {
                next = receiver.try_recv().ok();
            }
        }
        if !group.is_empty() {
            commit(db, group, syncer, reclaim);
        }
    }
    info!("log writer stopped");
}

/// A group written to RocksDB, waiting for its answers (and, under the
/// durable policy, for the fsync that makes it durable).
struct Committed {
    staged: Vec<Staged>,
    replicas: Vec<StagedReplica>,
    truncated: Vec<TruncateBack>,
    truncates: Vec<TruncateFront>,
    deletes: Vec<DeleteRange>,
}

/// Syncs the write-ahead log for every group handed over since the last
/// sync, then answers them in order.
fn run_syncer(db: &Db, receiver: &mpsc::Receiver<Committed>, reclaim: &ReclaimHandle) {
    while let Ok(first) = receiver.recv() {
        let mut groups = vec![first];
        groups.extend(receiver.try_iter());
        let started = Instant::now();
        let outcome = db.sync_wal();
        metrics::LOG_SYNC_SECONDS.observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(()) => {
                for group in groups {
                    finish_replicas(group.replicas, group.truncated);
                    finish_ok(group.staged, group.truncates, group.deletes, reclaim);
                }
            }
            Err(e) => {
                // Written but not durable, with later writes queued behind:
                // the log can no longer keep its promise. Kafka halts on a
                // failed log directory; so do we, after answering.
                error!(error = %e, "fsync of the write-ahead log failed, stopping the broker");
                for group in groups {
                    fail_replicas(group.replicas, group.truncated);
                    fail_all(group.staged, group.truncates, group.deletes);
                }
                std::process::exit(70);
            }
        }
    }
    info!("log syncer stopped");
}

/// Answers every request of a group with a storage error.
fn fail_all(staged: Vec<Staged>, truncates: Vec<TruncateFront>, deletes: Vec<DeleteRange>) {
    for s in staged {
        let _ = s
            .job_reply
            .send(Err(Error::api(ResponseError::KafkaStorageError)));
    }
    for t in truncates {
        let _ = t
            .reply
            .send(Err(Error::api(ResponseError::KafkaStorageError)));
    }
    for d in deletes {
        let _ = d
            .reply
            .send(Err(Error::api(ResponseError::KafkaStorageError)));
    }
}

/// Milliseconds since the Unix epoch, for producer expiration.
/// A producer in a partition: topic id, partition index, producer id.
type ProducerKey = (Uuid, i32, i64);

/// The producers a group changed, with the entry each had before the group
/// (to put back if the write fails) and the partition that holds it.
#[derive(Default)]
struct TouchedProducers {
    before: HashMap<ProducerKey, (Arc<PartitionLog>, Option<ProducerStateEntry>)>,
}

impl TouchedProducers {
    /// Remembers a producer's entry before the group's first change to it.
    fn note(
        &mut self,
        partition: &Arc<PartitionLog>,
        producer_id: i64,
        current: Option<&ProducerStateEntry>,
    ) {
        let _ = self
            .before
            .entry((partition.topic_id, partition.partition, producer_id))
            .or_insert_with(|| (partition.clone(), current.cloned()));
    }

    /// Puts every touched producer's entry back as it was before the group.
    fn undo(self) {
        for ((_, _, producer_id), (partition, previous)) in self.before {
            let mut state = partition.lock();
            state.producers.restore(producer_id, previous);
            partition
                .metrics
                .producer_ids
                .set(state.producers.len() as i64);
        }
    }
}

/// A follower's staged append waiting for the write to finish.
struct StagedReplica {
    reply: oneshot::Sender<Result<i64>>,
    partition: Arc<PartitionLog>,
    end_offset: i64,
    size: i64,
}

fn finish_replicas(replicas: Vec<StagedReplica>, truncated: Vec<TruncateBack>) {
    for t in truncated {
        let _ = t.reply.send(Ok(()));
    }
    for r in replicas {
        r.partition.on_durable(r.end_offset);
        let _ = r.reply.send(Ok(r.end_offset));
    }
}

fn fail_replicas(replicas: Vec<StagedReplica>, truncated: Vec<TruncateBack>) {
    for t in truncated {
        let _ = t
            .reply
            .send(Err(Error::api(ResponseError::KafkaStorageError)));
    }
    for r in replicas {
        let _ = r
            .reply
            .send(Err(Error::api(ResponseError::KafkaStorageError)));
    }
}

/// Stages a follower's append: every whole batch in `records` goes in as
/// the leader numbered it, the epoch cache and producer state follow the
/// batches. Returns the new end offset and bytes added.
fn stage_replica(
    db: &Db,
    write: &mut WriteBatch,
    job: &ReplicaAppend,
    now_ms: i64,
    producers: &mut TouchedProducers,
) -> Result<(i64, i64)> {
    let partition = &job.partition;
    if partition.is_deleted() {
        return Err(Error::api(ResponseError::UnknownTopicOrPartition));
    }
    let log_cf = db.cf(CF_LOG)?;
    let meta_cf = db.cf(CF_PARTITION_META)?;
    let mut state = partition.lock();
    let mut at = 0usize;
    let mut added = 0i64;
    let bytes = &job.records;
    while at + batch::HEADER_LEN <= bytes.len() {
        let Some(header) = BatchHeader::new(&bytes[at..]) else {
            break;
        };
        let total = 12 + header.batch_length().max(0) as usize;
        if header.batch_length() < 0 || at + total > bytes.len() {
            // A partial batch at the end of a fetch: take it next time.
            break;
        }
        let base = header.base_offset();
        let last = header.last_offset();
        let epoch = header.partition_leader_epoch();
        if base < state.next_offset {
            // Already have it (a repeated fetch): skip.
            at += total;
            continue;
        }
        if state
            .epoch_starts
            .keys()
            .next_back()
            .is_none_or(|e| *e < epoch)
        {
            let _ = state.epoch_starts.insert(epoch, base);
            write.put_cf(
                meta_cf,
                keys::leader_epoch_key(partition.topic_id, partition.partition, epoch),
                base.to_be_bytes(),
            );
        }
        if let Some(producer) = ProducerBatch::from_header(&header, true)? {
            // Noted, so a failed write puts it back; its entry is staged
            // with the group's others (`stage_producer_states`).
            producers.note(
                partition,
                producer.producer_id,
                state.producers.get(producer.producer_id),
            );
            if let Some(aborted) = state.producers.record(&producer, base, last, now_ms) {
                stage_aborted(meta_cf, write, partition, &mut state, aborted);
            }
        }
        let key = keys::log_key(partition.topic_id, partition.partition, base);
        write.put_cf(log_cf, key, &bytes[at..at + total]);
        state.batch_sizes.record(base, total);
        state.next_offset = last + 1;
        state.size_bytes += total as i64;
        added += total as i64;
        partition.metrics.bytes_in.inc_by(total as u64);
        at += total;
    }
    let size_key = keys::meta_key(partition.topic_id, partition.partition, MetaKind::SizeBytes);
    write.put_cf(meta_cf, size_key, state.size_bytes.to_be_bytes());
    Ok((state.next_offset, added))
}

/// Stages a follower's truncation to `offset`: batches from there on,
/// epochs starting there or later, and producer state go.
fn stage_truncate_back(db: &Db, write: &mut WriteBatch, job: &mut TruncateBack) -> Result<()> {
    let p = &job.partition;
    let log_cf = db.cf(CF_LOG)?;
    let meta_cf = db.cf(CF_PARTITION_META)?;
    write.delete_range_cf(
        log_cf,
        keys::log_key(p.topic_id, p.partition, job.offset),
        keys::log_key(p.topic_id, p.partition, i64::MAX),
    );
    let mut state = p.lock();
    let dropped: Vec<i32> = state
        .epoch_starts
        .iter()
        .filter(|(_, start)| **start >= job.offset)
        .map(|(epoch, _)| *epoch)
        .collect();
    for epoch in dropped {
        let _ = state.epoch_starts.remove(&epoch);
        write.delete_cf(
            meta_cf,
            keys::leader_epoch_key(p.topic_id, p.partition, epoch),
        );
    }
    for (producer_id, _) in state.producers.entries() {
        write.delete_cf(
            meta_cf,
            keys::producer_state_key(p.topic_id, p.partition, producer_id),
        );
    }
    // Markers from the cut point on are gone, and the aborts they recorded.
    write.delete_range_cf(
        meta_cf,
        keys::aborted_txn_key(p.topic_id, p.partition, job.offset),
        keys::aborted_txn_key(p.topic_id, p.partition, i64::MAX),
    );
    let offset = job.offset;
    state.aborted.retain(|a| a.last_offset < offset);
    state.batch_sizes.truncate_from(offset);
    state.producers = std::mem::take(&mut job.producers);
    for (producer_id, entry) in state.producers.entries() {
        let key = keys::producer_state_key(p.topic_id, p.partition, producer_id);
        write.put_cf(meta_cf, key, producer_state::encode_entry(entry));
    }
    state.next_offset = job.offset;
    state.log_end_offset = state.log_end_offset.min(job.offset);
    state.high_watermark = state.high_watermark.min(job.offset);
    Ok(())
}

/// A staged append waiting for the write to finish.
struct Staged {
    job_reply: oneshot::Sender<Result<AppendResult>>,
    partition: Arc<PartitionLog>,
    result: AppendResult,
    size: i64,
}

/// Each partition's next offset before a group, by partition.
type GroupStarts = HashMap<(Uuid, i32), (Arc<PartitionLog>, i64)>;

/// Remembers where `partition` stood before the group's first change to it.
fn remember_start(starts: &mut GroupStarts, partition: &Arc<PartitionLog>) {
    let _ = starts
        .entry((partition.topic_id, partition.partition))
        .or_insert_with(|| (partition.clone(), partition.lock().next_offset));
}

fn commit(
    db: &Db,
    group: Vec<Command>,
    syncer: Option<&mpsc::Sender<Committed>>,
    reclaim: &ReclaimHandle,
) {
    // Sized up front: growing a multi-megabyte batch by doubling copies it
    // repeatedly and faults in fresh pages each time.
    let payload: usize = group
        .iter()
        .map(|c| match c {
            Command::Append(job) => job.records.len() + keys::LOG_KEY_LEN + 16,
            Command::Replica(job) => job.records.len() + 1024,
            _ => 64,
        })
        .sum();
    let mut write = WriteBatch::with_capacity_bytes(payload + 1024);
    let mut staged = Vec::new();
    let mut truncates = Vec::new();
    let mut deletes = Vec::new();
    let mut touched: HashMap<(Uuid, i32), Arc<PartitionLog>> = HashMap::new();
    // Each partition's next offset before this group: where to resume if
    // the write fails. Not the log end offset, which lags behind groups
    // already written and still waiting for their fsync.
    let mut starts: GroupStarts = HashMap::new();
    let mut producers = TouchedProducers::default();
    let mut replicas = Vec::new();
    let mut truncated = Vec::new();
    let now_ms = crate::log::now_ms();
    for command in group {
        match command {
            Command::Replica(job) => {
                remember_start(&mut starts, &job.partition);
                match stage_replica(db, &mut write, &job, now_ms, &mut producers) {
                    Ok((end_offset, size)) => replicas.push(StagedReplica {
                        reply: job.reply,
                        partition: job.partition,
                        end_offset,
                        size,
                    }),
                    Err(e) => {
                        let _ = job.reply.send(Err(e));
                    }
                }
            }
            Command::TruncateBack(mut job) => match stage_truncate_back(db, &mut write, &mut job) {
                Ok(()) => truncated.push(job),
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                }
            },
            Command::Append(job) => {
                remember_start(&mut starts, &job.partition);
                match stage_append(db, &mut write, &job, now_ms, &mut producers) {
                    Ok((result, size)) => {
                        let _ = touched
                            .entry((job.partition.topic_id, job.partition.partition))
                            .or_insert_with(|| job.partition.clone());
                        staged.push(Staged {
                            job_reply: job.reply,
                            partition: job.partition,
                            result,
                            size,
                        });
                    }
                    Err(e) => {
                        let _ = job.reply.send(Err(e));
                    }
                }
            }
            Command::TruncateFront(job) => match stage_truncate(db, &mut write, &job) {
                Ok(()) => truncates.push(job),
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                }
            },
            Command::Delete(delete) => match stage_delete(db, &mut write, &delete) {
                Ok(()) => deletes.push(delete),
                Err(e) => {
                    let _ = delete.reply.send(Err(e));
                }
            },
            Command::ExpireProducers {
                partitions,
                expiration_ms,
            } => {
                if let Err(e) = stage_expire(db, &mut write, &partitions, now_ms, expiration_ms) {
                    error!(error = %e, "staging producer expiration failed");
                }
            }
            Command::CheckpointHighWatermarks(checkpoints) => {
                if let Err(e) = stage_high_watermarks(db, &mut write, &checkpoints) {
                    error!(error = %e, "staging high-watermark checkpoints failed");
                }
            }
            Command::Shutdown => {}
        }
    }
    if let Err(e) = stage_sizes(db, &mut write, touched.values()) {
        error!(error = %e, "staging partition sizes failed");
    }
    if let Err(e) = stage_producer_states(db, &mut write, &producers) {
        error!(error = %e, "staging producer states failed");
    }
    let appends = staged.len();
    let started = Instant::now();
    // Never fsync here: under the durable policy the syncer does, while
    // this thread writes the next group.
    let outcome = db.write(write, false);
    metrics::LOG_WRITE_SECONDS.observe(started.elapsed().as_secs_f64());
    metrics::LOG_WRITE_APPENDS.observe(appends as f64);
    match outcome {
        Ok(()) => {
            let committed = Committed {
                staged,
                replicas,
                truncated,
                truncates,
                deletes,
            };
            match syncer {
                None => {
                    finish_replicas(committed.replicas, committed.truncated);
                    finish_ok(
                        committed.staged,
                        committed.truncates,
                        committed.deletes,
                        reclaim,
                    )
                }
                Some(syncer) => {
                    if let Err(unsent) = syncer.send(committed) {
                        error!("log syncer stopped; failing the appends it would have synced");
                        let c = unsent.0;
                        fail_replicas(c.replicas, c.truncated);
                        fail_all(c.staged, c.truncates, c.deletes);
                    }
                }
            }
        }
        Err(e) => {
            error!(error = %e, "log write failed");
            // Leaders resume numbering where the group began; followers
            // refetch from there.
            for (partition, start) in starts.values() {
                partition.lock().forget_unwritten(*start);
            }
            for s in &staged {
                s.partition.lock().size_bytes -= s.size;
            }
            for r in &replicas {
                r.partition.lock().size_bytes -= r.size;
            }
            producers.undo();
            fail_replicas(replicas, truncated);
            fail_all(staged, truncates, deletes);
        }
    }
}

fn finish_ok(
    staged: Vec<Staged>,
    truncates: Vec<TruncateFront>,
    deletes: Vec<DeleteRange>,
    reclaim: &ReclaimHandle,
) {
    // Advance each partition once, to the end of its last staged batch,
    // before answering anyone, so an acknowledged record is always readable.
    let mut ends: HashMap<(Uuid, i32), (Arc<PartitionLog>, i64)> = HashMap::new();
    for s in &staged {
        let entry = ends
            .entry((s.partition.topic_id, s.partition.partition))
            .or_insert_with(|| (s.partition.clone(), 0));
        entry.1 = entry.1.max(s.result.last_offset + 1);
    }
    for (partition, end) in ends.values() {
        partition.on_durable(*end);
    }
    for s in staged {
        let _ = s.job_reply.send(Ok(s.result));
    }
    if truncates.iter().any(|t| t.freed_bytes > 0) {
        // Batches deleted from the front may leave garbage in blob files
        // shared with other partitions.
        reclaim.check();
    }
    for t in truncates {
        t.partition.on_truncated_front(t.new_start, t.freed_bytes);
        metrics::LOG_DELETED_BYTES_TOTAL.inc_by(t.freed_bytes.max(0) as u64);
        let _ = t.reply.send(Ok(t.new_start));
    }
    for d in deletes {
        // Range deletes leave tombstones; a compaction frees the disk. It
        // runs on the reclaimer's thread: this one serves every producer.
        reclaim.compact(d.from, d.to);
        let _ = d.reply.send(Ok(()));
    }
}

/// Stages one append: checks its producer's sequence, assigns offsets,
/// patches the batch and puts it in `write`. Returns where it landed and
/// the bytes added; a duplicate returns its original offsets and 0 bytes.
fn stage_append(
    db: &Db,
    write: &mut WriteBatch,
    job: &AppendJob,
    now_ms: i64,
    producers: &mut TouchedProducers,
) -> Result<(AppendResult, i64)> {
    let partition = &job.partition;
    if partition.is_deleted() {
        return Err(Error::api(ResponseError::UnknownTopicOrPartition));
    }
    let header = batch::validate_produce(
        &job.records,
        job.max_message_bytes,
        job.origin == AppendOrigin::Coordinator,
    )?;
    let producer = ProducerBatch::from_header(&header, job.origin == AppendOrigin::Coordinator)?;
    let count = i64::from(header.record_count());
    let size = job.records.len() as i64;
    let (base_offset, epoch, log_start_offset, new_epoch) = {
        let mut state = partition.lock();
        if let Some(producer) = &producer {
            if let Check::Duplicate(original) = state.producers.check(producer)? {
                debug!(topic = %partition.topic, partition = partition.partition,
                    producer_id = producer.producer_id, first_seq = producer.first_seq,
                    base_offset = original.first_offset, "duplicate batch answered with its original offsets");
                metrics::LOG_DUPLICATE_BATCHES_TOTAL.inc();
                let result = AppendResult {
                    base_offset: original.first_offset,
                    last_offset: original.last_offset,
                    log_start_offset: state.log_start_offset,
                };
                return Ok((result, 0));
            }
        }
        let base = state.next_offset;
        if let Some(producer) = &producer {
            producers.note(
                partition,
                producer.producer_id,
                state.producers.get(producer.producer_id),
            );
            if let Some(aborted) = state
                .producers
                .record(producer, base, base + count - 1, now_ms)
            {
                stage_aborted(
                    db.cf(CF_PARTITION_META)?,
                    write,
                    partition,
                    &mut state,
                    aborted,
                );
            }
            partition
                .metrics
                .producer_ids
                .set(state.producers.len() as i64);
        }
        state.next_offset = base + count;
        state.size_bytes += size;
        state.batch_sizes.record(base, job.records.len());
        let epoch = state.leader_epoch;
        let new_epoch = !state.epoch_starts.contains_key(&epoch);
        if new_epoch {
            let _ = state.epoch_starts.insert(epoch, base);
        }
        (base, epoch, state.log_start_offset, new_epoch)
    };
    let mut stored = job.records.to_vec();
    batch::patch(&mut stored, base_offset, epoch);
    let key = keys::log_key(partition.topic_id, partition.partition, base_offset);
    write.put_cf(db.cf(CF_LOG)?, key, stored);
    if new_epoch {
        let epoch_key = keys::leader_epoch_key(partition.topic_id, partition.partition, epoch);
        write.put_cf(
            db.cf(CF_PARTITION_META)?,
            epoch_key,
            base_offset.to_be_bytes(),
        );
    }
    partition.metrics.bytes_in.inc_by(size as u64);
    partition.metrics.messages_in.inc_by(count as u64);
    Ok((
        AppendResult {
            base_offset,
            last_offset: base_offset + count - 1,
            log_start_offset,
        },
        size,
    ))
}

fn stage_sizes<'a>(
    db: &Db,
    write: &mut WriteBatch,
    partitions: impl Iterator<Item = &'a Arc<PartitionLog>>,
) -> Result<()> {
    let cf = db.cf(CF_PARTITION_META)?;
    // A partition deleted in this group keeps no keys: its range delete is
    // staged already, and a put after it would bring a key back.
    for partition in partitions.filter(|p| !p.is_deleted()) {
        let size = partition.lock().size_bytes;
        let key = keys::meta_key(partition.topic_id, partition.partition, MetaKind::SizeBytes);
        write.put_cf(cf, key, size.to_be_bytes());
    }
    Ok(())
}

fn stage_high_watermarks(
    db: &Db,
    write: &mut WriteBatch,
    checkpoints: &[(Arc<PartitionLog>, i64)],
) -> Result<()> {
    let cf = db.cf(CF_PARTITION_META)?;
    // A deleted partition keeps no keys (see stage_sizes).
    for (partition, high_watermark) in checkpoints.iter().filter(|(p, _)| !p.is_deleted()) {
        let key = keys::meta_key(
            partition.topic_id,
            partition.partition,
            MetaKind::HighWatermark,
        );
        write.put_cf(cf, key, high_watermark.to_be_bytes());
    }
    Ok(())
}

/// Puts the current entry of every producer the group changed, in the same
/// `WriteBatch` as the data, so both are durable together.
fn stage_producer_states(
    db: &Db,
    write: &mut WriteBatch,
    producers: &TouchedProducers,
) -> Result<()> {
    let cf = db.cf(CF_PARTITION_META)?;
    for (&(topic_id, index, producer_id), (partition, _)) in &producers.before {
        if partition.is_deleted() {
            continue;
        }
        // No entry: it expired later in this group, whose delete is staged.
        if let Some(entry) = partition.lock().producers.get(producer_id) {
            let key = keys::producer_state_key(topic_id, index, producer_id);
            write.put_cf(cf, key, producer_state::encode_entry(entry));
        }
    }
    Ok(())
}

/// Forgets the idle producers of `partitions` and deletes their keys.
fn stage_expire(
    db: &Db,
    write: &mut WriteBatch,
    partitions: &[Arc<PartitionLog>],
    now_ms: i64,
    expiration_ms: i64,
) -> Result<()> {
    let cf = db.cf(CF_PARTITION_META)?;
    for partition in partitions.iter().filter(|p| !p.is_deleted()) {
        let mut state = partition.lock();
        let expired = state.producers.remove_expired(now_ms, expiration_ms);
        for &producer_id in &expired {
            let key =
                keys::producer_state_key(partition.topic_id, partition.partition, producer_id);
            write.delete_cf(cf, key);
        }
        partition
            .metrics
            .producer_ids
            .set(state.producers.len() as i64);
        if !expired.is_empty() {
            debug!(topic = %partition.topic, partition = partition.partition,
                expired = expired.len(), "expired idle producer ids");
        }
    }
    Ok(())
}

fn stage_truncate(db: &Db, write: &mut WriteBatch, job: &TruncateFront) -> Result<()> {
    let p = &job.partition;
    let from = keys::log_key(p.topic_id, p.partition, 0);
    let to = keys::log_key(p.topic_id, p.partition, job.delete_below);
    write.delete_range_cf(db.cf(CF_LOG)?, from, to);
    let meta = db.cf(CF_PARTITION_META)?;
    let start_key = keys::meta_key(p.topic_id, p.partition, MetaKind::LogStartOffset);
    write.put_cf(meta, start_key, job.new_start.to_be_bytes());
    let size = (p.lock().size_bytes - job.freed_bytes).max(0);
    let size_key = keys::meta_key(p.topic_id, p.partition, MetaKind::SizeBytes);
    write.put_cf(meta, size_key, size.to_be_bytes());
    // Aborts whose markers were deleted concern no record left (Kafka drops
    // them with their segment).
    write.delete_range_cf(
        meta,
        keys::aborted_txn_key(p.topic_id, p.partition, 0),
        keys::aborted_txn_key(p.topic_id, p.partition, job.delete_below),
    );
    let delete_below = job.delete_below;
    p.lock().aborted.retain(|a| a.last_offset >= delete_below);
    Ok(())
}

/// Adds an aborted transaction to a partition's index, in memory and in
/// `write`.
fn stage_aborted(
    meta_cf: &rocksdb::ColumnFamily,
    write: &mut WriteBatch,
    partition: &PartitionLog,
    state: &mut crate::log::partition::PartitionState,
    aborted: AbortedTxn,
) {
    write.put_cf(
        meta_cf,
        keys::aborted_txn_key(partition.topic_id, partition.partition, aborted.last_offset),
        aborted.encode_value(),
    );
    state.aborted.push_back(aborted);
}

fn stage_delete(db: &Db, write: &mut WriteBatch, delete: &DeleteRange) -> Result<()> {
    write.delete_range_cf(db.cf(CF_LOG)?, &delete.from, &delete.to);
    write.delete_range_cf(db.cf(CF_PARTITION_META)?, &delete.from, &delete.to);
    Ok(())
}

/// The header of a stored batch, for readers of this module's output.
pub fn stored_header(value: &[u8]) -> Result<BatchHeader<'_>> {
    BatchHeader::new(value)
        .ok_or_else(|| Error::Internal("stored batch shorter than its header".into()))
}
