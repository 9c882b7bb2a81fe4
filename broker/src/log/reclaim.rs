//! Giving the disk of deleted data back.
//!
//! Deleting a topic, retention and DeleteRecords remove keys with range
//! deletes. Compaction then drops the keys and the small batches stored
//! inline, but batches of [`crate::log::db::MIN_BLOB_SIZE`] or more live in
//! blob files, and a blob file is removed only once every batch in it is
//! gone. Blob files are filled in write order, so they mix the partitions
//! that were written at the same time: the batches of a deleted topic, or of
//! a topic with a short retention, can keep a file alive for as long as its
//! neighbours' data lives.
//!
//! Blob garbage collection frees such files by copying their live batches
//! into new files, but it is off in normal operation (see
//! [`crate::log::db`]): it would copy live data on every compaction. This
//! module turns it on only when the garbage is worth it: once the garbage in
//! blob files reaches `log.blob.gc.garbage.ratio` of their bytes and at
//! least `log.blob.gc.min.garbage.bytes`, one manual compaction of the log
//! column family runs with collection on for every blob file, and collection
//! goes off again. Each such pass copies the live batches once, and in key
//! order, so afterwards a partition's batches sit together and later
//! deletions free whole files. The decision is [`should_collect`], pure.
//!
//! Everything runs on one thread of its own: a manual compaction blocks for
//! as long as it takes, and must hold up neither the log writer nor an async
//! worker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use rocksdb::{BottommostLevelCompaction, CompactOptions};
use tracing::{debug, error, info};

use crate::error::Result;
use crate::log::db::Db;
use crate::log::keys::CF_LOG;
use crate::metrics;

/// When blob garbage is worth collecting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlobGcPolicy {
    /// `log.blob.gc.garbage.ratio`: collect once garbage is at least this
    /// fraction of the bytes in blob files (0 < ratio <= 1).
    pub garbage_ratio: f64,
    /// `log.blob.gc.min.garbage.bytes`: and at least this many bytes.
    pub min_garbage_bytes: u64,
}

impl Default for BlobGcPolicy {
    fn default() -> Self {
        BlobGcPolicy {
            garbage_ratio: 0.5,
            min_garbage_bytes: 1 << 30,
        }
    }
}

/// The blob files of the log column family, as RocksDB counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlobStats {
    /// Bytes in live blob files, garbage included.
    pub total_bytes: u64,
    /// Bytes of batches no key points to any more.
    pub garbage_bytes: u64,
}

/// Whether to run a garbage-collecting compaction now. Pure.
///
/// Both conditions matter: the ratio bounds the disk used to about
/// `1 / (1 - ratio)` times the live data, and makes each collection copy at
/// most `(1 - ratio) / ratio` bytes of live data per byte freed; the minimum
/// keeps a small broker from copying its data for a few freed megabytes.
pub fn should_collect(stats: BlobStats, policy: BlobGcPolicy) -> bool {
    if stats.total_bytes == 0 || stats.garbage_bytes < policy.min_garbage_bytes {
        return false;
    }
    stats.garbage_bytes as f64 >= policy.garbage_ratio * stats.total_bytes as f64
}

/// Reads the blob statistics of the log column family. Blocking.
pub fn blob_stats(db: &Db) -> Result<BlobStats> {
    let cf = db.cf(CF_LOG)?;
    let raw = db.raw();
    let total_bytes = raw
        .property_int_value_cf(cf, "rocksdb.live-blob-file-size")?
        .unwrap_or(0);
    let garbage_bytes = raw
        .property_int_value_cf(cf, "rocksdb.live-blob-file-garbage-size")?
        .unwrap_or(0);
    Ok(BlobStats {
        total_bytes,
        garbage_bytes,
    })
}

#[derive(Debug)]
enum Request {
    /// Compact this key range of the log column family (a deleted topic's),
    /// so its keys and inline batches go and its blob garbage is counted.
    Compact {
        from: Vec<u8>,
        to: Vec<u8>,
    },
    /// Data was deleted: see whether blob garbage is worth collecting.
    Check,
    Shutdown,
}

/// Where deleters queue their requests; cheap to clone.
#[derive(Debug, Clone)]
pub struct ReclaimHandle {
    sender: mpsc::Sender<Request>,
}

impl ReclaimHandle {
    fn send(&self, request: Request) {
        // A stopped reclaimer only means the disk is freed later (by the
        // next start's first check): nothing to report to the caller.
        let _ = self.sender.send(request);
    }

    /// Queues a compaction of `[from, to)` of the log column family.
    pub fn compact(&self, from: Vec<u8>, to: Vec<u8>) {
        self.send(Request::Compact { from, to });
    }

    /// Queues a check of the blob garbage.
    pub fn check(&self) {
        self.send(Request::Check);
    }
}

/// The reclaimer thread.
#[derive(Debug)]
pub struct Reclaimer {
    handle: ReclaimHandle,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Set while the thread is inside a compaction.
    busy: Arc<AtomicBool>,
    /// Set by shutdown: the thread starts no further compaction.
    stopping: Arc<AtomicBool>,
    db: Arc<Db>,
}

impl Reclaimer {
    /// Starts the thread.
    pub fn start(db: Arc<Db>, policy: BlobGcPolicy) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel();
        let thread_db = db.clone();
        let busy = Arc::new(AtomicBool::new(false));
        let stopping = Arc::new(AtomicBool::new(false));
        let flags = Flags {
            busy: busy.clone(),
            stopping: stopping.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("log-reclaimer".to_owned())
            .spawn(move || run(&thread_db, &receiver, policy, &flags))?;
        Ok(Reclaimer {
            handle: ReclaimHandle { sender },
            thread: Mutex::new(Some(thread)),
            busy,
            stopping,
            db,
        })
    }

