//! The records of `__consumer_offsets`, in Apache Kafka's own layout so that
//! Kafka's tools can read the topic:
//!
//! | record          | key (version, fields)                         | value |
//! |-----------------|-----------------------------------------------|-------|
//! | committed offset | `1: group string, topic string, partition i32` | `3: offset i64, leader_epoch i32, metadata string, commit_timestamp i64` |
//! | group metadata  | `2: group string`                              | `3: protocol_type string, generation i32, protocol string?, leader string?, current_state_timestamp i64, members [member_id, group_instance_id?, client_id, client_host, rebalance_timeout i32, session_timeout i32, subscription bytes, assignment bytes]` |
//!
//! And of `__transaction_state`, also Kafka's (`TransactionLogKey` and
//! `TransactionLogValue`, version 0):
//!
//! | record          | key (version, fields)                         | value |
//! |-----------------|-----------------------------------------------|-------|
//! | transaction     | `0: transactional_id string`                  | `0: producer_id i64, producer_epoch i16, timeout_ms i32, state i8, partitions [topic string, [partition i32]], last_update_ms i64, start_ms i64` |
//!
//! Strings are an i16 length and UTF-8 (-1: null); arrays and bytes an i32
//! length. A record with a null value is a tombstone: the offset or group
//! was deleted.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::transaction::{TxnMetadata, TxnState};
use crate::error::{Error, Result};

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;
const TXN_KEY_VERSION: i16 = 0;
const TXN_VALUE_VERSION: i16 = 0;

/// A decoded record key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

impl RecordKey {
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. } | RecordKey::Group { group } => group,
        }
    }
}

/// A committed offset's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// One member in a group metadata value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout: i32,
    pub session_timeout: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's metadata value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp: i64,
    pub members: Vec<MemberValue>,
}

fn put_string(buf: &mut BytesMut, s: &str) {
    // Callers bound lengths (group ids, topics, metadata) well below 32 KiB.
    buf.put_i16(s.len().min(i16::MAX as usize) as i16);
    buf.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

fn corrupt(what: &str) -> Error {
    Error::Internal(format!("corrupt coordinator record: {what}"))
}

fn get_i16(buf: &mut Bytes) -> Result<i16> {
    (buf.remaining() >= 2)
        .then(|| buf.get_i16())
        .ok_or_else(|| corrupt("truncated i16"))
}

fn get_i32(buf: &mut Bytes) -> Result<i32> {
    (buf.remaining() >= 4)
        .then(|| buf.get_i32())
        .ok_or_else(|| corrupt("truncated i32"))
}

fn get_i64(buf: &mut Bytes) -> Result<i64> {
    (buf.remaining() >= 8)
        .then(|| buf.get_i64())
        .ok_or_else(|| corrupt("truncated i64"))
}

fn get_nullable_string(buf: &mut Bytes) -> Result<Option<String>> {
    let len = get_i16(buf)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if buf.remaining() < len {
        return Err(corrupt("truncated string"));
    }
    let raw = buf.split_to(len);
    String::from_utf8(raw.to_vec())
        .map(Some)
        .map_err(|_| corrupt("string is not UTF-8"))
}

fn get_string(buf: &mut Bytes) -> Result<String> {
    Ok(get_nullable_string(buf)?.unwrap_or_default())
}

fn get_bytes(buf: &mut Bytes) -> Result<Bytes> {
    let len = get_i32(buf)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    let len = len as usize;
    if buf.remaining() < len {
        return Err(corrupt("truncated bytes"));
    }
    Ok(buf.split_to(len))
}

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut buf = BytesMut::with_capacity(8 + group.len() + topic.len());
    buf.put_i16(OFFSET_KEY_VERSION);
    put_string(&mut buf, group);
    put_string(&mut buf, topic);
    buf.put_i32(partition);
    buf.freeze()
}

pub fn group_key(group: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + group.len());
    buf.put_i16(GROUP_KEY_VERSION);
    put_string(&mut buf, group);
    buf.freeze()
}

pub fn offset_value(v: &OffsetValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(24 + v.metadata.len());
    buf.put_i16(OFFSET_VALUE_VERSION);
    buf.put_i64(v.offset);
    buf.put_i32(v.leader_epoch);
    put_string(&mut buf, &v.metadata);
    buf.put_i64(v.commit_timestamp);
    buf.freeze()
}

