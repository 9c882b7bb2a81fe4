//! The node's one RocksDB instance and its column families
//! ([`crate::log::keys`] documents the layout). Every method here blocks:
//! callers run it on a blocking thread or the log writer thread, never on an
//! async worker.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Options,
    WriteBatch, WriteOptions, DB,
};

use tracing::warn;

use crate::error::{Error, Result};
use crate::log::keys::{self, COLUMN_FAMILIES};

/// RocksDB with its column families opened.
pub struct Db {
    db: DB,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.db.path()).finish()
    }
}

/// Batches at least this large live in blob files; smaller ones (single
/// small records) stay inline in the LSM where they are cheap.
pub const MIN_BLOB_SIZE: u64 = 4096;

fn cf_options(cache: &Cache, kind: &str) -> Options {
    let mut opts = Options::default();
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    if kind == keys::CF_LOG {
        // Record batches are written once, read mostly sequentially and
        // deleted by range. Keeping them out of the LSM tree (BlobDB) means
        // compaction moves only the small keys, not the data: without this,
        // every byte is rewritten by each compaction level and 2 cores spend
        // their time compacting instead of serving.
        opts.set_enable_blob_files(true);
        opts.set_min_blob_size(MIN_BLOB_SIZE);
        opts.set_blob_file_size(256 * 1024 * 1024);
        // Producers compress their batches already; compressing them again
        // costs CPU for nothing.
        opts.set_blob_compression_type(DBCompressionType::None);
        // No blob garbage collection in normal operation: it relocates the
        // live batches of the oldest blob files during compaction, rewriting
        // data an append-only log never changes (it cost ~15% of the CPU
        // under load). A blob file is deleted once compaction has dropped
        // every key pointing into it, which time-ordered retention does file
        // by file; the garbage that deletions leave in shared files is
        // collected on demand by `crate::log::reclaim`.
        opts.set_enable_blob_gc(false);
        // Many smaller memtables: under sustained produce load a 128 MiB
        // memtable took long enough to flush that RocksDB throttled all
        // writes to 16 MB/s ("3 immutable memtables waiting for flush").
        // Up to 8 x 64 MiB bounds memtable memory at 512 MiB.
        opts.set_write_buffer_size(64 * 1024 * 1024);
        opts.set_max_write_buffer_number(8);
        opts.set_target_file_size_base(64 * 1024 * 1024);
        opts.set_compression_type(DBCompressionType::None);
    } else {
        opts.set_write_buffer_size(8 * 1024 * 1024);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_bottommost_compression_type(DBCompressionType::Zstd);
    }
    opts.set_block_based_table_factory(&table);
    opts
}

impl Db {
    /// Opens (or creates) the database under `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Internal(format!("creating data dir {}: {e}", dir.display())))?;
        let cache = Cache::new_lru_cache(256 * 1024 * 1024);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.increase_parallelism(2);
        // Flushes write blob files and are mostly I/O: let them run beside
        // compaction (of small keys only, thanks to BlobDB).
        opts.set_max_background_jobs(4);
        opts.set_keep_log_file_num(4);
        // The write-ahead log is our commit log: keep enough of it that
        // memtable flushes are not forced by WAL size under bursty load.
        opts.set_max_total_wal_size(512 * 1024 * 1024);
        // Reuse old WAL files instead of creating new ones: writing into
        // blocks (and page-cache pages) that already exist skips allocating
        // them, which under load was most of the cost of the WAL write, and
        // an fdatasync no longer has to update the inode.
        opts.set_recycle_log_file_num(4);
        // Flushes write every batch a second time (WAL, then blob file);
        // through the page cache that second write cost the flush thread a
        // kernel copy of every byte, a third of the broker's CPU under
        // produce load. Direct I/O skips the copy. Filesystems without
        // O_DIRECT (tmpfs) refuse it at open: then buffered it is.
        opts.set_use_direct_io_for_flush_and_compaction(true);
        let path = dir.join("rocksdb");
        let open = |opts: &Options| {
            let descriptors = COLUMN_FAMILIES
                .iter()
                .map(|name| ColumnFamilyDescriptor::new(*name, cf_options(&cache, name)));
            DB::open_cf_descriptors(opts, &path, descriptors)
        };
        let db = match open(&opts) {
            Ok(db) => db,
            Err(e) if e.to_string().contains("Direct I/O is not supported") => {
                warn!(error = %e, "direct I/O refused by the filesystem; flushing through the page cache");
                opts.set_use_direct_io_for_flush_and_compaction(false);
                open(&opts)?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Db { db })
    }

    /// A column family handle; the families are created at open, so a
    /// missing one is a broken invariant rather than a panic.
    pub fn cf(&self, name: &str) -> Result<&ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| Error::Internal(format!("column family {name} missing")))
    }

    /// The underlying database, for iterators.
    pub fn raw(&self) -> &DB {
        &self.db
    }

    /// Writes a batch atomically, fsyncing the WAL first when `sync`.
    pub fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }

    /// Makes every write so far durable: fsyncs the write-ahead log.
    pub fn sync_wal(&self) -> Result<()> {
        self.db.flush_wal(true)?;
        Ok(())
    }

    /// Reads one value.
    pub fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(cf)?, key)?)
    }

    /// Asks RocksDB to compact a range soon, so deleted data frees disk.
    pub fn compact_range(&self, cf: &str, from: &[u8], to: &[u8]) -> Result<()> {
        self.db.compact_range_cf(self.cf(cf)?, Some(from), Some(to));
        Ok(())
    }
}
