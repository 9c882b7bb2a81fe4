//! Idempotent producer state of one partition, pure: which producer ids
//! wrote here, at which epoch, and the offsets of their last five batches,
//! so that a retried batch gets its original offsets back instead of being
//! written twice. Kafka's `ProducerStateEntry` and
//! `ProducerAppendInfo.checkSequence`, for data batches (no transactions).
//!
//! The rules, checked in this order for a batch with a producer id:
//!
//! 1. **Duplicate**: same epoch and exactly the sequence range of one of the
//!    cached batches: answer that batch's offsets, append nothing.
//! 2. **Fencing**: an epoch lower than the producer's current one is
//!    INVALID_PRODUCER_EPOCH.
//! 3. **Sequence**: a higher epoch must start at sequence 0; the same epoch
//!    must continue at the last sequence + 1 (0 after `i32::MAX`); anything
//!    else is OUT_OF_ORDER_SEQUENCE_NUMBER. A producer id without state
//!    (never seen, or expired) accepts any sequence, as Kafka does once
//!    retention or expiration removed what it knew.
//!
//! Batches without a producer id (-1) skip all of this.
//!
//! Transactions (Kafka's `currentTxnFirstOffset` and `AbortedTxn`): a
//! producer's first transactional batch opens its transaction at that
//! batch's offset; a marker (control batch) from the coordinator closes it.
//! The first offset of the oldest open transaction bounds the last stable
//! offset, below which read_committed consumers read; an ABORT marker
//! closing a transaction yields an [`AbortedTxn`] for the partition's index,
//! which those consumers use to skip its records. A producer with an open
//! transaction may not write non-transactional batches
//! (INVALID_TXN_STATE), and a marker with an epoch older than the
//! producer's is fenced (INVALID_PRODUCER_EPOCH).
//!
//! Invariant: an entry's cached batches all have the entry's epoch and are
//! ordered by sequence (oldest first); at most [`NUM_BATCHES_TO_RETAIN`].

use std::collections::{BTreeMap, HashMap, VecDeque};

use kafka_protocol::error::ResponseError;

use crate::error::{Error, Result};
use crate::log::batch::BatchHeader;

/// Batches remembered per producer (Kafka's `NUM_BATCHES_TO_RETAIN`, which
/// is also the most in-flight requests an idempotent client may have).
pub const NUM_BATCHES_TO_RETAIN: usize = 5;
/// The producer id of a batch written without idempotence.
pub const NO_PRODUCER_ID: i64 = -1;

/// Where one cached batch of a producer landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    /// The batch's max timestamp, as Kafka keeps it.
    pub timestamp: i64,
}

/// What a partition knows about one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerStateEntry {
    /// The producer's current epoch here.
    pub epoch: i16,
    /// The last batches of `epoch`, oldest first.
    pub batches: VecDeque<BatchMetadata>,
    /// Broker wall-clock time of the last append (ms since the epoch), for
    /// `producer.id.expiration.ms`. Kafka uses the batch's max timestamp,
    /// which a client with a skewed clock controls; the broker's clock
    /// expires producers by how long they have really been idle.
    pub last_append_ms: i64,
    /// The first offset of the producer's open transaction, -1 if none.
    pub current_txn_first_offset: i64,
}

impl ProducerStateEntry {
    fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }

    fn find_duplicate(&self, batch: &ProducerBatch) -> Option<BatchMetadata> {
        if batch.epoch != self.epoch {
            return None;
        }
        self.batches
            .iter()
            .find(|b| b.first_seq == batch.first_seq && b.last_seq == batch.last_seq)
            .copied()
    }
}

/// What a batch with a producer id is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    /// Records, inside a transaction or not.
    Data { transactional: bool },
    /// A transaction marker: COMMIT (`true`) or ABORT.
    Marker { commit: bool },
}

/// The idempotence fields of a batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
    pub max_timestamp: i64,
    pub kind: BatchKind,
}

/// A transaction aborted in a partition (Kafka's `AbortedTxn`): its
/// records lie between `first_offset` and its ABORT marker at
/// `last_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

