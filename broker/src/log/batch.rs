//! A view over the 61-byte header of a magic v2 record batch, validation, and
//! the in-place patches the broker makes before storing it.
//!
//! Layout (big-endian): baseOffset i64 @0, batchLength i32 @8,
//! partitionLeaderEpoch i32 @12, magic i8 @16, crc u32 @17, attributes i16 @21,
//! lastOffsetDelta i32 @23, baseTimestamp i64 @27, maxTimestamp i64 @35,
//! producerId i64 @43, producerEpoch i16 @51, baseSequence i32 @53,
//! recordCount i32 @57. The CRC-32C covers bytes 21.. so the broker can patch
//! the base offset and leader epoch without recomputing it.

use kafka_protocol::error::ResponseError;

use crate::error::{Error, Result};

pub const HEADER_LEN: usize = 61;
/// Bytes before and including `batchLength`: not counted by batchLength.
pub const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;

/// A read-only view over a validated batch header.
#[derive(Debug, Clone, Copy)]
pub struct BatchHeader<'a> {
    bytes: &'a [u8],
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(raw)
}

impl<'a> BatchHeader<'a> {
    /// Views the header of one stored batch (already validated on append).
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        (bytes.len() >= HEADER_LEN).then_some(BatchHeader { bytes })
    }

    pub fn base_offset(&self) -> i64 {
        i64_at(self.bytes, 0)
    }
    pub fn batch_length(&self) -> i32 {
        i32_at(self.bytes, 8)
    }
    pub fn partition_leader_epoch(&self) -> i32 {
        i32_at(self.bytes, 12)
    }
    pub fn magic(&self) -> i8 {
        self.bytes[16] as i8
    }
    pub fn crc(&self) -> u32 {
        u32::from_be_bytes([
            self.bytes[17],
            self.bytes[18],
            self.bytes[19],
            self.bytes[20],
        ])
    }
    pub fn attributes(&self) -> i16 {
        i16_at(self.bytes, 21)
    }
    pub fn last_offset_delta(&self) -> i32 {
        i32_at(self.bytes, 23)
    }
    pub fn base_timestamp(&self) -> i64 {
        i64_at(self.bytes, 27)
    }
    pub fn max_timestamp(&self) -> i64 {
        i64_at(self.bytes, 35)
    }
    pub fn producer_id(&self) -> i64 {
        i64_at(self.bytes, 43)
    }
    pub fn producer_epoch(&self) -> i16 {
        i16_at(self.bytes, 51)
    }
    pub fn base_sequence(&self) -> i32 {
        i32_at(self.bytes, 53)
    }
    pub fn record_count(&self) -> i32 {
        i32_at(self.bytes, 57)
    }
    /// The offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset() + i64::from(self.last_offset_delta())
    }
    /// Whether the transactional bit (attributes bit 4) is set.
    pub fn is_transactional(&self) -> bool {
        self.attributes() & 0x10 != 0
    }
    /// Whether this is a control batch (attributes bit 5).
    pub fn is_control(&self) -> bool {
        self.attributes() & 0x20 != 0
    }

    /// The marker of a control batch: `Some(true)` for COMMIT, `Some(false)`
    /// for ABORT, `None` for a data batch or a control record this broker
    /// does not know (its first record's key: version i16, type i16).
    pub fn control_marker(&self) -> Option<bool> {
        if !self.is_control() || self.record_count() < 1 {
            return None;
        }
        let mut at = &self.bytes[HEADER_LEN..];
        let _length = read_varint(&mut at)?;
        let (_attributes, rest) = at.split_first()?;
        at = rest;
        let _timestamp_delta = read_varint(&mut at)?;
        let _offset_delta = read_varint(&mut at)?;
        let key_length = read_varint(&mut at)?;
        if key_length < 4 || at.len() < 4 {
            return None;
        }
        match i16_at(at, 2) {
            CONTROL_ABORT => Some(false),
            CONTROL_COMMIT => Some(true),
            _ => None,
        }
    }
}

