//! Retention decisions, pure: given a partition's batches from the oldest,
//! how far the log start offset moves. Mirrors Kafka's segment rules at batch
//! granularity: delete from the front while the oldest batch is past
//! `retention.ms`, or while deleting it still leaves at least
//! `retention.bytes`; never delete data at or above the high watermark.

/// What retention needs to know of one stored batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub size: i64,
}

/// A topic's retention settings (-1 disables either).
#[derive(Debug, Clone, Copy)]
pub struct RetentionPolicy {
    pub retention_ms: i64,
    pub retention_bytes: i64,
}

/// The outcome: the new log start offset and the bytes freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    pub new_log_start: i64,
    pub freed_bytes: i64,
}

/// Walks batches oldest first and decides the new log start, or `None` when
/// nothing is to be deleted.
pub fn decide(
    batches: impl IntoIterator<Item = BatchInfo>,
    policy: RetentionPolicy,
    now_ms: i64,
    total_size: i64,
    high_watermark: i64,
) -> Option<Truncation> {
    let mut freed = 0i64;
    let mut new_start = None;
    for batch in batches {
        if batch.last_offset >= high_watermark {
            break;
        }
        let expired = policy.retention_ms >= 0
            && batch.max_timestamp < now_ms.saturating_sub(policy.retention_ms);
        let oversized = policy.retention_bytes >= 0
            && total_size - freed - batch.size >= policy.retention_bytes;
        if !(expired || oversized) {
            break;
        }
        freed += batch.size;
        new_start = Some(batch.last_offset + 1);
    }
    new_start.map(|new_log_start| Truncation {
        new_log_start,
        freed_bytes: freed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches() -> Vec<BatchInfo> {
        (0..5)
            .map(|i| BatchInfo {
                base_offset: i * 10,
                last_offset: i * 10 + 9,
                max_timestamp: 1_000 + i * 100,
                size: 100,
            })
            .collect()
    }

    const NEVER: RetentionPolicy = RetentionPolicy {
        retention_ms: -1,
        retention_bytes: -1,
    };

    #[test]
    fn unlimited_keeps_everything() {
        assert_eq!(decide(batches(), NEVER, i64::MAX, 500, 50), None);
    }

    #[test]
    fn time_retention_deletes_expired_prefix_only() {
        let policy = RetentionPolicy {
            retention_ms: 1_000,
            ..NEVER
        };
        // now - 1000 = 1250: batches with max ts 1000, 1100, 1200 expire.
        let t = decide(batches(), policy, 2_250, 500, 50).unwrap();
        assert_eq!(
            t,
            Truncation {
                new_log_start: 30,
                freed_bytes: 300
            }
        );
    }

    #[test]
    fn size_retention_keeps_at_least_the_limit() {
        let policy = RetentionPolicy {
            retention_bytes: 250,
            ..NEVER
        };
        let t = decide(batches(), policy, 0, 500, 50).unwrap();
        // 500 - 100 - 100 = 300 >= 250; a third deletion would leave 200.
        assert_eq!(
            t,
            Truncation {
                new_log_start: 20,
                freed_bytes: 200
            }
        );
    }

    #[test]
    fn never_deletes_at_or_above_high_watermark() {
        let policy = RetentionPolicy {
            retention_ms: 0,
            ..NEVER
        };
        let t = decide(batches(), policy, i64::MAX, 500, 25).unwrap();
        assert_eq!(t.new_log_start, 20);
        assert_eq!(decide(batches(), policy, i64::MAX, 500, 5), None);
    }

    #[test]
    fn expiry_stops_at_first_young_batch() {
        let mut b = batches();
        b[1].max_timestamp = 10_000;
        let policy = RetentionPolicy {
            retention_ms: 1_000,
            ..NEVER
        };
        let t = decide(b, policy, 2_250, 500, 50).unwrap();
        assert_eq!(t.new_log_start, 10);
    }
}