impl AbortedTxn {
    /// `producer_id(i64) | first_offset(i64)`, stored under a key ending in
    /// `last_offset` ([`crate::log::keys::aborted_txn_key`]).
    pub fn encode_value(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.producer_id.to_be_bytes());
        out[8..].copy_from_slice(&self.first_offset.to_be_bytes());
        out
    }

    pub fn decode(last_offset: i64, value: &[u8]) -> Option<Self> {
        let value: [u8; 16] = value.try_into().ok()?;
        Some(AbortedTxn {
            producer_id: i64::from_be_bytes(value[..8].try_into().ok()?),
            first_offset: i64::from_be_bytes(value[8..].try_into().ok()?),
            last_offset,
        })
    }
}

/// `seq + increment` in the sequence space, which wraps from `i32::MAX` to
/// 0 (Kafka's `DefaultRecordBatch.incrementSequence`).
pub fn increment_sequence(seq: i32, increment: i32) -> i32 {
    if seq > i32::MAX - increment {
        increment - (i32::MAX - seq) - 1
    } else {
        seq + increment
    }
}

/// Whether `next` directly follows `last`.
fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

impl ProducerBatch {
    /// The idempotence fields of a validated batch, or `None` for a batch
    /// without a producer id (any negative id, as Kafka's `hasProducerId`
    /// reads it). A producer id with a negative sequence is an invalid
    /// record, as in Kafka's `LogValidator`.
    ///
    /// `trusted`: the batch was written by a coordinator, or is being
    /// replicated or replayed. A coordinator writes transactional offset
    /// commits with the producer's id and epoch but no sequence (-1), as
    /// Kafka's does; those only open the producer's transaction.
    pub fn from_header(header: &BatchHeader<'_>, trusted: bool) -> Result<Option<Self>> {
        let producer_id = header.producer_id();
        if producer_id <= NO_PRODUCER_ID {
            return Ok(None);
        }
        if header.is_control() {
            // Markers carry no sequence. One of a type this broker does not
            // know changes no producer state (Kafka ignores it too).
            return Ok(header.control_marker().map(|commit| ProducerBatch {
                producer_id,
                epoch: header.producer_epoch(),
                first_seq: -1,
                last_seq: -1,
                max_timestamp: header.max_timestamp(),
                kind: BatchKind::Marker { commit },
            }));
        }
        let first_seq = header.base_sequence();
        if first_seq < 0 && trusted {
            return Ok(Some(ProducerBatch {
                producer_id,
                epoch: header.producer_epoch(),
                first_seq: -1,
                last_seq: -1,
                max_timestamp: header.max_timestamp(),
                kind: BatchKind::Data {
                    transactional: header.is_transactional(),
                },
            }));
        }
        if first_seq < 0 {
            return Err(Error::api_msg(
                ResponseError::InvalidRecord,
                format!(
                    "invalid sequence number {first_seq} in record batch with producer id {producer_id}"
                ),
            ));
        }
        Ok(Some(ProducerBatch {
            producer_id,
            epoch: header.producer_epoch(),
            first_seq,
            last_seq: increment_sequence(first_seq, header.last_offset_delta()),
            max_timestamp: header.max_timestamp(),
            kind: BatchKind::Data {
                transactional: header.is_transactional(),
            },
        }))
    }
}

/// INVALID_PRODUCER_EPOCH for a batch (or marker) older than the
/// producer's current epoch: a fenced producer's.
fn check_epoch(batch: &ProducerBatch, entry: &ProducerStateEntry) -> Result<()> {
    if batch.epoch < entry.epoch {
        return Err(Error::api_msg(
            ResponseError::InvalidProducerEpoch,
            format!(
                "epoch {} of producer {} is older than its current epoch {}",
                batch.epoch, batch.producer_id, entry.epoch
            ),
        ));
    }
    Ok(())
}

/// The outcome of checking a batch against the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Append it.
    Append,
    /// Already written: answer these offsets, append nothing.
    Duplicate(BatchMetadata),
}