/// Control record types (Kafka's `ControlRecordType`).
const CONTROL_ABORT: i16 = 0;
const CONTROL_COMMIT: i16 = 1;
/// Attributes of a transaction marker: transactional and control.
const MARKER_ATTRIBUTES: i16 = 0x10 | 0x20;

/// Reads one zigzag varint (at most 10 bytes), advancing `at`.
fn read_varint(at: &mut &[u8]) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        let (&byte, rest) = at.split_first()?;
        *at = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    None
}

/// A transaction marker: one control batch of one record, as a partition
/// leader writes it for WriteTxnMarkers (Kafka's `EndTransactionMarker`),
/// base offset 0 until the log assigns one. The record's key is version 0
/// and the marker type; its value is version 0 and the coordinator epoch.
pub fn encode_marker(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Vec<u8> {
    let mut record = vec![
        0u8, // attributes
        0,   // timestamp delta 0 (zigzag varint)
        0,   // offset delta 0
        8,   // key length 4 (zigzag)
    ];
    record.extend_from_slice(&0i16.to_be_bytes());
    let kind = if commit {
        CONTROL_COMMIT
    } else {
        CONTROL_ABORT
    };
    record.extend_from_slice(&kind.to_be_bytes());
    record.push(12); // value length 6 (zigzag)
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&coordinator_epoch.to_be_bytes());
    record.push(0); // no headers
    let mut b = vec![0u8; HEADER_LEN];
    b.push((record.len() as u8) << 1); // record length, zigzag (< 64)
    b.extend_from_slice(&record);
    let len = (b.len() - LOG_OVERHEAD) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    b[16] = 2;
    b[21..23].copy_from_slice(&MARKER_ATTRIBUTES.to_be_bytes());
    b[23..27].copy_from_slice(&0i32.to_be_bytes());
    b[27..35].copy_from_slice(&timestamp.to_be_bytes());
    b[35..43].copy_from_slice(&timestamp.to_be_bytes());
    b[43..51].copy_from_slice(&producer_id.to_be_bytes());
    b[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
    b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    b[57..61].copy_from_slice(&1i32.to_be_bytes());
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn invalid(message: impl Into<String>) -> Error {
    Error::api_msg(ResponseError::InvalidRecord, message)
}

/// Validates the records of one partition in a Produce request (v3+): exactly
/// one magic v2 batch, consistent lengths and counts, a matching CRC, and no
/// larger than `max_message_bytes`. Returns the header view. Control
/// batches pass only where `allow_control` (the broker's own markers).
pub fn validate_produce(
    records: &[u8],
    max_message_bytes: i32,
    allow_control: bool,
) -> Result<BatchHeader<'_>> {
    if records.len() < HEADER_LEN {
        return Err(Error::api_msg(
            ResponseError::CorruptMessage,
            format!(
                "record batch of {} bytes is shorter than its header",
                records.len()
            ),
        ));
    }
    let header = BatchHeader { bytes: records };
    if header.magic() != 2 {
        return Err(invalid(format!(
            "produce requests v3+ must use record batch magic v2, got magic {}",
            header.magic()
        )));
    }
    let batch_size = i64::from(header.batch_length()) + LOG_OVERHEAD as i64;
    if batch_size < HEADER_LEN as i64 {
        return Err(Error::api_msg(
            ResponseError::CorruptMessage,
            "batch length too small",
        ));
    }
    if batch_size != records.len() as i64 {
        if batch_size < records.len() as i64 {
            return Err(invalid(
                "produce requests v3+ must contain exactly one record batch",
            ));
        }
        return Err(Error::api_msg(
            ResponseError::CorruptMessage,
            format!(
                "batch length {batch_size} exceeds the {} bytes sent",
                records.len()
            ),
        ));
    }
    if records.len() > max_message_bytes.max(0) as usize {
        return Err(Error::api_msg(
            ResponseError::MessageTooLarge,
            format!(
                "record batch of {} bytes is larger than max.message.bytes {max_message_bytes}",
                records.len()
            ),
        ));
    }
    if crc32c::crc32c(&records[CRC_START..]) != header.crc() {
        return Err(Error::api_msg(
            ResponseError::CorruptMessage,
            "record batch CRC mismatch",
        ));
    }
    if header.base_offset() != 0 {
        return Err(invalid(format!(
            "the base offset of a produced batch must be 0, got {}",
            header.base_offset()
        )));
    }
    if header.record_count() < 1 || header.last_offset_delta() != header.record_count() - 1 {
        return Err(invalid(format!(
            "record count {} does not match last offset delta {}",
            header.record_count(),
            header.last_offset_delta()
        )));
    }
    if header.is_control() && !allow_control {
        return Err(invalid("clients may not produce control batches"));
    }
    Ok(header)
}

/// Patches the base offset and partition leader epoch in place; both lie
/// outside the CRC.
pub fn patch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a valid uncompressed batch of `count` records with empty
    /// bodies, for tests. The records section is filler: the broker never
    /// parses it on the produce path.
    pub(crate) fn test_batch(count: i32, max_timestamp: i64, filler: usize) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN + filler];
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[16] = 2;
        b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        b[27..35].copy_from_slice(&max_timestamp.to_be_bytes());
        b[35..43].copy_from_slice(&max_timestamp.to_be_bytes());
        b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
        b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
        b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        b[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn code(r: Result<BatchHeader<'_>>) -> i16 {
        r.map(|_| 0).unwrap_or_else(|e| e.code())
    }

    #[test]
    fn valid_batch_passes_and_patch_keeps_crc() {
        let mut b = test_batch(5, 1000, 10);
        let h = validate_produce(&b, 1_000_000, false).unwrap();
        assert_eq!(h.record_count(), 5);
        assert_eq!(h.last_offset_delta(), 4);
        patch(&mut b, 100, 7);
        let h = BatchHeader::new(&b).unwrap();
        assert_eq!(
            (h.base_offset(), h.last_offset(), h.partition_leader_epoch()),
            (100, 104, 7)
        );
        assert_eq!(crc32c::crc32c(&b[CRC_START..]), h.crc());
    }

    #[test]
    fn bad_batches_get_kafka_codes() {
        let good = test_batch(2, 0, 4);
        assert_eq!(code(validate_produce(&good[..30], 1 << 20, false)), 2);
        let mut bad_crc = good.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 1;
        assert_eq!(code(validate_produce(&bad_crc, 1 << 20, false)), 2);
        let mut magic1 = good.clone();
        magic1[16] = 1;
        assert_eq!(code(validate_produce(&magic1, 1 << 20, false)), 87);
        assert_eq!(code(validate_produce(&good, HEADER_LEN as i32, false)), 10);
        let mut two = good.clone();
        two.extend_from_slice(&good);
        assert_eq!(code(validate_produce(&two, 1 << 20, false)), 87);
        let mut offset = good.clone();
        offset[7] = 1;
        assert_eq!(code(validate_produce(&offset, 1 << 20, false)), 87);
        let mut truncated = good.clone();
        truncated.truncate(good.len() - 1);
        assert_eq!(code(validate_produce(&truncated, 1 << 20, false)), 2);
    }

    #[test]
    fn markers_are_valid_control_batches_that_decode_back() {
        for commit in [true, false] {
            let marker = encode_marker(42, 3, commit, 7, 1_000);
            assert_eq!(code(validate_produce(&marker, 1 << 20, false)), 87);
            let h = validate_produce(&marker, 1 << 20, true).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!((h.producer_id(), h.producer_epoch()), (42, 3));
            assert_eq!(h.control_marker(), Some(commit));
            // Kafka's own decoder reads it as one control record.
            let mut bytes = bytes::Bytes::from(marker.clone());
            let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).unwrap();
            assert_eq!(set.records.len(), 1);
            assert!(set.records[0].control && set.records[0].transactional);
        }
        assert_eq!(
            BatchHeader::new(&test_batch(1, 0, 4))
                .unwrap()
                .control_marker(),
            None
        );
    }
}
