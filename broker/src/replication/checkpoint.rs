//! High-watermark checkpoints (Kafka's `replication-offset-checkpoint`):
//! every `replica.high.watermark.checkpoint.interval.ms` the high watermark
//! of each hosted partition that moved is written to its partition meta, and
//! once more at shutdown. A restarted replica serves consumers from that
//! checkpoint rather than from its log end, since records past the high
//! watermark may exist on this node alone and be truncated later.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;
use uuid::Uuid;

use crate::log::partition::PartitionLog;
use crate::replication::ReplicaManager;

/// What was last written per partition, so unchanged ones are skipped.
pub(crate) type Checkpointed = HashMap<(Uuid, i32), i64>;

impl ReplicaManager {
    /// Runs until shutdown, checkpointing every interval.
    pub async fn high_watermark_checkpoint_loop(self: Arc<Self>) {
        let period =
            Duration::from_millis(self.config.replica_high_watermark_checkpoint_interval_ms);
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut written = Checkpointed::new();
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            self.checkpoint_high_watermarks(&mut written);
        }
    }

    /// Queues a checkpoint of every hosted partition whose high watermark
    /// differs from `written` (all of them when it is empty). Does not
    /// block: the log writer stages it with its next group.
    pub fn checkpoint_high_watermarks(&self, written: &mut Checkpointed) {
        let logs = self.logs.all();
        written.retain(|key, _| logs.iter().any(|l| (l.topic_id, l.partition) == *key));
        let due = changed_since(&logs, written);
        if due.is_empty() {
            return;
        }
        let queued: Vec<((Uuid, i32), i64)> = due
            .iter()
            .map(|(log, hw)| ((log.topic_id, log.partition), *hw))
            .collect();
        match self.logs.writer().checkpoint_high_watermarks(due) {
            Ok(()) => written.extend(queued),
            Err(e) => warn!(error = %e, "could not queue high-watermark checkpoints"),
        }
    }
}

/// The partitions whose high watermark moved since `written`.
fn changed_since(
    logs: &[Arc<PartitionLog>],
    written: &Checkpointed,
) -> Vec<(Arc<PartitionLog>, i64)> {
    logs.iter()
        .filter(|log| !log.is_deleted())
        .map(|log| (log.clone(), log.offsets().high_watermark))
        .filter(|(log, hw)| written.get(&(log.topic_id, log.partition)) != Some(hw))
        .collect()
}