/// Every producer's entry in one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateTable {
    entries: HashMap<i64, ProducerStateEntry>,
    /// Open transactions: first offset -> producer id (derived from the
    /// entries, kept for the last stable offset).
    ongoing: BTreeMap<i64, i64>,
}

impl ProducerStateTable {
    pub fn from_entries(entries: impl IntoIterator<Item = (i64, ProducerStateEntry)>) -> Self {
        let entries: HashMap<i64, ProducerStateEntry> = entries.into_iter().collect();
        let ongoing = entries
            .iter()
            .filter(|(_, e)| e.current_txn_first_offset >= 0)
            .map(|(&id, e)| (e.current_txn_first_offset, id))
            .collect();
        ProducerStateTable { entries, ongoing }
    }

    /// The first offset of the oldest open transaction: the last stable
    /// offset, unless the high watermark is lower.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every producer's entry.
    pub fn entries(&self) -> impl Iterator<Item = (i64, &ProducerStateEntry)> {
        self.entries.iter().map(|(id, entry)| (*id, entry))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerStateEntry> {
        self.entries.get(&producer_id)
    }

    /// Checks a batch without changing anything (the rules in the module
    /// doc).
    pub fn check(&self, batch: &ProducerBatch) -> Result<Check> {
        let Some(entry) = self.entries.get(&batch.producer_id) else {
            return Ok(Check::Append);
        };
        let transactional = match batch.kind {
            BatchKind::Data { transactional } => transactional,
            // Kafka's `checkProducerEpoch` for markers: a marker from an
            // older epoch than the producer's current one is stale.
            BatchKind::Marker { .. } => return check_epoch(batch, entry).map(|()| Check::Append),
        };
        if batch.first_seq < 0 {
            // A coordinator's batch without sequence: only fencing applies.
            return check_epoch(batch, entry).map(|()| Check::Append);
        }
        if let Some(duplicate) = entry.find_duplicate(batch) {
            return Ok(Check::Duplicate(duplicate));
        }
        check_epoch(batch, entry)?;
        if batch.epoch != entry.epoch {
            if batch.first_seq != 0 {
                return Err(Error::api_msg(
                    ResponseError::OutOfOrderSequenceNumber,
                    format!(
                        "new epoch {} of producer {} must start at sequence 0, got {}",
                        batch.epoch, batch.producer_id, batch.first_seq
                    ),
                ));
            }
            return Ok(Check::Append);
        }
        if !transactional && entry.current_txn_first_offset >= 0 {
            return Err(Error::api_msg(
                ResponseError::InvalidTxnState,
                format!(
                    "producer {} wrote a non-transactional batch inside its open transaction",
                    batch.producer_id
                ),
            ));
        }
        // Same epoch, and no batch left of it (after a marker with a new
        // epoch): sequence 0 must follow.
        let last_seq = entry.last_seq().unwrap_or(-1);
        if !in_sequence(last_seq, batch.first_seq) {
            return Err(Error::api_msg(
                ResponseError::OutOfOrderSequenceNumber,
                format!(
                    "out of order sequence number for producer {}: {} (incoming), {last_seq} (current end)",
                    batch.producer_id, batch.first_seq
                ),
            ));
        }
        Ok(Check::Append)
    }

    /// Records an appended batch (already checked) at `first_offset`. A new
    /// epoch drops the batches of the old one. To undo it, keep
    /// [`Self::get`]'s entry from before and [`Self::restore`] it.
    /// A marker ends the producer's open transaction; an ABORT marker that
    /// closes one returns it for the partition's aborted-transaction index.
    pub fn record(
        &mut self,
        batch: &ProducerBatch,
        first_offset: i64,
        last_offset: i64,
        now_ms: i64,
    ) -> Option<AbortedTxn> {
        let entry = self
            .entries
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerStateEntry {
                epoch: batch.epoch,
                batches: VecDeque::with_capacity(NUM_BATCHES_TO_RETAIN),
                last_append_ms: now_ms,
                current_txn_first_offset: -1,
            });
        if entry.epoch != batch.epoch {
            entry.epoch = batch.epoch;
            entry.batches.clear();
        }
        entry.last_append_ms = now_ms;
        let transactional = match batch.kind {
            BatchKind::Marker { commit } => {
                let first = std::mem::replace(&mut entry.current_txn_first_offset, -1);
                if first < 0 {
                    return None;
                }
                let _ = self.ongoing.remove(&first);
                return (!commit).then_some(AbortedTxn {
                    producer_id: batch.producer_id,
                    first_offset: first,
                    last_offset: first_offset,
                });
            }
            BatchKind::Data { transactional } => transactional,
        };
        if transactional && entry.current_txn_first_offset < 0 {
            entry.current_txn_first_offset = first_offset;
            let _ = self.ongoing.insert(first_offset, batch.producer_id);
        }
        if batch.first_seq < 0 {
            // No sequence to remember (a coordinator's batch).
            return None;
        }
        if entry.batches.len() == NUM_BATCHES_TO_RETAIN {
            let _ = entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: batch.first_seq,
            last_seq: batch.last_seq,
            first_offset,
            last_offset,
            timestamp: batch.max_timestamp,
        });
        None
    }

    /// Puts back an entry as [`Self::get`] returned it before a
    /// [`Self::record`] (`None`: the producer had no entry).
    pub fn restore(&mut self, producer_id: i64, previous: Option<ProducerStateEntry>) {
        if let Some(current) = self.entries.get(&producer_id) {
            if current.current_txn_first_offset >= 0 {
                let _ = self.ongoing.remove(&current.current_txn_first_offset);
            }
        }
        if let Some(previous) = &previous {
            if previous.current_txn_first_offset >= 0 {
                let _ = self
                    .ongoing
                    .insert(previous.current_txn_first_offset, producer_id);
            }
        }
        match previous {
            Some(entry) => {
                let _ = self.entries.insert(producer_id, entry);
            }
            None => {
                let _ = self.entries.remove(&producer_id);
            }
        }
    }

    /// Idle that long, and not inside a transaction: Kafka never expires a
    /// producer whose transaction is open (its coordinator aborts it).
    fn is_expired(entry: &ProducerStateEntry, now_ms: i64, expiration_ms: i64) -> bool {
        entry.current_txn_first_offset < 0
            && now_ms.saturating_sub(entry.last_append_ms) >= expiration_ms
    }

    /// Whether any producer has been idle for `expiration_ms` or longer.
    pub fn has_expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        self.entries
            .values()
            .any(|e| Self::is_expired(e, now_ms, expiration_ms))
    }

    /// Forgets producers idle for `expiration_ms` or longer (Kafka's
    /// `removeExpiredProducers`); returns their ids.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> Vec<i64> {
        let expired: Vec<i64> = self
            .entries
            .iter()
            .filter(|(_, e)| Self::is_expired(e, now_ms, expiration_ms))
            .map(|(&id, _)| id)
            .collect();
        for id in &expired {
            let _ = self.entries.remove(id);
        }
        expired
    }
}

