//! The metadata log's storage: openraft's [`RaftLogStorage`] over the node's
//! RocksDB, in two column families (see [`crate::log::keys`]):
//! `controller_log` maps the big-endian index to the bincode entry, and
//! `controller_state` holds the vote, the committed log id and the last
//! purged log id. Every write of the log or the vote is fsynced before
//! openraft is told it is done, as Raft requires. RocksDB calls run on the
//! blocking pool, never on an async worker.

// openraft's traits fix the error types (StorageError, RPCError), which
// are large; boxing them is not ours to choose.
#![allow(clippy::result_large_err)]
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError,
    Vote,
};
use rocksdb::{Direction, IteratorMode, WriteBatch};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cluster::controller::TypeConfig;
use crate::log::db::Db;
use crate::log::keys::{CF_CONTROLLER_LOG, CF_CONTROLLER_STATE};

const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const PURGED_KEY: &[u8] = b"purged";

type NodeId = u64;

fn storage_error(
    kind: fn(AnyError) -> StorageIOError<NodeId>,
    e: impl ToString,
) -> StorageError<NodeId> {
    kind(AnyError::error(e.to_string())).into()
}

fn read_error(e: impl ToString) -> StorageError<NodeId> {
    storage_error(StorageIOError::read_logs, e)
}

fn write_error(e: impl ToString) -> StorageError<NodeId> {
    storage_error(StorageIOError::write_logs, e)
}

/// Runs blocking RocksDB work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError<NodeId>> + Send + 'static,
) -> Result<T, StorageError<NodeId>> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| storage_error(StorageIOError::read_logs, format!("storage task: {e}")))?
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError<NodeId>> {
    bincode::serialize(value).map_err(write_error)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError<NodeId>> {
    bincode::deserialize(bytes).map_err(read_error)
}

fn get_state<T: DeserializeOwned>(db: &Db, key: &[u8]) -> Result<Option<T>, StorageError<NodeId>> {
    db.get(CF_CONTROLLER_STATE, key)
        .map_err(read_error)?
        .map(|bytes| decode(&bytes))
        .transpose()
}

fn put_state<T: Serialize>(
    db: &Db,
    key: &[u8],
    value: &T,
    sync: bool,
) -> Result<(), StorageError<NodeId>> {
    let mut batch = WriteBatch::default();
    batch.put_cf(
        db.cf(CF_CONTROLLER_STATE).map_err(write_error)?,
        key,
        encode(value)?,
    );
    db.write(batch, sync).map_err(write_error)
}

/// The Raft log and vote on RocksDB. Cheap to clone (one `Arc`).
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<Db>,
}

impl LogStore {
    pub fn new(db: Arc<Db>) -> Self {
        LogStore { db }
    }

    fn last_entry(db: &Db) -> Result<Option<Entry<TypeConfig>>, StorageError<NodeId>> {
        let cf = db.cf(CF_CONTROLLER_LOG).map_err(read_error)?;
        match db.raw().iterator_cf(cf, IteratorMode::End).next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(read_error)?;
                decode(&value).map(Some)
            }
        }
    }
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => Some(e.saturating_add(1)),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let (start, end) = bounds(&range);
        let db = self.db.clone();
        blocking(move || {
            let cf = db.cf(CF_CONTROLLER_LOG).map_err(read_error)?;
            let from = start.to_be_bytes();
            let mut entries = Vec::new();
            for item in db
                .raw()
                .iterator_cf(cf, IteratorMode::From(&from, Direction::Forward))
            {
                let (key, value) = item.map_err(read_error)?;
                let index = u64::from_be_bytes(key.as_ref().try_into().map_err(read_error)?);
                if end.is_some_and(|end| index >= end) {
                    break;
                }
                entries.push(decode(&value)?);
            }
            Ok(entries)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let db = self.db.clone();
        blocking(move || {
            let last_purged_log_id: Option<LogId<NodeId>> = get_state(&db, PURGED_KEY)?;
            let last_log_id = LogStore::last_entry(&db)?
                .map(|e| e.log_id)
                .or(last_purged_log_id);
            Ok(LogState {
                last_purged_log_id,
                last_log_id,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let db = self.db.clone();
        let vote = *vote;
        blocking(move || put_state(&db, VOTE_KEY, &vote, true)).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        let db = self.db.clone();
        blocking(move || get_state(&db, VOTE_KEY)).await
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not fsynced: losing it only means re-applying from the snapshot.
        let db = self.db.clone();
        blocking(move || put_state(&db, COMMITTED_KEY, &committed, false)).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        let db = self.db.clone();
        blocking(move || Ok(get_state::<Option<LogId<NodeId>>>(&db, COMMITTED_KEY)?.flatten()))
            .await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded = entries
            .into_iter()
            .map(|e| Ok((e.log_id.index, encode(&e)?)))
            .collect::<Result<Vec<_>, StorageError<NodeId>>>()?;
        let db = self.db.clone();
        let outcome = blocking(move || {
            let cf = db.cf(CF_CONTROLLER_LOG).map_err(write_error)?;
            let mut batch = WriteBatch::default();
            for (index, value) in encoded {
                batch.put_cf(cf, index.to_be_bytes(), value);
            }
            db.write(batch, true).map_err(write_error)
        })
        .await;
        let io = outcome
            .as_ref()
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(io);
        outcome
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let db = self.db.clone();
        blocking(move || {
            let cf = db.cf(CF_CONTROLLER_LOG).map_err(write_error)?;
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(cf, log_id.index.to_be_bytes(), u64::MAX.to_be_bytes());
            // The range end is exclusive: the last possible index too.
            batch.delete_cf(cf, u64::MAX.to_be_bytes());
            db.write(batch, true).map_err(write_error)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let db = self.db.clone();
        blocking(move || {
            put_state(&db, PURGED_KEY, &log_id, true)?;
            let cf = db.cf(CF_CONTROLLER_LOG).map_err(write_error)?;
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(
                cf,
                0u64.to_be_bytes(),
                log_id.index.saturating_add(1).to_be_bytes(),
            );
            db.write(batch, false).map_err(write_error)
        })
        .await
    }
}