    /// A handle for queueing requests.
    pub fn handle(&self) -> &ReclaimHandle {
        &self.handle
    }

    /// Stops the thread, cutting short a compaction in progress (RocksDB
    /// stops it at its next check; the files it had not finished are
    /// discarded and the old ones stay). Blocking.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.handle.send(Request::Shutdown);
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            if self.busy.load(Ordering::SeqCst) {
                self.db.raw().cancel_all_background_work(true);
            }
            if handle.join().is_err() {
                error!("log reclaimer thread panicked");
            }
        }
    }
}

/// Like the log writer: a reclaimer dropped without a shutdown still joins
/// its thread, so no handle on the database outlives the broker.
impl Drop for Reclaimer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The thread's side of [`Reclaimer::busy`] and [`Reclaimer::stopping`].
struct Flags {
    busy: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
}

impl Flags {
    /// Runs `f` marked busy, unless a shutdown has begun.
    ///
    /// Busy is raised before stopping is read, and shutdown raises stopping
    /// before it reads busy (both sequentially consistent): so either this
    /// sees the shutdown, or the shutdown sees the compaction and cancels it.
    fn compact(&self, f: impl FnOnce()) -> bool {
        self.busy.store(true, Ordering::SeqCst);
        let stopping = self.stopping.load(Ordering::SeqCst);
        if !stopping {
            f();
        }
        self.busy.store(false, Ordering::SeqCst);
        !stopping
    }
}

fn run(db: &Db, receiver: &mpsc::Receiver<Request>, policy: BlobGcPolicy, flags: &Flags) {
    // A restart may find garbage left by a collection cut short, or by
    // deletions whose check never ran.
    let mut check = true;
    loop {
        if check {
            check = false;
            let ran = flags.compact(|| {
                if let Err(e) = check_and_collect(db, policy) {
                    error!(error = %e, "blob garbage collection failed");
                }
            });
            if !ran {
                return;
            }
        }
        let Ok(first) = receiver.recv() else { return };
        // Take everything queued: many deletions share one check.
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Shutdown => return,
                Request::Compact { from, to } => {
                    let started = Instant::now();
                    let ran = flags.compact(|| {
                        if let Err(e) = db.compact_range(CF_LOG, &from, &to) {
                            error!(error = %e, "compaction of deleted data failed");
                        }
                    });
                    if !ran {
                        return;
                    }
                    debug!(
                        took_ms = started.elapsed().as_millis() as u64,
                        "compacted a deleted range"
                    );
                    check = true;
                }
                Request::Check => check = true,
            }
            next = receiver.try_recv().ok();
        }
    }
}

fn check_and_collect(db: &Db, policy: BlobGcPolicy) -> Result<()> {
    let stats = blob_stats(db)?;
    record(stats);
    if !should_collect(stats, policy) {
        return Ok(());
    }
    info!(
        blob_bytes = stats.total_bytes,
        garbage_bytes = stats.garbage_bytes,
        "collecting blob garbage: copying live batches out of blob files that hold deleted ones"
    );
    let started = Instant::now();
    collect(db)?;
    metrics::LOG_BLOB_GC_TOTAL.inc();
    let after = blob_stats(db)?;
    record(after);
    info!(
        blob_bytes = after.total_bytes,
        garbage_bytes = after.garbage_bytes,
        freed_bytes = stats.total_bytes.saturating_sub(after.total_bytes),
        took_ms = started.elapsed().as_millis() as u64,
        "blob garbage collected"
    );
    Ok(())
}

/// One compaction of the whole log column family with garbage collection
/// on for every blob file (age cutoff 1.0), then collection off again.
fn collect(db: &Db) -> Result<()> {
    let cf = db.cf(CF_LOG)?;
    let raw = db.raw();
    raw.set_options_cf(
        cf,
        &[
            ("enable_blob_garbage_collection", "true"),
            ("blob_garbage_collection_age_cutoff", "1.0"),
        ],
    )?;
    let mut options = CompactOptions::default();
    // Most batches' keys sit in the bottommost level: it must be rewritten
    // too, or their blobs are never relocated.
    options.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
    raw.compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &options);
    raw.set_options_cf(
        cf,
        &[
            ("enable_blob_garbage_collection", "false"),
            ("blob_garbage_collection_age_cutoff", "0.25"),
        ],
    )?;
    Ok(())
}

fn record(stats: BlobStats) {
    metrics::LOG_BLOB_BYTES.set(stats.total_bytes as i64);
    metrics::LOG_BLOB_GARBAGE_BYTES.set(stats.garbage_bytes as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn stats(total: u64, garbage: u64) -> BlobStats {
        BlobStats {
            total_bytes: total,
            garbage_bytes: garbage,
        }
    }

    #[test]
    fn collects_once_both_the_ratio_and_the_minimum_are_reached() {
        let policy = BlobGcPolicy::default();
        assert!(should_collect(stats(10 * GIB, 5 * GIB), policy));
        assert!(should_collect(stats(4 * GIB, 4 * GIB), policy));
        // Half garbage, but too little of it to be worth a copy.
        assert!(!should_collect(stats(GIB, GIB / 2), policy));
        // Much garbage, but most bytes are live.
        assert!(!should_collect(stats(100 * GIB, 10 * GIB), policy));
    }

    #[test]
    fn nothing_to_collect_in_an_empty_or_clean_column_family() {
        let policy = BlobGcPolicy {
            garbage_ratio: 0.1,
            min_garbage_bytes: 0,
        };
        assert!(!should_collect(stats(0, 0), policy));
        assert!(should_collect(stats(100, 10), policy));
        assert!(!should_collect(stats(100, 9), policy));
    }
}
