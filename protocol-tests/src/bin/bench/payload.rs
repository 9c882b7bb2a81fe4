//! Record payloads: incompressible bytes, and the latency scenario's header.

/// Size of the random pool payloads are sliced from: large enough that a
/// storage engine compressing blocks cannot find repeats inside a block.
const POOL_BYTES: usize = 8 * 1024 * 1024;

/// Latency payload header: send time (ns since the run's clock base, u64
/// LE), run id (u64 LE), kind (u8).
pub(crate) const HEADER_LEN: usize = 17;
pub(crate) const KIND_WARMUP: u8 = 0;
pub(crate) const KIND_MEASURED: u8 = 1;

/// Incompressible bytes from a fixed-seed xorshift generator, handed out as
/// consecutive `size`-byte slices.
#[derive(Debug)]
pub(crate) struct PayloadPool {
    data: Vec<u8>,
    size: usize,
}

impl PayloadPool {
    pub(crate) fn new(size: usize) -> Self {
        let len = POOL_BYTES + size;
        let mut data = Vec::with_capacity(len + 8);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        while data.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        data.truncate(len);
        Self { data, size }
    }

    /// Record `i`'s value: consecutive records take consecutive slices.
    pub(crate) fn get(&self, i: u64) -> &[u8] {
        let offset = ((u128::from(i) * self.size as u128) % POOL_BYTES as u128) as usize;
        &self.data[offset..offset + self.size]
    }
}

/// The latency header fields of a payload: (sent ns, run id, kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) sent_ns: u64,
    pub(crate) run: u64,
    pub(crate) kind: u8,
}

impl Header {
    pub(crate) fn parse(payload: &[u8]) -> Option<Self> {
        if payload.len() < HEADER_LEN {
            return None;
        }
        Some(Self {
            sent_ns: u64::from_le_bytes(payload[0..8].try_into().ok()?),
            run: u64::from_le_bytes(payload[8..16].try_into().ok()?),
            kind: payload[16],
        })
    }

    /// Writes the header over the start of `buf` (at least `HEADER_LEN` long).
    pub(crate) fn write(&self, buf: &mut [u8]) {
        buf[0..8].copy_from_slice(&self.sent_ns.to_le_bytes());
        buf[8..16].copy_from_slice(&self.run.to_le_bytes());
        buf[16] = self.kind;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = Header {
            sent_ns: 123_456_789,
            run: u64::MAX - 3,
            kind: KIND_MEASURED,
        };
        let mut buf = vec![0u8; 32];
        header.write(&mut buf);
        assert_eq!(Header::parse(&buf), Some(header));
        assert_eq!(Header::parse(&buf[..HEADER_LEN - 1]), None);
    }

    #[test]
    fn consecutive_payloads_differ() {
        let pool = PayloadPool::new(100);
        assert_eq!(pool.get(0).len(), 100);
        assert_ne!(pool.get(0), pool.get(1));
        assert_eq!(pool.get(u64::MAX).len(), 100);
    }
}