pub fn group_value(v: &GroupValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(GROUP_VALUE_VERSION);
    put_string(&mut buf, &v.protocol_type);
    buf.put_i32(v.generation);
    put_nullable_string(&mut buf, v.protocol.as_deref());
    put_nullable_string(&mut buf, v.leader.as_deref());
    buf.put_i64(v.current_state_timestamp);
    buf.put_i32(v.members.len() as i32);
    for m in &v.members {
        put_string(&mut buf, &m.member_id);
        put_nullable_string(&mut buf, m.group_instance_id.as_deref());
        put_string(&mut buf, &m.client_id);
        put_string(&mut buf, &m.client_host);
        buf.put_i32(m.rebalance_timeout);
        buf.put_i32(m.session_timeout);
        put_bytes(&mut buf, &m.subscription);
        put_bytes(&mut buf, &m.assignment);
    }
    buf.freeze()
}

/// The key of a transactional id's record.
pub fn txn_key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + transactional_id.len());
    buf.put_i16(TXN_KEY_VERSION);
    put_string(&mut buf, transactional_id);
    buf.freeze()
}

/// The transactional id of a `__transaction_state` key.
pub fn decode_txn_key(mut buf: Bytes) -> Result<String> {
    match get_i16(&mut buf)? {
        TXN_KEY_VERSION => get_string(&mut buf),
        v => Err(corrupt(&format!("unknown transaction key version {v}"))),
    }
}

/// Kafka's `TransactionStatus` byte of a state.
fn txn_state_byte(state: TxnState) -> i8 {
    match state {
        TxnState::Empty => 0,
        TxnState::Ongoing => 1,
        TxnState::PrepareCommit => 2,
        TxnState::PrepareAbort => 3,
        TxnState::CompleteCommit => 4,
        TxnState::CompleteAbort => 5,
    }
}

/// A transactional id's state, as stored.
pub fn txn_value(meta: &TxnMetadata) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(TXN_VALUE_VERSION);
    buf.put_i64(meta.producer_id);
    buf.put_i16(meta.producer_epoch);
    buf.put_i32(meta.timeout_ms);
    buf.put_i8(txn_state_byte(meta.state));
    // Grouped by topic, as Kafka writes them.
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in &meta.partitions {
        match topics.last_mut() {
            Some((t, parts)) if *t == topic.as_str() => parts.push(*partition),
            _ => topics.push((topic.as_str(), vec![*partition])),
        }
    }
    buf.put_i32(topics.len() as i32);
    for (topic, partitions) in topics {
        put_string(&mut buf, topic);
        buf.put_i32(partitions.len() as i32);
        for p in partitions {
            buf.put_i32(p);
        }
    }
    buf.put_i64(meta.update_ms);
    buf.put_i64(meta.start_ms);
    buf.freeze()
}

/// Decodes [`txn_value`].
pub fn decode_txn_value(mut buf: Bytes) -> Result<TxnMetadata> {
    let version = get_i16(&mut buf)?;
    if version != TXN_VALUE_VERSION {
        return Err(corrupt(&format!(
            "unknown transaction value version {version}"
        )));
    }
    let producer_id = get_i64(&mut buf)?;
    let producer_epoch = get_i16(&mut buf)?;
    let timeout_ms = get_i32(&mut buf)?;
    if buf.remaining() < 1 {
        return Err(corrupt("truncated state"));
    }
    let state = match buf.get_i8() {
        0 => TxnState::Empty,
        1 => TxnState::Ongoing,
        2 => TxnState::PrepareCommit,
        3 => TxnState::PrepareAbort,
        4 => TxnState::CompleteCommit,
        5 => TxnState::CompleteAbort,
        other => return Err(corrupt(&format!("unknown transaction state {other}"))),
    };
    let mut partitions = std::collections::BTreeSet::new();
    let topics = get_i32(&mut buf)?;
    for _ in 0..topics.max(0) {
        let topic = get_string(&mut buf)?;
        let count = get_i32(&mut buf)?;
        if count < 0 || buf.remaining() < count as usize * 4 {
            return Err(corrupt("truncated partitions"));
        }
        for _ in 0..count {
            let _ = partitions.insert((topic.clone(), buf.get_i32()));
        }
    }
    let update_ms = get_i64(&mut buf)?;
    let start_ms = get_i64(&mut buf)?;
    Ok(TxnMetadata {
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        start_ms,
        update_ms,
    })
}

