//! The sizes of a partition's most recent batches, by base offset.
//!
//! A read stops at the first batch that does not fit its byte limit. With
//! RocksDB, stepping the iterator onto that batch already loads it (up to a
//! MiB, from a blob file once flushed) only for the read to drop it: with
//! Kafka's 1 MiB `replica.fetch.max.bytes` and librdkafka's 1 MB batches
//! that doubled what a follower's fetch read. Knowing the next batch's size
//! lets the read stop before stepping. Only recent batches are kept (reads
//! at the tail are the frequent ones); an unknown size means "step and see",
//! as before, and a stale one can only end a read early, which Kafka allows.

use std::collections::VecDeque;

/// How many batches each partition remembers (16 bytes each).
const CAPACITY: usize = 1024;

#[derive(Debug, Default, Clone)]
pub(crate) struct RecentBatchSizes {
    /// (base offset, stored size), base offsets increasing.
    entries: VecDeque<(i64, u32)>,
}

impl RecentBatchSizes {
    /// Notes a batch appended at `base`. A base at or below an earlier
    /// entry's means the log was cut back and rewritten: those go.
    pub(crate) fn record(&mut self, base: i64, size: usize) {
        self.truncate_from(base);
        if self.entries.len() == CAPACITY {
            let _ = self.entries.pop_front();
        }
        self.entries
            .push_back((base, u32::try_from(size).unwrap_or(u32::MAX)));
    }

    /// The size of the batch starting at `base`, if it is a recent one.
    pub(crate) fn size_at(&self, base: i64) -> Option<usize> {
        let index = self.entries.binary_search_by_key(&base, |(b, _)| *b).ok()?;
        self.entries.get(index).map(|(_, size)| *size as usize)
    }

    /// Forgets batches at or after `offset` (a truncation to it).
    pub(crate) fn truncate_from(&mut self, offset: i64) {
        while self.entries.back().is_some_and(|(b, _)| *b >= offset) {
            let _ = self.entries.pop_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_recorded_sizes_only() {
        let mut sizes = RecentBatchSizes::default();
        sizes.record(0, 100);
        sizes.record(10, 2000);
        sizes.record(25, 70);
        assert_eq!(sizes.size_at(10), Some(2000));
        assert_eq!(sizes.size_at(25), Some(70));
        // Not a base offset, or never seen.
        assert_eq!(sizes.size_at(11), None);
        assert_eq!(sizes.size_at(26), None);
    }

    #[test]
    fn rewriting_after_a_truncation_replaces_the_cut_batches() {
        let mut sizes = RecentBatchSizes::default();
        sizes.record(0, 100);
        sizes.record(10, 200);
        sizes.record(20, 300);
        sizes.truncate_from(10);
        assert_eq!(sizes.size_at(10), None);
        assert_eq!(sizes.size_at(20), None);
        // A new leader's batches at the same offsets, without a truncate.
        sizes.record(10, 50);
        sizes.record(15, 60);
        assert_eq!(sizes.size_at(10), Some(50));
        sizes.record(12, 70);
        assert_eq!(sizes.size_at(15), None);
        assert_eq!(sizes.size_at(12), Some(70));
        assert_eq!(sizes.size_at(0), Some(100));
    }

    #[test]
    fn keeps_only_the_most_recent() {
        let mut sizes = RecentBatchSizes::default();
        for i in 0..(CAPACITY as i64 + 10) {
            sizes.record(i * 2, 1);
        }
        assert_eq!(sizes.size_at(0), None);
        assert_eq!(sizes.size_at(18), None);
        assert_eq!(sizes.size_at(20), Some(1));
        assert_eq!(sizes.size_at((CAPACITY as i64 + 9) * 2), Some(1));
    }
}
