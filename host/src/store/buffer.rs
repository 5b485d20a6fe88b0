//! A store's writes since its last commit: the overlay every read consults
//! first (read-your-writes) and what the next commit applies, the last
//! write per key. Must never hold a committed entry.
//!
//! Point writes and reads are hashed. A sorted map made every write pay a
//! search of its keys (a seventh of word count's stream thread, at 50,000
//! distinct words per commit interval); key order is only needed by range
//! scans and by the commit, so the commit sorts once and key order is kept
//! only for a store that has been scanned.

use std::cell::OnceCell;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

use super::Write;

/// Bytes counted per buffered entry besides key and value.
pub(super) const ENTRY_OVERHEAD: usize = 48;

type Entries = HashMap<Vec<u8>, Option<Vec<u8>>, foldhash::fast::RandomState>;

#[derive(Default)]
pub(super) struct WriteBuffer {
    entries: Entries,
    /// The keys of `entries` in order: built by the store's first range
    /// scan, then kept up to date by every write, across commits (a store
    /// scanned once is scanned again). Empty cell: never scanned.
    ordered: OnceCell<BTreeSet<Vec<u8>>>,
    bytes: usize,
}

fn entry_bytes(key_len: usize, value: Option<&[u8]>) -> usize {
    key_len + value.map_or(0, <[u8]>::len) + ENTRY_OVERHEAD
}

impl WriteBuffer {
    /// What the buffer holds for `key`: `None` if nothing, `Some(None)` if
    /// a delete.
    pub fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.entries.get(key).map(Option::as_deref)
    }

    /// Buffers a write; returns what it replaced (as [`WriteBuffer::get`]).
    pub fn insert(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Option<Option<Vec<u8>>> {
        let key_len = key.len();
        self.bytes += entry_bytes(key_len, value.as_deref());
        if let Some(ordered) = self.ordered.get_mut()
            && !self.entries.contains_key(&key)
        {
            ordered.insert(key.clone());
        }
        let previous = self.entries.insert(key, value);
        if let Some(old) = &previous {
            self.bytes -= entry_bytes(key_len, old.as_deref());
        }
        previous
    }

    /// Forgets `key`'s write (undoing a call that made it).
    pub fn remove(&mut self, key: &[u8]) {
        if let Some(value) = self.entries.remove(key) {
            self.bytes -= entry_bytes(key.len(), value.as_deref());
            if let Some(ordered) = self.ordered.get_mut() {
                ordered.remove(key);
            }
        }
    }

    /// Bytes of the buffered writes, each counted with [`ENTRY_OVERHEAD`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The buffered writes within the bounds, in key order.
    pub fn range<'a>(
        &'a self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
    ) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        let ordered = self
            .ordered
            .get_or_init(|| self.entries.keys().cloned().collect());
        ordered
            .range::<[u8], _>((lower, upper))
            .map(|key| (key.as_slice(), self.entries[key].as_deref()))
    }

    /// Every buffered write, in key order.
    pub fn sorted(&self) -> Vec<(&[u8], Option<&[u8]>)> {
        let mut writes: Vec<_> = (self.entries.iter())
            .map(|(k, v)| (k.as_slice(), v.as_deref()))
            .collect();
        writes.sort_unstable_by(|a, b| a.0.cmp(b.0));
        writes
    }

    /// Empties the buffer, handing back its writes in key order.
    pub fn take_sorted(&mut self) -> Vec<Write> {
        let mut writes: Vec<Write> = std::mem::take(&mut self.entries).into_iter().collect();
        writes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.clear();
        writes
    }

    /// Drops every buffered write (a scanned store stays ordered).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        if let Some(ordered) = self.ordered.get_mut() {
            ordered.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, u8),
        Delete(u8),
        Undo(u8),
        Scan(u8, u8),
        Commit,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..20u8, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
            1 => (0..20u8).prop_map(Op::Delete),
            1 => (0..20u8).prop_map(Op::Undo),
            1 => (0..20u8, 0..20u8).prop_map(|(a, b)| Op::Scan(a.min(b), a.max(b))),
            1 => Just(Op::Commit),
        ]
    }

    /// Keys of different lengths, so key order is not insertion or
    /// numeric order.
    fn key(k: u8) -> Vec<u8> {
        vec![b'k'; usize::from(k % 3) + 1]
            .into_iter()
            .chain([k])
            .collect()
    }

    proptest! {
        /// The buffer answers as a sorted map of the same writes would,
        /// whether or not (and when) it was first scanned.
        #[test]
        fn it_answers_as_a_sorted_map_would(ops in prop::collection::vec(op(), 1..80)) {
            let mut buffer = WriteBuffer::default();
            let mut model: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Put(k, v) => {
                        let got = buffer.insert(key(k), Some(vec![v]));
                        prop_assert_eq!(got, model.insert(key(k), Some(vec![v])));
                    }
                    Op::Delete(k) => {
                        let got = buffer.insert(key(k), None);
                        prop_assert_eq!(got, model.insert(key(k), None));
                    }
                    Op::Undo(k) => {
                        buffer.remove(&key(k));
                        model.remove(&key(k));
                    }
                    Op::Scan(a, b) => {
                        let (a, b) = (key(a), key(b));
                        let (lower, upper) = (Bound::Included(&a[..]), Bound::Excluded(&b[..]));
                        if a < b {
                            let got: Vec<_> = buffer.range(lower, upper).collect();
                            let want: Vec<_> = (model.range::<[u8], _>((lower, upper)))
                                .map(|(k, v)| (k.as_slice(), v.as_deref()))
                                .collect();
                            prop_assert_eq!(got, want);
                        }
                    }
                    Op::Commit => {
                        let want: Vec<Write> = std::mem::take(&mut model).into_iter().collect();
                        prop_assert_eq!(buffer.take_sorted(), want);
                    }
                }
                let want: Vec<_> = model.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect();
                prop_assert_eq!(buffer.sorted(), want);
                let bytes: usize = (model.iter()).map(|(k, v)| entry_bytes(k.len(), v.as_deref())).sum();
                prop_assert_eq!(buffer.bytes(), bytes);
                prop_assert_eq!(buffer.is_empty(), model.is_empty());
            }
        }
    }
}
