//! The RocksDB key layout, in one place. Every key is fixed-width big-endian
//! so that RocksDB's byte order is numeric order and a partition's keys are a
//! contiguous range.
//!
//! Column families:
//!
//! | family           | key                                                   | value |
//! |------------------|-------------------------------------------------------|-------|
//! | `log`            | `topic_id(16) \| partition(u32) \| base_offset(i64)`  | the stored record batch, offset and leader epoch patched |
//! | `partition_meta` | `topic_id(16) \| partition(u32) \| kind(u8) [\| epoch(i32)]` | see [`MetaKind`] |
//! | `partition_meta` | `topic_id(16) \| partition(u32) \| kind(u8)=4 \| producer_id(i64)` | one producer's state, [`crate::log::producer_state::encode_entry`] |
//! | `partition_meta` | `topic_id(16) \| partition(u32) \| kind(u8)=6 \| last_offset(i64)` | an aborted transaction ending at that marker, [`crate::log::producer_state::AbortedTxn::encode_value`] |
//! | `controller_log` | `index(u64)`                                          | one metadata-log (Raft) entry, bincode ([`crate::cluster::controller::log_store`]) |
//! | `controller_state` | a short ASCII name (`vote`, `committed`, `purged`, `snapshot`) | bincode of that Raft state |
//!
//! Offsets are never negative, so the sign bit of the big-endian i64 never
//! breaks the ordering.

use uuid::Uuid;

pub const CF_LOG: &str = "log";
pub const CF_PARTITION_META: &str = "partition_meta";
pub const CF_CONTROLLER_LOG: &str = "controller_log";
pub const CF_CONTROLLER_STATE: &str = "controller_state";

/// All column families, for opening the database.
pub const COLUMN_FAMILIES: &[&str] = &[
    CF_LOG,
    CF_PARTITION_META,
    CF_CONTROLLER_LOG,
    CF_CONTROLLER_STATE,
];

/// Length of a partition prefix: topic id and partition index.
pub const PARTITION_PREFIX_LEN: usize = 20;
/// Length of a `log` key.
pub const LOG_KEY_LEN: usize = 28;

/// What a `partition_meta` key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MetaKind {
    /// i64: the log start offset (raised by retention and DeleteRecords).
    LogStartOffset = 1,
    /// i64: bytes of stored batches in the partition.
    SizeBytes = 2,
    /// keyed further by epoch (i32): i64 start offset of that leader epoch.
    LeaderEpochStart = 3,
    /// keyed further by producer id (i64): that idempotent producer's epoch
    /// and last batches, written in the same `WriteBatch` as its data.
    ProducerState = 4,
    /// i64: the high watermark as last checkpointed
    /// (`replica.high.watermark.checkpoint.interval.ms`), at most the true
    /// one. A restarted replica serves from it instead of its log end, which
    /// may hold records the other replicas never got.
    HighWatermark = 5,
    /// keyed further by the offset of an ABORT marker (i64): the aborted
    /// transaction it closed (producer id, first offset), for read_committed
    /// fetches. Written with the marker; ordered by marker offset so that
    /// truncation removes a range.
    AbortedTxn = 6,
}

/// `topic_id | partition`.
pub fn partition_prefix(topic_id: Uuid, partition: i32) -> [u8; PARTITION_PREFIX_LEN] {
    let mut key = [0u8; PARTITION_PREFIX_LEN];
    key[..16].copy_from_slice(topic_id.as_bytes());
    key[16..20].copy_from_slice(&(partition as u32).to_be_bytes());
    key
}

/// The topic id and partition a `log` or `partition_meta` key belongs to.
pub fn partition_of(key: &[u8]) -> Option<(Uuid, i32)> {
    let id: [u8; 16] = key.get(..16)?.try_into().ok()?;
    let partition: [u8; 4] = key.get(16..PARTITION_PREFIX_LEN)?.try_into().ok()?;
    Some((Uuid::from_bytes(id), u32::from_be_bytes(partition) as i32))
}

/// `topic_id | partition | base_offset`.
pub fn log_key(topic_id: Uuid, partition: i32, base_offset: i64) -> [u8; LOG_KEY_LEN] {
    let mut key = [0u8; LOG_KEY_LEN];
    key[..PARTITION_PREFIX_LEN].copy_from_slice(&partition_prefix(topic_id, partition));
    key[PARTITION_PREFIX_LEN..].copy_from_slice(&base_offset.to_be_bytes());
    key
}

/// The base offset of a `log` key, or `None` if the key is not one.
pub fn log_key_offset(key: &[u8]) -> Option<i64> {
    let bytes: [u8; 8] = key
        .get(PARTITION_PREFIX_LEN..LOG_KEY_LEN)?
        .try_into()
        .ok()?;
    Some(i64::from_be_bytes(bytes))
}

