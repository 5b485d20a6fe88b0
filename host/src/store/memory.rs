//! The in-memory backend: a sorted map. Nothing survives the process, so it
//! records no changelog offset and a logged in-memory store is rebuilt from
//! its changelog every time its task starts.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use super::{BackendError, Entry, KeyValueBackend, StoreReader, Write, bounds_are_empty};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// The entries sit behind a lock only so interactive queries can read them
/// from another thread; the task's own reads take it uncontended.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    map: Arc<RwLock<Map>>,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Map> {
        read(&self.map)
    }
}

fn read(map: &RwLock<Map>) -> RwLockReadGuard<'_, Map> {
    map.read().unwrap_or_else(|p| p.into_inner())
}

fn scan_map(map: &Map, start: Bound<&[u8]>, end: Bound<&[u8]>, limit: usize) -> Vec<Entry> {
    if bounds_are_empty(start, end) {
        return Vec::new();
    }
    map.range::<[u8], _>((start, end))
        .take(limit)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl KeyValueBackend for MemoryBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.read().get(key).cloned())
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, BackendError> {
        Ok(scan_map(&self.read(), start, end, limit))
    }

    fn apply(
        &mut self,
        writes: Vec<Write>,
        _changelog_offset: Option<i64>,
    ) -> Result<(), BackendError> {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        for (key, value) in writes {
            match value {
                Some(v) => map.insert(key, v),
                None => map.remove(&key),
            };
        }
        Ok(())
    }

    fn changelog_offset(&self) -> Result<Option<i64>, BackendError> {
        Ok(None)
    }

    fn flush(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    fn drop_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), BackendError> {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if start < end {
            let doomed: Vec<Vec<u8>> = map
                .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                map.remove(&k);
            }
        }
        Ok(())
    }

    fn reader(&self) -> Option<Arc<dyn StoreReader>> {
        Some(Arc::new(MemoryReader(self.map.clone())))
    }
}

/// An interactive-query view of an in-memory store's committed entries.
struct MemoryReader(Arc<RwLock<Map>>);

impl StoreReader for MemoryReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(read(&self.0).get(key).cloned())
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, BackendError> {
        Ok(scan_map(&read(&self.0), start, end, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_backend_behaves_like_a_store() {
        super::super::backend_tests::check_backend(&mut MemoryBackend::new());
    }

    #[test]
    fn a_reader_sees_what_was_applied() {
        let mut backend = MemoryBackend::new();
        let reader = backend.reader().unwrap();
        backend
            .apply(vec![(b"k".to_vec(), Some(b"v".to_vec()))], None)
            .unwrap();
        let seen = std::thread::spawn(move || reader.get(b"k").unwrap())
            .join()
            .unwrap();
        assert_eq!(seen, Some(b"v".to_vec()));
    }
}
