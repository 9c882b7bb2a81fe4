//! Blocking reads of a partition's stored batches: fetch, timestamp lookup,
//! front scans for retention and DeleteRecords, and the load at startup.
//! Run these on a blocking thread, never on an async worker.

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::RecordBatchDecoder;
use rocksdb::{DBRawIteratorWithThreadMode, ReadOptions, DB};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::log::batch::BatchHeader;
use crate::log::db::Db;
use crate::log::keys::{self, MetaKind, CF_LOG, CF_PARTITION_META};
use crate::log::partition::{LoadedState, PartitionLog};
use crate::log::producer_state::AbortedTxn;
use crate::log::producer_state::{self, ProducerStateTable};
use crate::log::retention::BatchInfo;

type RawIter<'a> = DBRawIteratorWithThreadMode<'a, DB>;

/// An iterator over one partition's batches with offsets below `upper`.
fn partition_iter<'a>(db: &'a Db, p: &PartitionLog, upper: i64) -> Result<RawIter<'a>> {
    let mut opts = ReadOptions::default();
    opts.set_iterate_lower_bound(keys::log_key(p.topic_id, p.partition, 0).to_vec());
    opts.set_iterate_upper_bound(keys::log_key(p.topic_id, p.partition, upper.max(0)).to_vec());
    Ok(db.raw().raw_iterator_cf_opt(db.cf(CF_LOG)?, opts))
}

fn header(value: &[u8]) -> Result<BatchHeader<'_>> {
    BatchHeader::new(value)
        .ok_or_else(|| Error::Internal("stored batch shorter than its header".into()))
}

/// Positions `it` on the batch holding `offset`, or the first batch after it.
fn seek_to_offset(it: &mut RawIter<'_>, p: &PartitionLog, offset: i64) {
    let key = keys::log_key(p.topic_id, p.partition, offset.max(0));
    // Most reads start where a batch does (a follower's log end, a consumer
    // past a whole batch). Try that first: positioning loads the value, and
    // a reverse seek would load the batch before, up to a MiB read (from a
    // blob file once flushed) only to be skipped.
    it.seek(key);
    if it.key() == Some(&key[..]) {
        return;
    }
    it.seek_for_prev(key);
    if !it.valid() {
        it.seek(key);
    }
}

/// Reads whole batches from `fetch_offset` up to `max_bytes`, below the
/// exclusive offset `upper`. With `min_one`, the first batch is returned even
/// when larger than `max_bytes` (KIP-74), so a consumer never gets stuck.
pub fn read(
    db: &Db,
    p: &PartitionLog,
    fetch_offset: i64,
    max_bytes: usize,
    upper: i64,
    min_one: bool,
) -> Result<Bytes> {
    let mut it = partition_iter(db, p, upper)?;
    seek_to_offset(&mut it, p, fetch_offset);
    let mut out = BytesMut::new();
    while let Some(value) = it.value() {
        let batch = header(value)?;
        if batch.last_offset() >= fetch_offset {
            let fits = out.len() + value.len() <= max_bytes;
            if !fits && (!out.is_empty() || !min_one) {
                break;
            }
            out.extend_from_slice(value);
            if !fits {
                break;
            }
            // Stepping onto the next batch loads it: stop first if it is
            // known not to fit.
            let next_size = p.batch_size_at(batch.last_offset() + 1);
            if next_size.is_some_and(|size| out.len() + size > max_bytes) {
                break;
            }
        }
        it.next();
    }
    it.status()?;
    Ok(out.freeze())
}

/// Every partition with data or metadata stored on this node, found with
/// one seek per partition (not one step per batch).
pub fn stored_partitions(db: &Db) -> Result<BTreeSet<(Uuid, i32)>> {
    let mut found = BTreeSet::new();
    for cf in [CF_LOG, CF_PARTITION_META] {
        let mut it = db.raw().raw_iterator_cf(db.cf(cf)?);
        it.seek_to_first();
        while let Some(key) = it.key() {
            let Some((topic_id, partition)) = keys::partition_of(key) else {
                return Err(Error::Internal(format!("malformed key in {cf}")));
            };
            let _ = found.insert((topic_id, partition));
            // Skip the rest of this partition.
            match partition.checked_add(1) {
                Some(next) => it.seek(keys::partition_prefix(topic_id, next)),
                None => it.seek(keys::topic_end(topic_id)),
            }
        }
        it.status()?;
    }
    Ok(found)
}

