//! Deleting a topic frees its disk even when its batches share blob files
//! with a topic that stays: the reclaimer compacts the deleted range and,
//! once the garbage passes `log.blob.gc.garbage.ratio`, copies the live
//! batches out so the shared files can go. The control run, with collection
//! out of reach, shows the files really are shared: without it nothing is
//! freed.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use metrobus::config::FlushPolicy;
use metrobus::log::keys::CF_LOG;
use metrobus::log::reader;
use metrobus::log::reclaim::{self, BlobGcPolicy};
use metrobus::log::LogManager;

/// Batches per topic, each one record of [`VALUE_BYTES`]: well above the
/// 4 KiB from which batches are stored in blob files.
const BATCHES: usize = 40;
const VALUE_BYTES: usize = 64 * 1024;

/// Bytes of the blob files on disk.
fn blob_file_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("rocksdb"))
        .expect("rocksdb dir")
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "blob"))
        .map(|entry| entry.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// Writes both topics interleaved into shared blob files, deletes `doomed`,
/// and returns (blob bytes on disk before, after the reclaimer settled).
fn delete_one_of_two(policy: BlobGcPolicy) -> (u64, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = LogManager::open(dir.path(), FlushPolicy::Replicated, policy).expect("open");
    let doomed = common::one_partition_topic("doomed");
    let kept = common::one_partition_topic("kept");
    let doomed_log = logs.ensure_partition(&doomed, 0).expect("partition");
    let kept_log = logs.ensure_partition(&kept, 0).expect("partition");
    let value = "v".repeat(VALUE_BYTES);
    for _ in 0..BATCHES {
        common::append_value(&logs, &doomed_log, &value);
        common::append_value(&logs, &kept_log, &value);
    }
    // One flush writes both topics' batches into the same blob file.
    let db = logs.db();
    db.raw()
        .flush_cf(db.cf(CF_LOG).expect("log cf"))
        .expect("flush");
    let before = blob_file_bytes(dir.path());
    assert!(
        before >= (2 * BATCHES * VALUE_BYTES) as u64,
        "both topics are in blob files: {before} bytes"
    );

    let done = logs.delete_topic(doomed.id).expect("delete queued");
    done.blocking_recv()
        .expect("the writer answers")
        .expect("the deletion commits");
    // The reclaimer works in the background: wait until the compaction of
    // the deleted range has counted its garbage, then until nothing changes.
    let deadline = Instant::now() + Duration::from_secs(30);
    let half = (BATCHES * VALUE_BYTES) as u64;
    loop {
        let stats = reclaim::blob_stats(db).expect("blob stats");
        if stats.garbage_bytes >= half || stats.total_bytes <= before - half {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deleted range was never compacted: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Collection, when due, follows the range compaction on the same thread.
    let mut after = blob_file_bytes(dir.path());
    let settle = Instant::now() + Duration::from_secs(30);
    while policy.garbage_ratio < 1.0 && after > before / 2 + VALUE_BYTES as u64 {
        assert!(
            Instant::now() < settle,
            "blob files were never freed: {before} bytes before, {after} after, {:?}",
            reclaim::blob_stats(db)
        );
        std::thread::sleep(Duration::from_millis(50));
        after = blob_file_bytes(dir.path());
    }

    // The kept topic is whole.
    let offsets = kept_log.offsets();
    let data = reader::read(db, &kept_log, 0, usize::MAX, offsets.log_end_offset, true)
        .expect("read kept");
    assert_eq!(offsets.log_end_offset, BATCHES as i64);
    assert!(data.len() >= BATCHES * VALUE_BYTES, "{} bytes", data.len());
    logs.shutdown();
    println!("blob file bytes: {before} before the deletion, {after} after");
    (before, after)
}

#[test]
fn deleting_a_topic_frees_the_blob_files_it_shared() {
    let (before, after) = delete_one_of_two(BlobGcPolicy {
        garbage_ratio: 0.3,
        min_garbage_bytes: 0,
    });
    assert!(
        after <= before / 2 + VALUE_BYTES as u64,
        "about half the blob bytes are freed: {before} before, {after} after"
    );
}

#[test]
fn without_collection_shared_blob_files_stay() {
    // Out of reach: the garbage is counted but never collected.
    let (before, after) = delete_one_of_two(BlobGcPolicy {
        garbage_ratio: 1.0,
        min_garbage_bytes: u64::MAX,
    });
    assert!(
        after >= before - VALUE_BYTES as u64,
        "the shared files stay without collection: {before} before, {after} after"
    );
}
