//! High-watermark checkpoints through the real log writer and loader: a
//! partition reopened after a restart serves from its checkpoint, never
//! from its log end (records past the high watermark may exist on this
//! replica alone), and one with no checkpoint from its log start.

mod common;

use std::sync::Arc;

use metrobus::cluster::records::PartitionRegistration;
use metrobus::config::FlushPolicy;
use metrobus::log::partition::PartitionLog;
use metrobus::log::reclaim::BlobGcPolicy;
use metrobus::log::LogManager;

/// Appends three one-record batches; returns the log end offset.
fn append_three(logs: &LogManager, log: &Arc<PartitionLog>) -> i64 {
    for value in ["a", "b", "c"] {
        common::append_value(logs, log, value);
    }
    log.offsets().log_end_offset
}

/// Makes node 1 the partition's leader at `epoch`, with an ISR of itself.
fn lead_alone(log: &PartitionLog, epoch: i32) {
    let _ = log.apply_registration(
        1,
        &PartitionRegistration {
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: epoch,
            partition_epoch: epoch,
        },
    );
}

#[test]
fn a_reopened_partition_serves_from_its_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let checkpointed = common::one_partition_topic("checkpointed");
    let unchecked = common::one_partition_topic("unchecked");
    {
        let logs = LogManager::open(dir.path(), FlushPolicy::Durable, BlobGcPolicy::default())
            .expect("open");
        let log = logs.ensure_partition(&checkpointed, 0).expect("partition");
        let other = logs.ensure_partition(&unchecked, 0).expect("partition");
        assert_eq!(append_three(&logs, &log), 3);
        assert_eq!(append_three(&logs, &other), 3);
        // As a leader whose ISR is itself alone, everything is committed.
        lead_alone(&log, 0);
        assert_eq!(log.offsets().high_watermark, 3);
        // The last checkpoint lags: the replica knew only 2 were committed.
        logs.writer()
            .checkpoint_high_watermarks(vec![(log.clone(), 2)])
            .expect("queued");
        logs.shutdown();
    }

    let logs = LogManager::open(dir.path(), FlushPolicy::Durable, BlobGcPolicy::default())
        .expect("reopen");
    let log = logs.ensure_partition(&checkpointed, 0).expect("partition");
    let offsets = log.offsets();
    assert_eq!(offsets.log_end_offset, 3);
    assert_eq!(
        offsets.high_watermark, 2,
        "a restart serves from the checkpoint"
    );
    let other = logs.ensure_partition(&unchecked, 0).expect("partition");
    assert_eq!(other.offsets().log_end_offset, 3);
    assert_eq!(
        other.offsets().high_watermark,
        0,
        "no checkpoint: nothing is known to be committed yet"
    );
    // Leading with an ISR of itself commits the rest at once.
    lead_alone(&log, 1);
    assert_eq!(log.offsets().high_watermark, 3);
    logs.shutdown();
}
