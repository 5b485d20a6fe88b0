//! State stores: the [`KeyValueBackend`] trait with RocksDB and in-memory
//! backends, the per-task [`StateStore`] that buffers a commit interval's
//! writes, and the [`StateDirectory`] that owns `<state.dir>/<application.id>`.
//!
//! The one rule this module keeps: a store's contents and the changelog
//! offset they correspond to change together, in one atomic write
//! ([`KeyValueBackend::apply`]). Uncommitted writes live only in the
//! `StateStore` buffer, so a crash never leaves local state ahead of or
//! behind its recorded offset. Must never talk to Kafka: the commit cycle
//! hands it offsets.

mod buffer;
mod directory;
mod held;
mod memory;
#[cfg(feature = "server")]
mod rocks;
mod state_store;
pub mod window;

pub use directory::{StateDirectory, TaskDirGuard};
pub use memory::MemoryBackend;
#[cfg(feature = "server")]
pub use rocks::{RocksBackend, RocksResources};
pub use state_store::StateStore;

use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;

/// What a stream thread's restoring stores may hold of changelog records
/// read but not yet written (see `held`), shared among them; part of the
/// memory bound (`limits`).
pub const RESTORE_HOLD_BYTES: usize = 32 << 20;

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A write: `Some(value)` puts, `None` deletes.
pub type Write = (Vec<u8>, Option<Vec<u8>>);

/// A backend failure, in the backend's words.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    pub message: String,
    /// The data on disk cannot be read as written (RocksDB's `Corruption`):
    /// only wiping the store and restoring it from its changelog helps.
    pub corrupt: bool,
}

impl BackendError {
    pub fn new(message: impl Into<String>) -> Self {
        BackendError {
            message: message.into(),
            corrupt: false,
        }
    }

    pub fn corrupt(message: impl Into<String>) -> Self {
        BackendError {
            message: message.into(),
            corrupt: true,
        }
    }
}

/// A store failure, naming the store and the task.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store `{store}` of task {task}: {source}")]
    Backend {
        store: String,
        task: String,
        source: BackendError,
    },
    #[error("state directory {path} is in use by another process (lock file {path}/.lock)")]
    Locked { path: PathBuf },
    #[error("state directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether the store's data on disk is corrupt (see
    /// [`BackendError::corrupt`]).
    pub fn is_corrupt(&self) -> bool {
        matches!(self, StoreError::Backend { source, .. } if source.corrupt)
    }
}

/// Where a store's committed entries live. Implementations need not buffer:
/// [`StateStore`] does that.
pub trait KeyValueBackend: Send {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError>;

    /// Up to `limit` entries within the bounds, in key order.
    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, BackendError>;

    /// Applies `writes` and records `changelog_offset` (the next changelog
    /// offset to restore from) in one atomic step.
    fn apply(
        &mut self,
        writes: Vec<Write>,
        changelog_offset: Option<i64>,
    ) -> Result<(), BackendError>;

    /// The changelog offset recorded by the last `apply`, if this backend
    /// keeps one across restarts.
    fn changelog_offset(&self) -> Result<Option<i64>, BackendError>;

    /// Makes applied writes durable beyond the write-ahead log (flushes
    /// memtables); used on clean shutdown so the next start replays less.
    fn flush(&mut self) -> Result<(), BackendError>;

    /// Deletes every entry in [`start`, `end`) at once and frees their
    /// space (a window store's expired segments). Not a changelog write.
    fn drop_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), BackendError>;

    /// A read-only view of the committed entries that other threads may
    /// hold (interactive queries), if this backend can share one.
    fn reader(&self) -> Option<Arc<dyn StoreReader>> {
        None
    }
}

/// Reads of a store's committed state from outside its stream thread:
/// never sees a commit interval's buffered writes, never blocks the task.
pub trait StoreReader: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError>;

    /// Up to `limit` entries within the bounds, in key order, from one
    /// consistent snapshot.
    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, BackendError>;
}

/// True when no key can lie within the bounds (and `BTreeMap::range` would
/// panic on them).
pub(crate) fn bounds_are_empty(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e))
        | (Bound::Excluded(s), Bound::Excluded(e)) => s >= e,
        _ => false,
    }
}

/// Whether `key` lies before the end bound.
#[cfg(feature = "server")]
pub(crate) fn before_end(key: &[u8], end: Bound<&[u8]>) -> bool {
    match end {
        Bound::Unbounded => true,
        Bound::Included(e) => key <= e,
        Bound::Excluded(e) => key < e,
    }
}

#[cfg(test)]
pub(crate) mod backend_tests {
    //! The behaviour every backend must share, run against each.
    use super::*;

    fn keys(entries: Vec<Entry>) -> Vec<Vec<u8>> {
        entries.into_iter().map(|(k, _)| k).collect()
    }

    pub fn check_backend(backend: &mut dyn KeyValueBackend) {
        let writes: Vec<Write> = [&b"a"[..], b"b", b"b\x00", b"c", b"\xff", b"\xff\xff"]
            .iter()
            .map(|k| (k.to_vec(), Some(k.to_vec())))
            .collect();
        backend.apply(writes, Some(7)).unwrap();
        assert_eq!(backend.changelog_offset().unwrap().unwrap_or(7), 7);
        assert_eq!(backend.get(b"b").unwrap(), Some(b"b".to_vec()));
        assert_eq!(backend.get(b"zz").unwrap(), None);

        use Bound::*;
        let all = backend.scan(Unbounded, Unbounded, 100).unwrap();
        assert_eq!(keys(all).len(), 6);
        let r = backend.scan(Included(b"b"), Excluded(b"c"), 100).unwrap();
        assert_eq!(keys(r), vec![b"b".to_vec(), b"b\x00".to_vec()]);
        let r = backend.scan(Excluded(b"b"), Included(b"c"), 100).unwrap();
        assert_eq!(keys(r), vec![b"b\x00".to_vec(), b"c".to_vec()]);
        let r = backend.scan(Included(b"\xff"), Unbounded, 100).unwrap();
        assert_eq!(keys(r), vec![b"\xff".to_vec(), b"\xff\xff".to_vec()]);
        let r = backend.scan(Included(b"a"), Unbounded, 2).unwrap();
        assert_eq!(keys(r), vec![b"a".to_vec(), b"b".to_vec()]);
        assert!(
            backend
                .scan(Included(b"c"), Excluded(b"c"), 10)
                .unwrap()
                .is_empty()
        );

        backend.apply(vec![(b"b".to_vec(), None)], Some(9)).unwrap();
        assert_eq!(backend.get(b"b").unwrap(), None);
        assert_eq!(backend.changelog_offset().unwrap().unwrap_or(9), 9);
        backend.flush().unwrap();
    }
}
