//! The RocksDB backend: one database per (store, task) directory, with the
//! changelog offset kept in a column family of its own and written in the
//! same `WriteBatch` as the data, so the two never disagree.
//!
//! Memory is bounded process-wide by [`RocksResources`]: one LRU block cache
//! (which also holds index and filter blocks) and one `WriteBufferManager`
//! charged to that cache, shared by every database this process opens. So
//! RocksDB memory does not grow with the number of tasks.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options,
    ReadOptions, WriteBatch, WriteBufferManager, WriteOptions,
};

use super::{
    BackendError, Entry, KeyValueBackend, StoreReader, Write, before_end, bounds_are_empty,
};

const META_CF: &str = "weir-meta";
const OFFSET_KEY: &[u8] = b"changelog-offset";

/// The block cache and write-buffer budget every RocksDB store shares.
pub struct RocksResources {
    cache: Cache,
    write_buffers: WriteBufferManager,
    write_buffer_bytes: usize,
}

impl RocksResources {
    /// `block_cache_bytes` for the cache; `write_buffer_bytes` for all
    /// memtables together, charged against the cache so the total stays
    /// within `block_cache_bytes + write_buffer_bytes`.
    pub fn new(block_cache_bytes: usize, write_buffer_bytes: usize) -> Self {
        let cache = Cache::new_lru_cache(block_cache_bytes + write_buffer_bytes);
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            write_buffer_bytes,
            false,
            cache.clone(),
        );
        RocksResources {
            cache,
            write_buffers,
            write_buffer_bytes,
        }
    }

    /// Bytes held by the shared cache (blocks and charged memtables).
    pub fn cache_usage(&self) -> usize {
        self.cache.get_usage()
    }

    /// Bytes of memtables across all stores.
    pub fn write_buffer_usage(&self) -> usize {
        self.write_buffers.get_usage()
    }

    fn options(&self) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        table.set_bloom_filter(10.0, false);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_block_based_table_factory(&table);
        opts.set_write_buffer_manager(&self.write_buffers);
        // Per-memtable size: the shared manager is what bounds the total.
        opts.set_write_buffer_size((self.write_buffer_bytes / 4).clamp(1 << 20, 64 << 20));
        opts.set_max_write_buffer_number(3);
        opts.set_max_background_jobs(2);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // File handles per database stay modest; see `limits` for the check.
        opts.set_max_open_files(256);
        opts.set_keep_log_file_num(2);
        opts.set_max_log_file_size(1 << 20);
        opts
    }
}

/// A RocksDB database at `<state.dir>/<application.id>/<store>/<task>`.
pub struct RocksBackend {
    /// Shared with interactive-query readers ([`RocksBackend::reader`]).
    db: Arc<DB>,
    path: PathBuf,
}

impl RocksBackend {
    /// Opens (replaying the WAL) or creates the database at `path`.
    pub fn open(path: &Path, resources: &RocksResources) -> Result<Self, BackendError> {
        let opts = resources.options();
        // An interactive query may still hold the previous handle of this
        // directory for a moment (its reader shares the database): RocksDB
        // refuses a second open in one process until that read ends.
        let mut attempts = 0;
        let db = loop {
            let cfs = [
                ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, opts.clone()),
                ColumnFamilyDescriptor::new(META_CF, opts.clone()),
            ];
            match DB::open_cf_descriptors(&opts, path, cfs) {
                Ok(db) => break db,
                Err(e) if attempts < 50 && e.to_string().contains("lock") => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(rocks_error(path, "open", e));
                }
            }
        };
        Ok(RocksBackend {
            db: Arc::new(db),
            path: path.to_path_buf(),
        })
    }

    fn err(&self, what: &str, e: rocksdb::Error) -> BackendError {
        rocks_error(&self.path, what, e)
    }
}

fn rocks_error(path: &Path, what: &str, e: rocksdb::Error) -> BackendError {
    let message = format!("RocksDB {what} at {}: {e}", path.display());
    match e.kind() {
        rocksdb::ErrorKind::Corruption => BackendError::corrupt(message),
        _ => BackendError::new(message),
    }
}

/// Entries of `db` within the bounds, from one snapshot.
fn scan_db(
    db: &DB,
    path: &Path,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
    limit: usize,
) -> Result<Vec<Entry>, BackendError> {
    if bounds_are_empty(start, end) {
        return Ok(Vec::new());
    }
    let snapshot = db.snapshot();
    let mut read = ReadOptions::default();
    if let Bound::Excluded(e) = end {
        read.set_iterate_upper_bound(e.to_vec());
    }
    let mode = match start {
        Bound::Unbounded => IteratorMode::Start,
        Bound::Included(s) | Bound::Excluded(s) => IteratorMode::From(s, Direction::Forward),
    };
    let mut out = Vec::new();
    for item in snapshot.iterator_opt(mode, read) {
        let (k, v) = item.map_err(|e| rocks_error(path, "scan", e))?;
        if let Bound::Excluded(s) = start
            && &*k == s
        {
            continue;
        }
        if !before_end(&k, end) || out.len() == limit {
            break;
        }
        out.push((k.into_vec(), v.into_vec()));
    }
    Ok(out)
}

