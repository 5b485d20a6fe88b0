//! The in-memory backend: a sorted map. Nothing survives the process, so it
//! records no changelog offset and a logged in-memory store is rebuilt from
//! its changelog every time its task starts.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{BackendError, Entry, KeyValueBackend, Write, bounds_are_empty};

#[derive(Debug, Default)]
pub struct MemoryBackend {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }
}

impl KeyValueBackend for MemoryBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.map.get(key).cloned())
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, BackendError> {
        if bounds_are_empty(start, end) {
            return Ok(Vec::new());
        }
        Ok(self
            .map
            .range::<[u8], _>((start, end))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn apply(
        &mut self,
        writes: Vec<Write>,
        _changelog_offset: Option<i64>,
    ) -> Result<(), BackendError> {
        for (key, value) in writes {
            match value {
                Some(v) => self.map.insert(key, v),
                None => self.map.remove(&key),
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
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_backend_behaves_like_a_store() {
        super::super::backend_tests::check_backend(&mut super::MemoryBackend::new());
    }
}
