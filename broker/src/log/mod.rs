//! Partition storage on RocksDB.
//!
//! - [`keys`]: the key layout of every column family.
//! - [`db`]: the RocksDB instance and its column families.
//! - [`batch`]: the record batch header view, validation and patching.
//! - [`batch_sizes`]: recent batches' sizes, so reads stop before loading one.
//! - [`partition`]: one partition's offsets and the watch that wakes fetches.
//! - [`producer_state`]: idempotent producers' sequence checks, pure.
//! - [`writer`]: the writer thread with group commit; the only writer of data.
//! - [`reader`]: blocking reads (fetch, timestamp lookups, scans, load).
//! - [`retention`]: pure retention decisions.
//! - [`reclaim`]: frees the disk of deleted batches (compaction, blob GC).
//! - [`topic_config`]: topic config names, validation and resolution.
//! - [`LogManager`]: owns the above for every partition on this node.

pub mod batch;
pub mod batch_sizes;
pub mod db;
pub mod keys;
pub mod partition;
pub mod producer_state;
pub mod reader;
pub mod reclaim;
pub mod retention;
pub mod topic_config;
pub mod writer;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::oneshot;
use uuid::Uuid;

use crate::cluster::topic_record::TopicRecord;
use crate::config::FlushPolicy;
use crate::error::Result;
use crate::metrics;
use db::Db;
use partition::PartitionLog;
use reclaim::{BlobGcPolicy, Reclaimer};
use writer::LogWriter;

/// Milliseconds since the Unix epoch on this broker's clock (0 if the clock
/// is before 1970): record timestamps, expiry and retention all use it.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Every partition log on this node, the database and the writer thread.
#[derive(Debug)]
pub struct LogManager {
    db: Arc<Db>,
    partitions: RwLock<HashMap<(Uuid, i32), Arc<PartitionLog>>>,
    /// Held while a partition is loaded or deleted, so a partition moved
    /// away and straight back is never loaded from data being deleted.
    lifecycle: Mutex<()>,
    // Dropped in this order: the writer, which queues work for the
    // reclaimer, stops first.
    writer: LogWriter,
    reclaimer: Reclaimer,
}

impl LogManager {
    /// Opens the database under `dir` and starts the writer and the
    /// reclaimer. Blocking.
    pub fn open(dir: &Path, flush: FlushPolicy, blob_gc: BlobGcPolicy) -> Result<Self> {
        let db = Arc::new(Db::open(dir)?);
        let thread_error = |what: &str, e: std::io::Error| {
            crate::error::Error::Internal(format!("starting {what}: {e}"))
        };
        let reclaimer =
            Reclaimer::start(db.clone(), blob_gc).map_err(|e| thread_error("log reclaimer", e))?;
        let writer = LogWriter::start(
            db.clone(),
            flush == FlushPolicy::Durable,
            reclaimer.handle().clone(),
        )
        .map_err(|e| thread_error("log writer", e))?;
        Ok(LogManager {
            db,
            partitions: RwLock::new(HashMap::new()),
            lifecycle: Mutex::new(()),
            writer,
            reclaimer,
        })
    }

    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    pub fn writer(&self) -> &LogWriter {
        &self.writer
    }

    /// The partition's log, if hosted here.
    pub fn get(&self, topic_id: Uuid, partition: i32) -> Option<Arc<PartitionLog>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(topic_id, partition))
            .cloned()
    }

    /// Every partition log hosted here.
    pub fn all(&self) -> Vec<Arc<PartitionLog>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Loads or creates the log of one partition of `topic`. Blocking.
    pub fn ensure_partition(
        &self,
        topic: &TopicRecord,
        partition: i32,
    ) -> Result<Arc<PartitionLog>> {
        if let Some(log) = self.get(topic.id, partition) {
            return Ok(log);
        }
        let _lifecycle = self.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
        let loaded = reader::load(&self.db, topic.id, partition)?;
        let log = Arc::new(PartitionLog::new(topic.id, &topic.name, partition, loaded));
        let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
        let log = map.entry((topic.id, partition)).or_insert(log).clone();
        metrics::PARTITIONS.set(map.len() as i64);
        Ok(log)
    }

    /// Stops serving a topic's partitions and deletes its data. The returned
    /// receiver resolves once the deletion is committed.
    pub fn delete_topic(&self, topic_id: Uuid) -> Result<oneshot::Receiver<Result<()>>> {
        {
            let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            map.retain(|(id, _), log| {
                let keep = *id != topic_id;
                if !keep {
                    log.mark_deleted();
                }
                keep
            });
            metrics::PARTITIONS.set(map.len() as i64);
        }
        let (reply, done) = oneshot::channel();
        self.writer.delete_topic(topic_id, reply)?;
        Ok(done)
    }

    /// Stops serving one partition, if it is served, and deletes its data
    /// (its replica moved to another node), returning once the deletion is committed. Blocking:
    /// call it from a blocking thread.
    pub fn delete_partition(&self, topic_id: Uuid, partition: i32) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
        let removed = {
            let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            let removed = map.remove(&(topic_id, partition));
            metrics::PARTITIONS.set(map.len() as i64);
            removed
        };
        // Not loaded (a stray found at startup): its data goes all the same.
        if let Some(log) = removed {
            log.mark_deleted();
        }
        let (reply, done) = oneshot::channel();
        self.writer.delete_partition(topic_id, partition, reply)?;
        done.blocking_recv().map_err(|_| {
            crate::error::Error::Internal("log writer stopped before deleting a partition".into())
        })?
    }

    /// Commits queued writes and stops the writer and the reclaimer.
    /// Blocking.
    pub fn shutdown(&self) {
        self.writer.shutdown();
        self.reclaimer.shutdown();
    }
}
