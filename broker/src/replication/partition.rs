//! Kafka's replication rules for one partition, as pure functions over its
//! replica state: what a follower's fetch says about its progress, where
//! the high watermark stands, which followers leave or join the ISR.

use std::collections::HashMap;

/// This node's part in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Not assigned here, or no metadata yet.
    #[default]
    None,
    Leader,
    Follower {
        leader: i32,
    },
}

/// What the leader knows of one follower (Kafka's `Replica` state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end offset: its last fetch offset.
    pub log_end_offset: i64,
    /// When the follower was last known to be fully caught up.
    pub last_caught_up_ms: i64,
    /// The leader's log end offset when the previous fetch was answered.
    pub last_fetch_leader_leo: i64,
    pub last_fetch_ms: i64,
}

impl FollowerProgress {
    /// A follower the leader has not heard from yet: unknown offset, and
    /// caught up as of `now` so it is not dropped from the ISR at once.
    pub fn new(now_ms: i64) -> Self {
        FollowerProgress {
            log_end_offset: -1,
            last_caught_up_ms: now_ms,
            last_fetch_leader_leo: -1,
            last_fetch_ms: now_ms,
        }
    }

    /// Kafka's rule: a fetch at the leader's current end means caught up
    /// now; a fetch reaching what the leader had at the previous fetch
    /// means caught up as of that previous fetch.
    pub fn on_fetch(&mut self, fetch_offset: i64, leader_leo: i64, now_ms: i64) {
        if fetch_offset >= leader_leo {
            self.last_caught_up_ms = now_ms;
        } else if fetch_offset >= self.last_fetch_leader_leo && self.last_fetch_leader_leo >= 0 {
            self.last_caught_up_ms = self.last_caught_up_ms.max(self.last_fetch_ms);
        }
        self.log_end_offset = fetch_offset;
        self.last_fetch_leader_leo = leader_leo;
        self.last_fetch_ms = now_ms;
    }
}

/// The high watermark the leader may move to: the smallest log end offset
/// over the ISR (itself included), never below the current one. A member
/// the leader has not heard from holds it where it is.
pub fn high_watermark(
    current: i64,
    leader_id: i32,
    leader_leo: i64,
    isr: &[i32],
    followers: &HashMap<i32, FollowerProgress>,
) -> i64 {
    let mut candidate = leader_leo;
    for member in isr.iter().filter(|m| **m != leader_id) {
        match followers.get(member) {
            Some(progress) if progress.log_end_offset >= 0 => {
                candidate = candidate.min(progress.log_end_offset);
            }
            _ => return current,
        }
    }
    current.max(candidate)
}

/// ISR members (not the leader) that have not caught up for longer than
/// `lag_max_ms`: the ISR to propose without them, if any.
pub fn shrunk_isr(
    leader_id: i32,
    isr: &[i32],
    followers: &HashMap<i32, FollowerProgress>,
    now_ms: i64,
    lag_max_ms: i64,
) -> Option<Vec<i32>> {
    let lagging = |member: &i32| {
        *member != leader_id
            && followers
                .get(member)
                .is_none_or(|p| now_ms - p.last_caught_up_ms > lag_max_ms)
    };
    if !isr.iter().any(lagging) {
        return None;
    }
    Some(isr.iter().copied().filter(|m| !lagging(m)).collect())
}

/// Whether a follower outside the ISR may join it: it has reached the high
/// watermark and the start of the leader's current epoch (so it holds
/// everything this leader acknowledged).
pub fn may_join_isr(progress: &FollowerProgress, high_watermark: i64, epoch_start: i64) -> bool {
    progress.log_end_offset >= high_watermark && progress.log_end_offset >= epoch_start
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(leo: i64, caught_up: i64) -> FollowerProgress {
        FollowerProgress {
            log_end_offset: leo,
            last_caught_up_ms: caught_up,
            last_fetch_leader_leo: leo,
            last_fetch_ms: caught_up,
        }
    }

    #[test]
    fn high_watermark_is_the_isr_minimum_and_never_falls() {
        let mut followers = HashMap::new();
        let _ = followers.insert(2, progress(80, 0));
        let _ = followers.insert(3, progress(90, 0));
        assert_eq!(high_watermark(50, 1, 100, &[1, 2, 3], &followers), 80);
        assert_eq!(high_watermark(50, 1, 100, &[1, 3], &followers), 90);
        assert_eq!(high_watermark(95, 1, 100, &[1, 2], &followers), 95);
        assert_eq!(high_watermark(0, 1, 100, &[1], &followers), 100);
        // A member never heard from holds the watermark.
        assert_eq!(high_watermark(10, 1, 100, &[1, 4], &followers), 10);
    }

    #[test]
    fn fetches_track_when_a_follower_was_caught_up() {
        let mut p = FollowerProgress::new(0);
        p.on_fetch(50, 100, 1000);
        assert_eq!(p.last_caught_up_ms, 0, "behind the leader");
        p.on_fetch(100, 120, 2000);
        assert_eq!(
            p.last_caught_up_ms, 1000,
            "reached what the leader had at the last fetch"
        );
        p.on_fetch(120, 120, 3000);
        assert_eq!(p.last_caught_up_ms, 3000, "at the leader's end");
        assert_eq!(p.log_end_offset, 120);
    }

    #[test]
    fn lagging_followers_leave_the_isr() {
        let mut followers = HashMap::new();
        let _ = followers.insert(2, progress(80, 9_000));
        let _ = followers.insert(3, progress(90, 1_000));
        assert_eq!(
            shrunk_isr(1, &[1, 2, 3], &followers, 10_000, 5_000),
            Some(vec![1, 2])
        );
        assert_eq!(shrunk_isr(1, &[1, 2], &followers, 10_000, 5_000), None);
        assert_eq!(
            shrunk_isr(1, &[1, 4], &followers, 10_000, 5_000),
            Some(vec![1])
        );
    }

    #[test]
    fn joining_needs_the_high_watermark_and_the_epoch_start() {
        assert!(may_join_isr(&progress(100, 0), 100, 90));
        assert!(!may_join_isr(&progress(99, 0), 100, 90));
        assert!(!may_join_isr(&progress(100, 0), 80, 101));
    }
}