/// Calls `visit` for each batch from the oldest below `upper` until it
/// returns false.
pub fn scan(
    db: &Db,
    p: &PartitionLog,
    upper: i64,
    mut visit: impl FnMut(BatchInfo, &[u8]) -> bool,
) -> Result<()> {
    let mut it = partition_iter(db, p, upper)?;
    it.seek_to_first();
    while let Some(value) = it.value() {
        let batch = header(value)?;
        let info = BatchInfo {
            base_offset: batch.base_offset(),
            last_offset: batch.last_offset(),
            max_timestamp: batch.max_timestamp(),
            size: value.len() as i64,
        };
        if !visit(info, value) {
            break;
        }
        it.next();
    }
    it.status()?;
    Ok(())
}

/// Decodes a batch's records as `(offset, timestamp)` pairs.
fn record_times(value: &[u8]) -> Result<Vec<(i64, i64)>> {
    let mut buf = Bytes::copy_from_slice(value);
    let set = RecordBatchDecoder::decode(&mut buf)
        .map_err(|e| Error::Internal(format!("decoding a stored batch: {e}")))?;
    Ok(set
        .records
        .iter()
        .map(|r| (r.offset, r.timestamp))
        .collect())
}

/// ListOffsets by timestamp: the first record at or after `log_start` with a
/// timestamp >= `target`, as `(offset, timestamp)`.
pub fn offset_for_timestamp(
    db: &Db,
    p: &PartitionLog,
    target: i64,
    log_start: i64,
    upper: i64,
) -> Result<Option<(i64, i64)>> {
    let mut found = None;
    let mut failure = None;
    scan(db, p, upper, |info, value| {
        if info.max_timestamp < target || info.last_offset < log_start {
            return true;
        }
        match record_times(value) {
            Ok(records) => {
                found = records
                    .into_iter()
                    .find(|&(offset, ts)| ts >= target && offset >= log_start);
            }
            Err(e) => failure = Some(e),
        }
        found.is_none() && failure.is_none()
    })?;
    failure.map_or(Ok(found), Err)
}

/// ListOffsets MAX_TIMESTAMP: the record with the largest timestamp (the
/// earliest such on ties), as `(offset, timestamp)`.
pub fn max_timestamp(
    db: &Db,
    p: &PartitionLog,
    log_start: i64,
    upper: i64,
) -> Result<Option<(i64, i64)>> {
    let mut best: Option<(i64, i64)> = None; // (max_timestamp, base_offset)
    scan(db, p, upper, |info, _| {
        if info.last_offset >= log_start && best.is_none_or(|(ts, _)| info.max_timestamp > ts) {
            best = Some((info.max_timestamp, info.base_offset));
        }
        true
    })?;
    let Some((ts, base)) = best else {
        return Ok(None);
    };
    let mut it = partition_iter(db, p, upper)?;
    it.seek(keys::log_key(p.topic_id, p.partition, base));
    let value = it
        .value()
        .ok_or_else(|| Error::Internal("batch vanished during lookup".into()))?;
    let offset = record_times(value)?
        .into_iter()
        .find(|&(offset, t)| t == ts && offset >= log_start)
        .map(|(offset, _)| offset)
        .unwrap_or(base.max(log_start));
    Ok(Some((offset, ts)))
}

/// For DeleteRecords: the base offset below which whole batches can be
/// deleted to start the log at `new_start`, and their total size.
pub fn front_below(db: &Db, p: &PartitionLog, new_start: i64, upper: i64) -> Result<(i64, i64)> {
    let mut delete_below = new_start;
    let mut freed = 0;
    scan(db, p, upper, |info, _| {
        if info.last_offset < new_start {
            freed += info.size;
            true
        } else {
            delete_below = info.base_offset;
            false
        }
    })?;
    Ok((delete_below, freed))
}

fn meta_i64(db: &Db, p_topic: uuid::Uuid, partition: i32, kind: MetaKind) -> Result<Option<i64>> {
    let value = db.get(CF_PARTITION_META, &keys::meta_key(p_topic, partition, kind))?;
    Ok(value
        .and_then(|v| v.try_into().ok())
        .map(i64::from_be_bytes))
}

/// The idempotent producers' entries of a partition. An entry that does not
/// decode is skipped with a warning: that producer is then unknown, and
/// Kafka accepts an unknown producer's next sequence.
fn load_producers(db: &Db, topic_id: uuid::Uuid, partition: i32) -> Result<ProducerStateTable> {
    let prefix = keys::meta_key(topic_id, partition, MetaKind::ProducerState);
    let mut it = db.raw().raw_iterator_cf(db.cf(CF_PARTITION_META)?);
    it.seek(&prefix);
    let mut entries = Vec::new();
    while let (Some(key), Some(value)) = (it.key(), it.value()) {
        if !key.starts_with(&prefix) {
            break;
        }
        match (
            keys::producer_id_of(key),
            producer_state::decode_entry(value),
        ) {
            (Some(producer_id), Some(entry)) => entries.push((producer_id, entry)),
            _ => {
                tracing::warn!(%topic_id, partition, "skipping an undecodable producer state entry")
            }
        }
        it.next();
    }
    it.status()?;
    Ok(ProducerStateTable::from_entries(entries))
}

