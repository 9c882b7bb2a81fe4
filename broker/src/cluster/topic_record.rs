//! Binary encoding of a topic's metadata record in the `topics` column
//! family (never JSON): `version u8 | name_len u16 | name | partitions i32 |
//! configs u16 | (key_len u16 | key | value_len u32 | value)*`.

use std::collections::BTreeMap;

use uuid::Uuid;

/// A topic as stored: its id, name, partition count and config overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    pub id: Uuid,
    pub name: String,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

const VERSION: u8 = 1;

impl TopicRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.name.len());
        out.push(VERSION);
        put_str16(&mut out, &self.name);
        out.extend_from_slice(&self.partitions.to_be_bytes());
        out.extend_from_slice(&(self.configs.len() as u16).to_be_bytes());
        for (key, value) in &self.configs {
            put_str16(&mut out, key);
            out.extend_from_slice(&(value.len() as u32).to_be_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        out
    }

    pub fn decode(id: Uuid, bytes: &[u8]) -> Option<Self> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(1)?[0] != VERSION {
            return None;
        }
        let name = r.str16()?;
        let partitions = i32::from_be_bytes(r.take(4)?.try_into().ok()?);
        let count = u16::from_be_bytes(r.take(2)?.try_into().ok()?);
        let mut configs = BTreeMap::new();
        for _ in 0..count {
            let key = r.str16()?;
            let len = u32::from_be_bytes(r.take(4)?.try_into().ok()?) as usize;
            let value = String::from_utf8(r.take(len)?.to_vec()).ok()?;
            let _previous = configs.insert(key, value);
        }
        Some(TopicRecord {
            id,
            name,
            partitions,
            configs,
        })
    }
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }
    fn str16(&mut self) -> Option<String> {
        let len = u16::from_be_bytes(self.take(2)?.try_into().ok()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_reject_garbage() {
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_owned(), "1000".to_owned());
        let record = TopicRecord {
            id: Uuid::from_u128(5),
            name: "metrics".to_owned(),
            partitions: 6,
            configs,
        };
        let bytes = record.encode();
        assert_eq!(TopicRecord::decode(record.id, &bytes), Some(record.clone()));
        assert_eq!(
            TopicRecord::decode(record.id, &bytes[..bytes.len() - 1]),
            None
        );
        assert_eq!(TopicRecord::decode(record.id, &[9]), None);
    }
}
