//! Producer ids for idempotent producers, handed out from blocks.
//!
//! Kafka's controller allocates blocks of 1000 producer ids and persists
//! each block before any of its ids is used (`ProducerIdsRecord`), so that
//! an id is never given out twice, even across restarts. Here the block's
//! end is persisted (fsynced) in the `cluster` column family under
//! [`BLOCK_END_KEY`] before the block is used; after a restart allocation
//! continues at that end, skipping whatever was left of the last block.
//! With the Raft controller this becomes a metadata record (DESIGN.md
//! section 6); the interface stays the same.

use std::sync::{Arc, Mutex};

use rocksdb::WriteBatch;

use crate::error::{Error, Result};
use crate::log::db::Db;
use crate::log::keys::CF_CLUSTER;

/// Ids per block, as in Kafka (`ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
pub const BLOCK_SIZE: i64 = 1000;
/// `cluster` family key: i64 big-endian, the first id not yet allocated.
pub const BLOCK_END_KEY: &[u8] = b"producer.id.block.end";

/// The ids of the current block still to hand out: `next..end`.
#[derive(Debug)]
struct Block {
    next: i64,
    end: i64,
}

/// Hands out producer ids; every method blocks (RocksDB), so async callers
/// use [`ProducerIdManager::generate_async`].
#[derive(Debug)]
pub struct ProducerIdManager {
    db: Arc<Db>,
    block_size: i64,
    block: Mutex<Block>,
}

impl ProducerIdManager {
    /// Reads the persisted end of the last block. Blocking.
    pub fn load(db: Arc<Db>) -> Result<Self> {
        Self::with_block_size(db, BLOCK_SIZE)
    }

    fn with_block_size(db: Arc<Db>, block_size: i64) -> Result<Self> {
        let end = match db.get(CF_CLUSTER, BLOCK_END_KEY)? {
            None => 0,
            Some(bytes) => i64::from_be_bytes(bytes.as_slice().try_into().map_err(|_| {
                Error::Internal(format!(
                    "stored producer id block end has {} bytes, not 8",
                    bytes.len()
                ))
            })?),
        };
        Ok(ProducerIdManager {
            db,
            block_size,
            block: Mutex::new(Block { next: end, end }),
        })
    }

    /// A producer id never handed out before. Blocking: when the current
    /// block is used up, the next one is persisted (with an fsync) first.
    pub fn generate(&self) -> Result<i64> {
        let mut block = self.block.lock().unwrap_or_else(|p| p.into_inner());
        if block.next >= block.end {
            let new_end = block
                .end
                .checked_add(self.block_size)
                .ok_or_else(|| Error::Internal("producer ids exhausted".into()))?;
            let mut write = WriteBatch::default();
            write.put_cf(
                self.db.cf(CF_CLUSTER)?,
                BLOCK_END_KEY,
                new_end.to_be_bytes(),
            );
            self.db.write(write, true)?;
            block.next = block.end;
            block.end = new_end;
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }

    /// [`Self::generate`] on a blocking thread.
    pub async fn generate_async(self: &Arc<Self>) -> Result<i64> {
        let manager = self.clone();
        tokio::task::spawn_blocking(move || manager.generate())
            .await
            .map_err(|e| Error::Internal(format!("producer id task: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_never_reused_after_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = std::collections::HashSet::new();
        {
            let db = Arc::new(Db::open(dir.path()).unwrap());
            let manager = ProducerIdManager::with_block_size(db.clone(), 3).unwrap();
            for expected in 0..7 {
                assert_eq!(manager.generate().unwrap(), expected);
                assert!(seen.insert(expected));
            }
            // Three blocks were persisted before their ids were used.
            let stored = db.get(CF_CLUSTER, BLOCK_END_KEY).unwrap().unwrap();
            assert_eq!(i64::from_be_bytes(stored.try_into().unwrap()), 9);
        }
        let db = Arc::new(Db::open(dir.path()).unwrap());
        let manager = ProducerIdManager::with_block_size(db, 3).unwrap();
        let after_restart = manager.generate().unwrap();
        assert_eq!(after_restart, 9, "the rest of the last block is skipped");
        assert!(!seen.contains(&after_restart));
    }
}