pub fn decode_key(mut buf: Bytes) -> Result<RecordKey> {
    match get_i16(&mut buf)? {
        0 | 1 => Ok(RecordKey::Offset {
            group: get_string(&mut buf)?,
            topic: get_string(&mut buf)?,
            partition: get_i32(&mut buf)?,
        }),
        2 => Ok(RecordKey::Group {
            group: get_string(&mut buf)?,
        }),
        v => Err(corrupt(&format!("unknown key version {v}"))),
    }
}

/// Decodes an offset value of any version Kafka has written (0-3).
pub fn decode_offset_value(mut buf: Bytes) -> Result<OffsetValue> {
    let version = get_i16(&mut buf)?;
    if !(0..=3).contains(&version) {
        return Err(corrupt(&format!("unknown offset value version {version}")));
    }
    let offset = get_i64(&mut buf)?;
    let leader_epoch = if version >= 3 { get_i32(&mut buf)? } else { -1 };
    let metadata = get_string(&mut buf)?;
    let commit_timestamp = get_i64(&mut buf)?;
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

/// Decodes a group metadata value of version 3 (the one written here).
pub fn decode_group_value(mut buf: Bytes) -> Result<GroupValue> {
    let version = get_i16(&mut buf)?;
    if version != GROUP_VALUE_VERSION {
        return Err(corrupt(&format!(
            "unsupported group value version {version}"
        )));
    }
    let protocol_type = get_string(&mut buf)?;
    let generation = get_i32(&mut buf)?;
    let protocol = get_nullable_string(&mut buf)?;
    let leader = get_nullable_string(&mut buf)?;
    let current_state_timestamp = get_i64(&mut buf)?;
    let count = get_i32(&mut buf)?;
    let mut members = Vec::new();
    for _ in 0..count.max(0) {
        members.push(MemberValue {
            member_id: get_string(&mut buf)?,
            group_instance_id: get_nullable_string(&mut buf)?,
            client_id: get_string(&mut buf)?,
            client_host: get_string(&mut buf)?,
            rebalance_timeout: get_i32(&mut buf)?,
            session_timeout: get_i32(&mut buf)?,
            subscription: get_bytes(&mut buf)?,
            assignment: get_bytes(&mut buf)?,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_records_round_trip() {
        let key = offset_key("g", "topic", 7);
        assert_eq!(
            decode_key(key).unwrap(),
            RecordKey::Offset {
                group: "g".into(),
                topic: "topic".into(),
                partition: 7
            }
        );
        let value = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into(),
            commit_timestamp: 99,
        };
        assert_eq!(decode_offset_value(offset_value(&value)).unwrap(), value);
    }

    #[test]
    fn group_records_round_trip() {
        assert_eq!(
            decode_key(group_key("grp")).unwrap(),
            RecordKey::Group {
                group: "grp".into()
            }
        );
        let value = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: None,
            current_state_timestamp: 1234,
            members: vec![MemberValue {
                member_id: "m-1".into(),
                group_instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout: 300_000,
                session_timeout: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(decode_group_value(group_value(&value)).unwrap(), value);
    }

    #[test]
    fn truncated_records_are_errors_not_panics() {
        let full = offset_key("group", "t", 1);
        for cut in 0..full.len() {
            assert!(decode_key(full.slice(..cut)).is_err());
        }
        assert!(decode_offset_value(Bytes::from_static(&[0, 9])).is_err());
    }

    #[test]
    fn transaction_records_roundtrip() {
        let mut meta = TxnMetadata {
            producer_id: 4000,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions: Default::default(),
            start_ms: 10,
            update_ms: 20,
        };
        for p in [("a", 0), ("a", 2), ("b", 1)] {
            let _ = meta.partitions.insert((p.0.to_owned(), p.1));
        }
        assert_eq!(decode_txn_value(txn_value(&meta)).unwrap(), meta);
        assert_eq!(decode_txn_key(txn_key("acme.tx")).unwrap(), "acme.tx");
        let v = txn_value(&meta);
        assert!(decode_txn_value(v.slice(..v.len() - 1)).is_err());
        // A group key is not a transaction key.
        assert!(decode_txn_key(group_key("g")).is_err());
    }
}