/// Version bytes of the stored entry encoding (v1 had no transaction).
const ENCODING_V1: u8 = 1;
const ENCODING_V2: u8 = 2;
const ENTRY_HEADER_LEN: usize = 20;
const BATCH_LEN: usize = 32;

/// Encodes an entry for the `partition_meta` family, fixed-width
/// big-endian: `version(u8)=2 | epoch(i16) | last_append_ms(i64) |
/// current_txn_first_offset(i64) | count(u8) | count x (first_seq(i32) |
/// last_seq(i32) | first_offset(i64) | last_offset(i64) | timestamp(i64))`.
pub fn encode_entry(entry: &ProducerStateEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENTRY_HEADER_LEN + BATCH_LEN * entry.batches.len());
    out.push(ENCODING_V2);
    out.extend_from_slice(&entry.epoch.to_be_bytes());
    out.extend_from_slice(&entry.last_append_ms.to_be_bytes());
    out.extend_from_slice(&entry.current_txn_first_offset.to_be_bytes());
    out.push(entry.batches.len() as u8);
    for b in &entry.batches {
        out.extend_from_slice(&b.first_seq.to_be_bytes());
        out.extend_from_slice(&b.last_seq.to_be_bytes());
        out.extend_from_slice(&b.first_offset.to_be_bytes());
        out.extend_from_slice(&b.last_offset.to_be_bytes());
        out.extend_from_slice(&b.timestamp.to_be_bytes());
    }
    out
}