/// A partition's aborted transactions, by marker offset. One that does not
/// decode is skipped with a warning (its records would then show to
/// read_committed consumers, so it is logged loudly).
fn load_aborted(
    db: &Db,
    topic_id: uuid::Uuid,
    partition: i32,
) -> Result<std::collections::VecDeque<AbortedTxn>> {
    let prefix = keys::meta_key(topic_id, partition, MetaKind::AbortedTxn);
    let mut it = db.raw().raw_iterator_cf(db.cf(CF_PARTITION_META)?);
    it.seek(&prefix);
    let mut out = std::collections::VecDeque::new();
    while let (Some(key), Some(value)) = (it.key(), it.value()) {
        if !key.starts_with(&prefix) {
            break;
        }
        match keys::aborted_txn_offset_of(key).and_then(|last| AbortedTxn::decode(last, value)) {
            Some(aborted) => out.push_back(aborted),
            None => {
                tracing::error!(%topic_id, partition, "skipping an undecodable aborted transaction entry")
            }
        }
        it.next();
    }
    it.status()?;
    Ok(out)
}

/// Reads a partition's persisted state: log start, size, leader epochs,
/// idempotent producers, and the log end offset from its last batch.
pub(crate) fn load(db: &Db, topic_id: uuid::Uuid, partition: i32) -> Result<LoadedState> {
    let log_start_offset =
        meta_i64(db, topic_id, partition, MetaKind::LogStartOffset)?.unwrap_or(0);
    let size_bytes = meta_i64(db, topic_id, partition, MetaKind::SizeBytes)?.unwrap_or(0);
    let mut epoch_starts = std::collections::BTreeMap::new();
    let prefix = keys::meta_key(topic_id, partition, MetaKind::LeaderEpochStart);
    let cf = db.cf(CF_PARTITION_META)?;
    let mut it = db.raw().raw_iterator_cf(cf);
    it.seek(&prefix);
    while let (Some(key), Some(value)) = (it.key(), it.value()) {
        if !key.starts_with(&prefix) {
            break;
        }
        if let (Some(epoch), Ok(start)) = (keys::leader_epoch_of(key), <[u8; 8]>::try_from(value)) {
            let _ = epoch_starts.insert(epoch, i64::from_be_bytes(start));
        }
        it.next();
    }
    it.status()?;
    let mut log = db.raw().raw_iterator_cf(db.cf(CF_LOG)?);
    let prefix = keys::partition_prefix(topic_id, partition);
    log.seek_for_prev(keys::log_key(topic_id, partition, i64::MAX));
    let mut log_end_offset = log_start_offset;
    if let (Some(key), Some(value)) = (log.key(), log.value()) {
        if key.starts_with(&prefix) {
            log_end_offset = log_end_offset.max(header(value)?.last_offset() + 1);
        }
    }
    log.status()?;
    Ok(LoadedState {
        log_start_offset,
        log_end_offset,
        size_bytes,
        epoch_starts,
        producers: load_producers(db, topic_id, partition)?,
        aborted: load_aborted(db, topic_id, partition)?,
        high_watermark_checkpoint: meta_i64(db, topic_id, partition, MetaKind::HighWatermark)?,
    })
}

/// Rebuilds a partition's producer state (idempotence and open
/// transactions) from its batches below `upper`, after a follower
/// truncates its log. Reads every batch header. The aborted-transaction
/// index needs no rebuilding: truncation only cuts its tail.
pub fn rebuild_producers(db: &Db, p: &PartitionLog, upper: i64) -> Result<ProducerStateTable> {
    let mut table = ProducerStateTable::default();
    let now = crate::log::now_ms();
    let mut failure = None;
    scan(db, p, upper, |info, value| {
        match BatchHeader::new(value).map(|h| producer_state::ProducerBatch::from_header(&h, true))
        {
            Some(Ok(Some(batch))) => {
                let _ = table.record(&batch, info.base_offset, info.last_offset, now);
            }
            Some(Ok(None)) => {}
            Some(Err(e)) => {
                failure = Some(e);
                return false;
            }
            None => {}
        }
        true
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(table),
    }
}
