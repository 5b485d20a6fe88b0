//! What a key-value store's handle keeps in the guest: the values of keys
//! it read and wrote, so that a read of a known key does not cross to the
//! host, and the writes not yet handed to the host.
//!
//! Kept across calls: an instance is the only writer of its task's stores
//! while it lives (the host restores before `init`, swaps versions between
//! calls on a new instance, and replaces the instance when it undoes a
//! call it did not see fail), so what the guest read stays true. A failed
//! call forgets everything ([`StoreCache::clear`]). Must never grow past
//! its budget between calls: guest memory is capped by the host.

use std::collections::{HashMap, hash_map};

/// Bytes of keys and values (plus [`ENTRY_OVERHEAD`] each) kept between
/// calls, per store; past it, the clean entries are forgotten at the end
/// of the call.
pub(crate) const KEEP_BYTES: usize = 4 << 20;

/// What the map spends on an entry beyond its bytes (hash slot, two
/// vector headers, flags), for the budget.
const ENTRY_OVERHEAD: usize = 64;

/// A fixed seed: a `RandomState` would draw from (and advance) the guest's
/// seeded randomness, so what the processor's own hash maps compute would
/// depend on how many calls the instance had. foldhash, not SipHash: with
/// fixed keys SipHash resists flooding no better, and it cost a tenth of
/// word count's guest time.
pub(crate) type Keys = foldhash::fast::FixedState;

struct Entry {
    /// `None`: the key is absent (read as absent, or deleted).
    value: Option<Vec<u8>>,
    /// Written and not yet handed to the host.
    dirty: bool,
}

#[derive(Default)]
pub(crate) struct StoreCache {
    entries: HashMap<Vec<u8>, Entry, Keys>,
    /// Keys written since the last [`StoreCache::take_writes`], in order.
    dirty: Vec<Vec<u8>>,
    /// Bytes of the writes not yet handed over (an overwrite counts again).
    pending_bytes: usize,
    /// Estimate of what `entries` holds, for [`KEEP_BYTES`].
    kept_bytes: usize,
}

/// Bytes of a key and its value.
fn size(key: &[u8], value: &Option<Vec<u8>>) -> usize {
    key.len() + value.as_ref().map_or(0, Vec::len)
}

impl StoreCache {
    /// The known value of `key`: `Some(None)` when known absent, `None`
    /// when unknown (ask the host).
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.entries.get(key).map(|e| e.value.as_deref())
    }

    /// Remembers what the host answered for `key` (never over a write).
    pub(crate) fn remember(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        if let hash_map::Entry::Vacant(vacant) = self.entries.entry(key) {
            self.kept_bytes += size(vacant.key(), &value) + ENTRY_OVERHEAD;
            let dirty = false;
            vacant.insert(Entry { value, dirty });
        }
    }

    /// Buffers a write (`None`: a delete); returns the bytes of writes now
    /// pending, for the caller to hand them over past its limit.
    pub(crate) fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> usize {
        self.pending_bytes += size(&key, &value);
        match self.entries.get_mut(&key) {
            Some(entry) => {
                self.kept_bytes += value.as_ref().map_or(0, Vec::len);
                self.kept_bytes -= entry.value.as_ref().map_or(0, Vec::len);
                if !entry.dirty {
                    self.dirty.push(key);
                }
                *entry = Entry { value, dirty: true };
            }
            None => {
                self.kept_bytes += size(&key, &value) + ENTRY_OVERHEAD;
                self.dirty.push(key.clone());
                self.entries.insert(key, Entry { value, dirty: true });
            }
        }
        self.pending_bytes
    }

    /// The writes to hand to the host, in the order their keys were first
    /// written, each key once with its latest value; they stay known as
    /// clean entries.
    pub(crate) fn take_writes(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.pending_bytes = 0;
        let mut writes = Vec::with_capacity(self.dirty.len());
        for key in self.dirty.drain(..) {
            if let Some(entry) = self.entries.get_mut(&key) {
                entry.dirty = false;
                writes.push((key, entry.value.clone()));
            }
        }
        writes
    }

    /// At the end of a call, with nothing pending: forgets every entry if
    /// they are past [`KEEP_BYTES`].
    pub(crate) fn trim(&mut self) {
        if self.kept_bytes > KEEP_BYTES && self.dirty.is_empty() {
            self.entries.clear();
            self.kept_bytes = 0;
        }
    }

    /// Forgets everything, pending writes included (a failed call).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.dirty.clear();
        self.pending_bytes = 0;
        self.kept_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn reads_and_writes_stay_known_after_the_writes_are_taken() {
        let mut c = StoreCache::default();
        assert_eq!(c.get(b"a"), None);
        c.remember(b("a"), Some(b("1")));
        c.remember(b("gone"), None);
        c.write(b("b"), Some(b("2")));
        assert_eq!(c.take_writes(), vec![(b("b"), Some(b("2")))]);
        assert_eq!(c.take_writes(), vec![], "each write is handed over once");
        assert_eq!(c.get(b"a"), Some(Some(&b"1"[..])));
        assert_eq!(c.get(b"b"), Some(Some(&b"2"[..])));
        assert_eq!(c.get(b"gone"), Some(None));
    }

    #[test]
    fn a_key_written_twice_is_handed_over_once_with_its_latest_value() {
        let mut c = StoreCache::default();
        c.write(b("x"), Some(b("1")));
        c.write(b("y"), Some(b("1")));
        c.write(b("x"), None);
        let pending = c.write(b("y"), Some(b("22")));
        assert_eq!(
            pending,
            2 + 2 + 1 + 3,
            "every write counts toward the flush"
        );
        assert_eq!(
            c.take_writes(),
            vec![(b("x"), None), (b("y"), Some(b("22")))]
        );
    }

    #[test]
    fn a_read_never_overrides_a_write() {
        let mut c = StoreCache::default();
        c.write(b("k"), Some(b("new")));
        c.remember(b("k"), Some(b("old")));
        assert_eq!(c.get(b"k"), Some(Some(&b"new"[..])));
    }

    #[test]
    fn past_the_budget_the_clean_entries_are_forgotten_but_never_a_pending_write() {
        let mut c = StoreCache::default();
        let big = vec![0u8; KEEP_BYTES / 2];
        c.remember(b("a"), Some(big.clone()));
        c.write(b("b"), Some(big.clone()));
        c.write(b("c"), Some(vec![1]));
        c.trim();
        assert!(c.get(b"b").is_some(), "pending writes are kept");
        assert_eq!(c.take_writes().len(), 2);
        c.trim();
        assert_eq!(c.get(b"a"), None);
        assert_eq!(c.get(b"b"), None);
        c.write(b("d"), Some(vec![1]));
        c.trim();
        assert!(c.get(b"d").is_some(), "under the budget, entries stay");
    }

    #[test]
    fn clear_forgets_pending_writes() {
        let mut c = StoreCache::default();
        c.remember(b("a"), Some(b("1")));
        c.write(b("b"), Some(b("2")));
        c.clear();
        assert_eq!(c.get(b"a"), None);
        assert_eq!(c.take_writes(), vec![]);
    }
}