fn take<const N: usize>(bytes: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = bytes.split_first_chunk::<N>()?;
    *bytes = rest;
    Some(*head)
}

/// Decodes [`encode_entry`]'s output; `None` if it is not one.
pub fn decode_entry(mut bytes: &[u8]) -> Option<ProducerStateEntry> {
    let input = &mut bytes;
    let [version] = take::<1>(input)?;
    if version != ENCODING_V1 && version != ENCODING_V2 {
        return None;
    }
    let epoch = i16::from_be_bytes(take(input)?);
    let last_append_ms = i64::from_be_bytes(take(input)?);
    let current_txn_first_offset = if version == ENCODING_V2 {
        i64::from_be_bytes(take(input)?)
    } else {
        -1
    };
    let [count] = take::<1>(input)?;
    if usize::from(count) > NUM_BATCHES_TO_RETAIN || input.len() != usize::from(count) * BATCH_LEN {
        return None;
    }
    let mut batches = VecDeque::with_capacity(NUM_BATCHES_TO_RETAIN);
    for _ in 0..count {
        batches.push_back(BatchMetadata {
            first_seq: i32::from_be_bytes(take(input)?),
            last_seq: i32::from_be_bytes(take(input)?),
            first_offset: i64::from_be_bytes(take(input)?),
            last_offset: i64::from_be_bytes(take(input)?),
            timestamp: i64::from_be_bytes(take(input)?),
        });
    }
    Some(ProducerStateEntry {
        epoch,
        batches,
        last_append_ms,
        current_txn_first_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PID: i64 = 1000;

    fn batch(epoch: i16, first_seq: i32, count: i32) -> ProducerBatch {
        ProducerBatch {
            producer_id: PID,
            epoch,
            first_seq,
            last_seq: increment_sequence(first_seq, count - 1),
            max_timestamp: 7,
            kind: BatchKind::Data {
                transactional: false,
            },
        }
    }

    fn code(result: Result<Check>) -> i16 {
        result.map(|_| 0).unwrap_or_else(|e| e.code())
    }

    /// Checks and, if appendable, records at `next_offset`; returns the
    /// check and advances `next_offset` past an appended batch.
    fn append(
        table: &mut ProducerStateTable,
        b: ProducerBatch,
        next_offset: &mut i64,
    ) -> Result<Check> {
        let check = table.check(&b)?;
        if check == Check::Append {
            let count = i64::from(b.last_seq.wrapping_sub(b.first_seq)) + 1;
            table.record(&b, *next_offset, *next_offset + count - 1, 0);
            *next_offset += count;
        }
        Ok(check)
    }

    #[test]
    fn in_order_batches_append_and_retries_get_their_original_offsets() {
        let mut table = ProducerStateTable::default();
        let mut next = 100;
        for i in 0..7 {
            assert_eq!(
                append(&mut table, batch(0, i * 10, 10), &mut next).unwrap(),
                Check::Append
            );
        }
        assert_eq!(next, 170);
        // The last five batches are remembered: a retry of any of them is
        // answered with its offsets.
        for i in 2..7 {
            let offsets = match table.check(&batch(0, i * 10, 10)).unwrap() {
                Check::Duplicate(b) => (b.first_offset, b.last_offset),
                Check::Append => panic!("batch {i} is a duplicate"),
            };
            assert_eq!(offsets, (100 + i64::from(i) * 10, 109 + i64::from(i) * 10));
        }
        // An older one is out of the cache and out of sequence.
        assert_eq!(code(table.check(&batch(0, 10, 10))), 45);
        // A different range over cached sequences is not a duplicate.
        assert_eq!(code(table.check(&batch(0, 60, 5))), 45);
        assert_eq!(table.get(PID).unwrap().batches.len(), NUM_BATCHES_TO_RETAIN);
    }

    #[test]
    fn a_gap_is_out_of_order() {
        let mut table = ProducerStateTable::default();
        let mut next = 0;
        let _ = append(&mut table, batch(0, 0, 5), &mut next).unwrap();
        assert_eq!(code(table.check(&batch(0, 6, 1))), 45);
        assert_eq!(code(table.check(&batch(0, 4, 2))), 45);
        assert_eq!(table.check(&batch(0, 5, 1)).unwrap(), Check::Append);
    }

    #[test]
    fn an_older_epoch_is_fenced() {
        let mut table = ProducerStateTable::default();
        let mut next = 0;
        let _ = append(&mut table, batch(3, 0, 1), &mut next).unwrap();
        assert_eq!(code(table.check(&batch(2, 1, 1))), 47);
        // Even a batch that would be a duplicate at the old epoch.
        assert_eq!(code(table.check(&batch(2, 0, 1))), 47);
    }

    #[test]
    fn a_new_epoch_starts_at_sequence_zero_and_forgets_the_old_batches() {
        let mut table = ProducerStateTable::default();
        let mut next = 0;
        let _ = append(&mut table, batch(0, 0, 3), &mut next).unwrap();
        let _ = append(&mut table, batch(0, 3, 3), &mut next).unwrap();
        assert_eq!(code(table.check(&batch(1, 6, 1))), 45);
        assert_eq!(
            append(&mut table, batch(1, 0, 2), &mut next).unwrap(),
            Check::Append
        );
        let entry = table.get(PID).unwrap();
        assert_eq!((entry.epoch, entry.batches.len()), (1, 1));
        // The old epoch's batches are no longer duplicates: fenced instead.
        assert_eq!(code(table.check(&batch(0, 3, 3))), 47);
        assert_eq!(table.check(&batch(1, 2, 1)).unwrap(), Check::Append);
    }

    #[test]
    fn sequences_wrap_around_at_i32_max() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 3), 8);
        let mut table = ProducerStateTable::default();
        let mut next = 0;
        // An unknown producer may start anywhere.
        let near_end = batch(0, i32::MAX - 2, 3);
        assert_eq!(near_end.last_seq, i32::MAX);
        let _ = append(&mut table, near_end, &mut next).unwrap();
        assert_eq!(code(table.check(&batch(0, i32::MAX, 1))), 45);
        let across = batch(0, 0, 4);
        assert_eq!(
            append(&mut table, across, &mut next).unwrap(),
            Check::Append
        );
        // A batch spanning the wrap is recognised as a duplicate too.
        let mut table = ProducerStateTable::default();
        let spanning = batch(0, i32::MAX - 1, 4);
        assert_eq!(spanning.last_seq, 1);
        let _ = append(&mut table, spanning, &mut next).unwrap();
        assert!(matches!(
            table.check(&spanning).unwrap(),
            Check::Duplicate(_)
        ));
        assert_eq!(table.check(&batch(0, 2, 1)).unwrap(), Check::Append);
    }

    #[test]
    fn an_unknown_producer_accepts_any_sequence() {
        let table = ProducerStateTable::default();
        assert_eq!(table.check(&batch(0, 12_345, 10)).unwrap(), Check::Append);
        assert_eq!(table.check(&batch(9, 0, 1)).unwrap(), Check::Append);
    }

    #[test]
    fn restore_undoes_a_record() {
        let mut table = ProducerStateTable::default();
        let mut next = 0;
        let _ = append(&mut table, batch(0, 0, 1), &mut next).unwrap();
        let before = table.clone();
        let previous = table.get(PID).cloned();
        table.record(&batch(0, 1, 1), 1, 1, 5);
        assert_ne!(table, before);
        table.restore(PID, previous);
        assert_eq!(table, before);
        let other = ProducerBatch {
            producer_id: 7,
            ..batch(0, 0, 1)
        };
        table.record(&other, 2, 2, 5);
        table.restore(7, None);
        assert_eq!(table, before);
    }

    #[test]
    fn idle_producers_expire() {
        let mut table = ProducerStateTable::default();
        table.record(&batch(0, 0, 1), 0, 0, 1_000);
        let other = ProducerBatch {
            producer_id: 2,
            ..batch(0, 0, 1)
        };
        table.record(&other, 1, 1, 5_000);
        assert!(!table.has_expired(5_999, 5_000));
        assert!(table.has_expired(6_000, 5_000));
        assert_eq!(table.remove_expired(6_000, 5_000), vec![PID]);
        assert_eq!(table.len(), 1);
        assert!(table.get(2).is_some());
    }

    #[test]
    fn entries_roundtrip_and_bad_bytes_are_rejected() {
        let mut table = ProducerStateTable::default();
        let mut next = 40;
        for i in 0..6 {
            let _ = append(&mut table, batch(4, i * 2, 2), &mut next).unwrap();
        }
        let entry = table.get(PID).unwrap();
        let bytes = encode_entry(entry);
        assert_eq!(bytes.len(), ENTRY_HEADER_LEN + 5 * BATCH_LEN);
        assert_eq!(decode_entry(&bytes).as_ref(), Some(entry));
        assert_eq!(decode_entry(&bytes[..bytes.len() - 1]), None);
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 9;
        assert_eq!(decode_entry(&wrong_version), None);
        let empty = ProducerStateEntry {
            epoch: 0,
            batches: VecDeque::new(),
            last_append_ms: 3,
            current_txn_first_offset: 12,
        };
        assert_eq!(decode_entry(&encode_entry(&empty)), Some(empty));
    }

    fn txn(epoch: i16, first_seq: i32, count: i32) -> ProducerBatch {
        ProducerBatch {
            kind: BatchKind::Data {
                transactional: true,
            },
            ..batch(epoch, first_seq, count)
        }
    }

    fn marker(producer_id: i64, epoch: i16, commit: bool) -> ProducerBatch {
        ProducerBatch {
            producer_id,
            epoch,
            first_seq: -1,
            last_seq: -1,
            max_timestamp: 7,
            kind: BatchKind::Marker { commit },
        }
    }

    #[test]
    fn transactions_bound_the_stable_offset_and_aborts_are_indexed() {
        let mut table = ProducerStateTable::default();
        let mut next = 10;
        assert_eq!(table.first_unstable_offset(), None);
        let _ = append(&mut table, txn(0, 0, 5), &mut next).unwrap();
        let _ = append(&mut table, txn(0, 5, 5), &mut next).unwrap();
        // The transaction opened at its first batch.
        assert_eq!(table.first_unstable_offset(), Some(10));
        assert_eq!(table.get(PID).unwrap().current_txn_first_offset, 10);
        // Another producer's later transaction does not move it.
        let other = ProducerBatch {
            producer_id: 7,
            ..txn(0, 0, 1)
        };
        assert_eq!(table.record(&other, 20, 20, 0), None);
        assert_eq!(table.first_unstable_offset(), Some(10));
        // Inside its transaction a producer may not write plain batches.
        assert_eq!(code(table.check(&batch(0, 10, 1))), 48);
        // COMMIT closes it without an index entry.
        assert_eq!(table.check(&marker(PID, 0, true)).unwrap(), Check::Append);
        assert_eq!(table.record(&marker(PID, 0, true), 21, 21, 0), None);
        assert_eq!(table.first_unstable_offset(), Some(20));
        // ABORT returns the aborted range.
        assert_eq!(
            table.record(&marker(7, 0, false), 22, 22, 0),
            Some(AbortedTxn {
                producer_id: 7,
                first_offset: 20,
                last_offset: 22
            })
        );
        assert_eq!(table.first_unstable_offset(), None);
        // A marker without an open transaction changes nothing more.
        assert_eq!(table.record(&marker(7, 0, false), 23, 23, 0), None);
        // Plain batches continue the sequence after the transaction.
        assert_eq!(table.check(&batch(0, 10, 1)).unwrap(), Check::Append);
    }

    #[test]
    fn a_fencing_marker_bumps_the_epoch_and_stale_markers_are_refused() {
        let mut table = ProducerStateTable::default();
        let mut next = 0;
        let _ = append(&mut table, txn(2, 0, 3), &mut next).unwrap();
        // The coordinator fenced the producer: ABORT under epoch 3.
        assert!(table.record(&marker(PID, 3, false), 3, 3, 0).is_some());
        assert_eq!(table.get(PID).unwrap().epoch, 3);
        assert_eq!(code(table.check(&marker(PID, 2, true))), 47);
        // The zombie's late batch at epoch 2 is fenced.
        assert_eq!(code(table.check(&txn(2, 3, 1))), 47);
        // The new epoch starts at sequence 0.
        assert_eq!(table.check(&txn(3, 0, 1)).unwrap(), Check::Append);
        assert_eq!(code(table.check(&txn(3, 1, 1))), 45);
    }

    #[test]
    fn restore_and_expiry_keep_open_transactions() {
        let mut table = ProducerStateTable::default();
        let previous = table.get(PID).cloned();
        let _ = table.record(&txn(0, 0, 1), 5, 5, 0);
        assert_eq!(table.first_unstable_offset(), Some(5));
        table.restore(PID, previous);
        assert_eq!(table.first_unstable_offset(), None);
        let _ = table.record(&txn(0, 0, 1), 5, 5, 0);
        // Idle for long, but inside a transaction: kept.
        assert!(!table.has_expired(1_000_000, 10));
        assert!(table.remove_expired(1_000_000, 10).is_empty());
        let bytes = encode_entry(table.get(PID).unwrap());
        let rebuilt = ProducerStateTable::from_entries([(PID, decode_entry(&bytes).unwrap())]);
        assert_eq!(rebuilt.first_unstable_offset(), Some(5));
        let aborted = AbortedTxn {
            producer_id: PID,
            first_offset: 5,
            last_offset: 9,
        };
        assert_eq!(
            AbortedTxn::decode(9, &aborted.encode_value()),
            Some(aborted)
        );
    }

    #[test]
    fn markers_parse_from_headers() {
        let marker_bytes = crate::log::batch::encode_marker(PID, 4, false, 0, 9);
        let header = BatchHeader::new(&marker_bytes).unwrap();
        let parsed = ProducerBatch::from_header(&header, false).unwrap().unwrap();
        assert_eq!(parsed.kind, BatchKind::Marker { commit: false });
        assert_eq!(parsed.epoch, 4);
    }

    #[test]
    fn headers_without_producer_skip_and_negative_sequences_are_invalid() {
        let plain = crate::log::batch::tests::test_batch(3, 0, 0);
        let header = BatchHeader::new(&plain).unwrap();
        assert_eq!(ProducerBatch::from_header(&header, false).unwrap(), None);
        let mut idempotent = plain.clone();
        idempotent[43..51].copy_from_slice(&PID.to_be_bytes());
        idempotent[51..53].copy_from_slice(&2i16.to_be_bytes());
        idempotent[53..57].copy_from_slice(&i32::MAX.to_be_bytes());
        let header = BatchHeader::new(&idempotent).unwrap();
        let parsed = ProducerBatch::from_header(&header, false).unwrap().unwrap();
        assert_eq!(
            (parsed.epoch, parsed.first_seq, parsed.last_seq),
            (2, i32::MAX, 1)
        );
        idempotent[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        let header = BatchHeader::new(&idempotent).unwrap();
        assert_eq!(
            ProducerBatch::from_header(&header, false)
                .unwrap_err()
                .code(),
            87
        );
    }
}