/// An interactive-query view of one RocksDB store.
struct RocksReader {
    db: Arc<DB>,
    path: PathBuf,
}

impl StoreReader for RocksReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        self.db
            .get(key)
            .map_err(|e| rocks_error(&self.path, "get", e))
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, BackendError> {
        scan_db(&self.db, &self.path, start, end, limit)
    }
}

impl KeyValueBackend for RocksBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        self.db.get(key).map_err(|e| self.err("get", e))
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, BackendError> {
        scan_db(&self.db, &self.path, start, end, limit)
    }

    fn apply(
        &mut self,
        writes: Vec<Write>,
        changelog_offset: Option<i64>,
    ) -> Result<(), BackendError> {
        let mut batch = WriteBatch::default();
        for (key, value) in writes {
            match value {
                Some(v) => batch.put(key, v),
                None => batch.delete(key),
            }
        }
        if let Some(offset) = changelog_offset {
            let meta = self.db.cf_handle(META_CF).ok_or_else(|| {
                BackendError::corrupt(format!(
                    "{}: column family {META_CF} missing",
                    self.path.display()
                ))
            })?;
            batch.put_cf(meta, OFFSET_KEY, offset.to_be_bytes());
        }
        // The WAL is on and not synced per write: a process crash keeps it
        // (the OS has it); a machine crash may lose a tail, but data and
        // offset are lost together and the changelog tail restores both.
        let mut opts = WriteOptions::default();
        opts.set_sync(false);
        self.db
            .write_opt(batch, &opts)
            .map_err(|e| self.err("write", e))
    }

    fn changelog_offset(&self) -> Result<Option<i64>, BackendError> {
        let Some(meta) = self.db.cf_handle(META_CF) else {
            return Ok(None);
        };
        let raw = self
            .db
            .get_cf(meta, OFFSET_KEY)
            .map_err(|e| self.err("read offset", e))?;
        match raw {
            None => Ok(None),
            Some(bytes) => {
                let array: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                    BackendError::corrupt(format!(
                        "{}: corrupt changelog offset record",
                        self.path.display()
                    ))
                })?;
                Ok(Some(i64::from_be_bytes(array)))
            }
        }
    }

    fn drop_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), BackendError> {
        if start >= end {
            return Ok(());
        }
        // One range tombstone, then a compaction of just that range, so the
        // files holding only dropped entries are deleted from disk now.
        let mut batch = WriteBatch::default();
        batch.delete_range(start, end);
        self.db
            .write(batch)
            .map_err(|e| self.err("drop range", e))?;
        self.db.compact_range(Some(start), Some(end));
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BackendError> {
        self.db.flush().map_err(|e| self.err("flush", e))?;
        if let Some(meta) = self.db.cf_handle(META_CF) {
            self.db.flush_cf(meta).map_err(|e| self.err("flush", e))?;
        }
        Ok(())
    }

    fn reader(&self) -> Option<Arc<dyn StoreReader>> {
        Some(Arc::new(RocksReader {
            db: self.db.clone(),
            path: self.path.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rocksdb_backend_behaves_like_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let resources = RocksResources::new(8 << 20, 8 << 20);
        let mut backend = RocksBackend::open(dir.path(), &resources).unwrap();
        super::super::backend_tests::check_backend(&mut backend);
    }

    #[test]
    fn data_and_offset_survive_reopening_together() {
        let dir = tempfile::tempdir().unwrap();
        let resources = RocksResources::new(8 << 20, 8 << 20);
        {
            let mut backend = RocksBackend::open(dir.path(), &resources).unwrap();
            assert_eq!(backend.changelog_offset().unwrap(), None);
            backend
                .apply(vec![(b"k".to_vec(), Some(b"v".to_vec()))], Some(42))
                .unwrap();
            // Dropped without flush: the WAL must carry both on reopen.
        }
        let backend = RocksBackend::open(dir.path(), &resources).unwrap();
        assert_eq!(backend.get(b"k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(backend.changelog_offset().unwrap(), Some(42));
    }

    #[test]
    fn a_reader_sees_committed_writes_from_another_thread() {
        let dir = tempfile::tempdir().unwrap();
        let resources = RocksResources::new(8 << 20, 8 << 20);
        let mut backend = RocksBackend::open(dir.path(), &resources).unwrap();
        let reader = backend.reader().unwrap();
        backend
            .apply(
                vec![
                    (b"a".to_vec(), Some(b"1".to_vec())),
                    (b"b".to_vec(), Some(b"2".to_vec())),
                ],
                Some(2),
            )
            .unwrap();
        let seen = std::thread::spawn(move || {
            (
                reader.get(b"a").unwrap(),
                reader
                    .scan(Bound::Unbounded, Bound::Unbounded, 10)
                    .unwrap()
                    .len(),
            )
        })
        .join()
        .unwrap();
        assert_eq!(seen, (Some(b"1".to_vec()), 2));
    }
}