/// `topic_id | partition | kind`.
pub fn meta_key(topic_id: Uuid, partition: i32, kind: MetaKind) -> Vec<u8> {
    let mut key = Vec::with_capacity(PARTITION_PREFIX_LEN + 5);
    key.extend_from_slice(&partition_prefix(topic_id, partition));
    key.push(kind as u8);
    key
}

/// `topic_id | partition | LeaderEpochStart | epoch`.
pub fn leader_epoch_key(topic_id: Uuid, partition: i32, epoch: i32) -> Vec<u8> {
    let mut key = meta_key(topic_id, partition, MetaKind::LeaderEpochStart);
    key.extend_from_slice(&(epoch as u32).to_be_bytes());
    key
}

/// The epoch of a leader-epoch key.
pub fn leader_epoch_of(key: &[u8]) -> Option<i32> {
    let bytes: [u8; 4] = key.get(PARTITION_PREFIX_LEN + 1..)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes) as i32)
}

/// `topic_id | partition | ProducerState | producer_id`.
pub fn producer_state_key(topic_id: Uuid, partition: i32, producer_id: i64) -> Vec<u8> {
    let mut key = meta_key(topic_id, partition, MetaKind::ProducerState);
    key.extend_from_slice(&producer_id.to_be_bytes());
    key
}

/// The producer id of a producer-state key.
pub fn producer_id_of(key: &[u8]) -> Option<i64> {
    let bytes: [u8; 8] = key.get(PARTITION_PREFIX_LEN + 1..)?.try_into().ok()?;
    Some(i64::from_be_bytes(bytes))
}

/// `topic_id | partition | AbortedTxn | last_offset`.
pub fn aborted_txn_key(topic_id: Uuid, partition: i32, last_offset: i64) -> Vec<u8> {
    let mut key = meta_key(topic_id, partition, MetaKind::AbortedTxn);
    key.extend_from_slice(&last_offset.to_be_bytes());
    key
}

/// The marker offset of an aborted-transaction key.
pub fn aborted_txn_offset_of(key: &[u8]) -> Option<i64> {
    let bytes: [u8; 8] = key.get(PARTITION_PREFIX_LEN + 1..)?.try_into().ok()?;
    Some(i64::from_be_bytes(bytes))
}

/// The first key after every key of the topic: the end of a range delete.
pub fn topic_end(topic_id: Uuid) -> [u8; 17] {
    let mut key = [0xffu8; 17];
    key[..16].copy_from_slice(topic_id.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_key_names_its_partition() {
        let id = Uuid::new_v4();
        for partition in [0, 7, i32::MAX] {
            assert_eq!(
                partition_of(&log_key(id, partition, 42)),
                Some((id, partition))
            );
            let meta = producer_state_key(id, partition, 9);
            assert_eq!(partition_of(&meta), Some((id, partition)));
        }
        assert_eq!(partition_of(&[0u8; 19]), None);
    }

    #[test]
    fn log_keys_sort_numerically() {
        let id = Uuid::from_u128(7);
        let a = log_key(id, 0, 255);
        let b = log_key(id, 0, 256);
        let c = log_key(id, 1, 0);
        assert!(a < b && b < c);
        assert_eq!(log_key_offset(&b), Some(256));
        assert!(
            c < topic_end(id)[..]
                .try_into()
                .map(|k: [u8; 17]| {
                    let mut full = [0u8; LOG_KEY_LEN];
                    full[..17].copy_from_slice(&k);
                    full
                })
                .unwrap()
        );
    }

    #[test]
    fn meta_keys_roundtrip_epoch() {
        let id = Uuid::from_u128(9);
        let key = leader_epoch_key(id, 3, 42);
        assert_eq!(leader_epoch_of(&key), Some(42));
        assert!(key.starts_with(&partition_prefix(id, 3)));
        assert!(leader_epoch_key(id, 3, 1) < leader_epoch_key(id, 3, 2));
    }

    #[test]
    fn producer_state_keys_roundtrip_and_stay_apart() {
        let id = Uuid::from_u128(9);
        let key = producer_state_key(id, 3, 1_000_123);
        assert_eq!(producer_id_of(&key), Some(1_000_123));
        assert!(key.starts_with(&meta_key(id, 3, MetaKind::ProducerState)));
        assert!(!key.starts_with(&meta_key(id, 3, MetaKind::LeaderEpochStart)));
        assert!(producer_state_key(id, 3, 255) < producer_state_key(id, 3, 256));
        assert!(key < topic_end(id).to_vec());
    }
}
