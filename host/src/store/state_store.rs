//! One store of one task as the processor sees it: committed entries in a
//! backend, plus this commit interval's writes in a [`WriteBuffer`] that
//! every read consults first (read-your-writes). The buffer also
//! deduplicates the changelog: only the last write per key is sent at
//! commit, as Kafka Streams' record cache does.
//!
//! Paired verbs: [`StateStore::pending_writes`] (what the commit cycle must
//! send to the changelog) then [`StateStore::commit`] (apply it with the
//! changelog offset); [`StateStore::discard_uncommitted`] on a dirty close;
//! [`StateStore::restore`] then [`StateStore::write_held`] for a restore.

use std::ops::Bound;

use super::buffer::WriteBuffer;
use super::held::Held;
use super::window::{CLOCK_KEY, Layout, WindowCursor, WindowQuery, WindowState, Windowed};
use super::{BackendError, Entry, KeyValueBackend, StoreError, Write, bounds_are_empty};
use crate::topology::{StoreSpec, TaskId};

pub struct StateStore {
    spec: StoreSpec,
    task: TaskId,
    backend: Box<dyn KeyValueBackend>,
    dirty: WriteBuffer,
    /// While a call is watched ([`StateStore::begin_call`]): each write's
    /// key and what the buffer held for it before, to undo the call.
    undo: Option<Vec<Undo>>,
    /// A window store's layout and clock (the clock is also an entry of
    /// the store itself, see [`CLOCK_KEY`]).
    window: Option<WindowState>,
    /// Changelog records a restore read but has not written yet.
    held: Held,
    /// Cleared when a full hold saved less than a third of its writes:
    /// the rest of the restore writes each batch as it comes.
    holding: bool,
}

/// A buffered write's key and what the buffer held for it before (`None`:
/// nothing; `Some(None)`: a delete).
type Undo = (Vec<u8>, Option<Option<Vec<u8>>>);

impl StateStore {
    pub fn new(spec: StoreSpec, task: TaskId, backend: Box<dyn KeyValueBackend>) -> Self {
        let window = spec.window.as_ref().map(|w| {
            let stored = backend.get(CLOCK_KEY).ok().flatten();
            WindowState::new(w, stored.as_deref())
        });
        StateStore {
            spec,
            task,
            backend,
            dirty: WriteBuffer::default(),
            undo: None,
            window,
            held: Held::default(),
            holding: true,
        }
    }

    pub fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    fn err(&self, source: BackendError) -> StoreError {
        StoreError::Backend {
            store: self.spec.name.clone(),
            task: self.task.to_string(),
            source,
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.dirty.get(key) {
            Some(buffered) => Ok(buffered.map(<[u8]>::to_vec)),
            None => self.backend.get(key).map_err(|e| self.err(e)),
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.write(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.write(key, None);
    }

    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let undo_key = self.undo.is_some().then(|| key.clone());
        let previous = self.dirty.insert(key, value);
        if let (Some(undo), Some(key)) = (&mut self.undo, undo_key) {
            undo.push((key, previous));
        }
    }

    /// Starts recording this call's writes so a failed call can be undone
    /// (the `continue` exception handler re-runs a batch without the
    /// failing record).
    pub fn begin_call(&mut self) {
        self.undo = Some(Vec::new());
        if let Some(w) = &mut self.window {
            w.begin_call();
        }
    }

    /// Keeps the call's writes.
    pub fn end_call(&mut self) {
        self.undo = None;
        if let Some(w) = &mut self.window {
            w.end_call();
        }
    }

    /// Undoes the writes since [`StateStore::begin_call`].
    pub fn rollback_call(&mut self) {
        if let Some(w) = &mut self.window {
            w.rollback_call();
        }
        let Some(undo) = self.undo.take() else {
            return;
        };
        for (key, previous) in undo.into_iter().rev() {
            match previous {
                Some(value) => {
                    self.dirty.insert(key, value);
                }
                None => self.dirty.remove(&key),
            }
        }
    }

    /// Up to `limit` entries within the bounds, in key order, buffered writes
    /// (including deletes) merged over committed entries.
    pub fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let limit = limit.max(1);
        let mut out: Vec<Entry> = Vec::new();
        let mut from: Bound<Vec<u8>> = start.map(<[u8]>::to_vec);
        loop {
            if bounds_are_empty(from.as_ref().map(Vec::as_slice), end) {
                break;
            }
            let page = self
                .backend
                .scan(from.as_ref().map(Vec::as_slice), end, limit)
                .map_err(|e| self.err(e))?;
            let exhausted = page.len() < limit;
            let last = page.last().map(|(k, _)| k.clone());
            // Buffered writes are merged up to the last committed key this
            // page reached; later ones wait for the next page.
            let upper: Bound<&[u8]> = match (&last, exhausted) {
                (Some(k), false) => Bound::Included(k.as_slice()),
                _ => end,
            };
            let lower = from.as_ref().map(Vec::as_slice);
            let mut buffered = if bounds_are_empty(lower, upper) {
                None
            } else {
                Some(self.dirty.range(lower, upper).peekable())
            };
            let mut committed = page.into_iter().peekable();
            loop {
                let next_buffered = buffered.as_mut().and_then(|b| b.peek().map(|(k, _)| *k));
                let next_committed = committed.peek().map(|(k, _)| k.as_slice());
                let (take_buffered, shadows) = match (next_buffered, next_committed) {
                    (None, None) => break,
                    (Some(b), Some(c)) => (b <= c, b == c),
                    (Some(_), None) => (true, false),
                    (None, Some(_)) => (false, false),
                };
                if !take_buffered {
                    out.extend(committed.next());
                    continue;
                }
                if shadows {
                    committed.next();
                }
                if let Some((k, Some(v))) = buffered.as_mut().and_then(Iterator::next) {
                    out.push((k.to_vec(), v.to_vec()));
                }
            }
            match last {
                Some(k) if !exhausted && out.len() < limit => from = Bound::Excluded(k),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    /// Bytes of writes buffered since the last commit.
    pub fn dirty_bytes(&self) -> usize {
        self.dirty.bytes()
    }

    /// The writes the next commit will apply, in key order: what must go to
    /// the changelog first.
    pub fn pending_writes(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.dirty.sorted().into_iter()
    }

    pub fn has_pending_writes(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Applies buffered writes together with `changelog_offset`, the next
    /// changelog offset after them (`None` for an unlogged store).
    pub fn commit(&mut self, changelog_offset: Option<i64>) -> Result<(), StoreError> {
        if self.dirty.is_empty() && changelog_offset.is_none() {
            return Ok(());
        }
        let writes = self.dirty.take_sorted();
        self.backend
            .apply(writes, changelog_offset)
            .map_err(|e| self.err(e))?;
        self.expire()
    }

    /// Applies records read from the changelog; `next_offset` is the offset
    /// after the last of them. With `hold_bytes` above 0, the last write of
    /// each key is held across calls (see [`super::held`]) until the hold
    /// takes `hold_bytes`, for as long as holding saves writes;
    /// [`StateStore::write_held`] must then be called before the store is
    /// read or written otherwise.
    pub fn restore(
        &mut self,
        records: Vec<Write>,
        next_offset: i64,
        hold_bytes: usize,
    ) -> Result<(), StoreError> {
        debug_assert!(
            self.dirty.is_empty(),
            "restoring a store with uncommitted writes"
        );
        if let Some(w) = &mut self.window {
            for (key, value) in &records {
                w.restored(key, value.as_deref());
            }
        }
        let read = records.len();
        let last = last_per_key(records);
        if hold_bytes == 0 || !self.holding {
            self.write_held()?;
            return self.apply_restored(last, next_offset);
        }
        self.held.merge(last, read, next_offset);
        if self.held.bytes() >= hold_bytes {
            self.holding = self.held.paid();
            return self.write_held();
        }
        Ok(())
    }

    /// Writes what a restore holds, with the offset after it.
    pub fn write_held(&mut self) -> Result<(), StoreError> {
        match self.held.take() {
            Some((writes, next_offset)) => self.apply_restored(writes, next_offset),
            None => Ok(()),
        }
    }

    fn apply_restored(&mut self, writes: Vec<Write>, next_offset: i64) -> Result<(), StoreError> {
        self.backend
            .apply(writes, Some(next_offset))
            .map_err(|e| self.err(e))?;
        self.expire()
    }

    /// A window store's layout (None for a key-value store).
    pub fn window_layout(&self) -> Option<&Layout> {
        self.window.as_ref().map(|w| &w.layout)
    }

    /// After a commit or restore: the clock is committed, and a window
    /// store's segments that passed retention are dropped with one range
    /// delete of committed entries, nothing sent to the changelog.
    fn expire(&mut self) -> Result<(), StoreError> {
        let Some(w) = &mut self.window else {
            return Ok(());
        };
        w.committed();
        let Some(end) = w.expired() else {
            return Ok(());
        };
        self.backend
            .drop_range(&[], &end)
            .map_err(|e| self.err(e))?;
        tracing::debug!(store = %self.spec.name, "dropped expired window segments");
        Ok(())
    }

    /// Writes `key`'s window at `start`, unless it is closed (see
    /// [`WindowState::admit`]): then nothing is written and false returned.
    pub fn window_put(&mut self, key: &[u8], start: i64, value: Vec<u8>, stream_time: i64) -> bool {
        let Some(w) = &mut self.window else {
            return false;
        };
        let Some(clock) = w.admit(start, stream_time) else {
            return false;
        };
        let stored = w.layout.encode(key, start);
        if let Some(clock) = clock {
            self.put(CLOCK_KEY.to_vec(), clock);
        }
        self.put(stored, value);
        true
    }

    pub fn window_get(&self, key: &[u8], start: i64) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.window {
            Some(w) if start >= w.layout.min_live(w.observed()) => {
                self.get(&w.layout.encode(key, start))
            }
            _ => Ok(None),
        }
    }

    pub fn window_delete(&mut self, key: &[u8], start: i64) {
        if let Some(w) = &self.window {
            let stored = w.layout.encode(key, start);
            self.delete(stored);
        }
    }

    /// Where `query` starts on this store.
    pub fn window_cursor(&self, query: &WindowQuery) -> Option<WindowCursor> {
        self.window
            .as_ref()
            .map(|w| query.start(&w.layout, w.observed()))
    }

    /// Up to `max` further windows of `query` (buffered writes included).
    pub fn window_fetch(
        &self,
        query: &WindowQuery,
        cursor: &mut WindowCursor,
        max: usize,
    ) -> Result<Vec<Windowed>, StoreError> {
        let Some(w) = &self.window else {
            return Ok(Vec::new());
        };
        query.next(&w.layout, w.observed(), cursor, max, |s, e, limit| {
            self.scan(s, e, limit)
        })
    }

    /// The changelog offset the committed state corresponds to.
    pub fn changelog_offset(&self) -> Result<Option<i64>, StoreError> {
        self.backend.changelog_offset().map_err(|e| self.err(e))
    }

    /// Drops writes that were never committed (dirty close, failed task)
    /// and what a restore held.
    pub fn discard_uncommitted(&mut self) {
        self.dirty.clear();
        self.held = Held::default();
        if let Some(w) = &mut self.window {
            w.discard();
        }
    }

    /// A view of the committed state for interactive queries, if the
    /// backend shares one.
    pub fn reader(&self) -> Option<std::sync::Arc<dyn super::StoreReader>> {
        self.backend.reader()
    }

    /// Flushes committed state to disk (clean close).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.backend.flush().map_err(|e| self.err(e))
    }
}

/// The last write of each key of `records`, in key order: what applying
/// them all in order leaves. A changelog read repeats hot keys, and
/// RocksDB inserts sorted keys into its memtable for less (each insert's
/// search starts where the previous one ended), so a restore applies this.
fn last_per_key(mut records: Vec<Write>) -> Vec<Write> {
    // Stable: the writes of one key keep their changelog order.
    records.sort_by(|a, b| a.0.cmp(&b.0));
    let mut last = Vec::with_capacity(records.len());
    let mut records = records.into_iter().peekable();
    while let Some(write) = records.next() {
        if records.peek().is_none_or(|next| next.0 != write.0) {
            last.push(write);
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryBackend;
    use crate::store::buffer::ENTRY_OVERHEAD;
    use crate::topology::StoreKind;

    #[test]
    fn a_restore_applies_the_last_write_of_each_key() {
        let w =
            |k: &str, v: Option<&str>| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec()));
        let read = vec![
            w("b", Some("1")),
            w("a", Some("1")),
            w("b", None),
            w("c", Some("1")),
            w("a", Some("2")),
            w("c", None),
            w("c", Some("3")),
        ];
        assert_eq!(
            last_per_key(read.clone()),
            vec![w("a", Some("2")), w("b", None), w("c", Some("3"))]
        );
        let mut s = store();
        s.put(b"b".to_vec(), b"0".to_vec());
        s.commit(None).unwrap();
        s.restore(read, 7, 0).unwrap();
        assert_eq!(s.get(b"a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(s.get(b"b").unwrap(), None);
        assert_eq!(s.get(b"c").unwrap(), Some(b"3".to_vec()));
    }

    /// On RocksDB: the in-memory backend keeps no changelog offset.
    #[cfg(feature = "server")]
    #[test]
    fn a_restore_holds_the_last_write_of_each_key_while_that_saves_writes() {
        let w = |k: &str, v: &str| (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec()));
        let value = |s: &StateStore, k: &str| s.get(k.as_bytes()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let resources = crate::store::RocksResources::new(8 << 20, 8 << 20);
        let backend = crate::store::RocksBackend::open(dir.path(), &resources).unwrap();
        let spec = StoreSpec::key_value("s", true);
        let mut s = StateStore::new(spec, TaskId::for_partition(0), Box::new(backend));
        let repeated = (0..10)
            .map(|i| w(["a", "b"][i % 2], &i.to_string()))
            .collect();
        s.restore(repeated, 10, 1 << 20).unwrap();
        assert_eq!(value(&s, "a"), None, "held, not written");
        assert_eq!(s.changelog_offset().unwrap(), None);
        // Every batch is held until the hold is full or written.
        s.restore(vec![w("a", "x"), w("c", "1")], 12, 1 << 20)
            .unwrap();
        assert_eq!(value(&s, "c"), None);
        s.write_held().unwrap();
        assert_eq!(value(&s, "a"), Some(b"x".to_vec()));
        assert_eq!(value(&s, "b"), Some(b"9".to_vec()));
        assert_eq!(s.changelog_offset().unwrap(), Some(12));
        s.write_held().unwrap();
        assert_eq!(s.changelog_offset().unwrap(), Some(12), "nothing held");
        // A full hold is written; one that saved writes goes on holding.
        s.restore(vec![w("f", "1"), w("f", "2")], 14, 1).unwrap();
        assert_eq!(value(&s, "f"), Some(b"2".to_vec()));
        assert_eq!(s.changelog_offset().unwrap(), Some(14));
        s.restore(vec![w("g", "1")], 15, 1 << 20).unwrap();
        assert_eq!(value(&s, "g"), None, "held");
        // A dirty close drops a hold: the store keeps its own offset.
        s.discard_uncommitted();
        s.write_held().unwrap();
        assert_eq!(value(&s, "g"), None);
        assert_eq!(s.changelog_offset().unwrap(), Some(14));
        // A full hold of unique keys is written, and so is every batch
        // after it, as it comes.
        s.restore(vec![w("h", "1"), w("i", "1")], 17, 1).unwrap();
        assert_eq!(s.changelog_offset().unwrap(), Some(17));
        s.restore(vec![w("j", "1"), w("j", "2")], 19, 1 << 20)
            .unwrap();
        assert_eq!(value(&s, "j"), Some(b"2".to_vec()));
        assert_eq!(s.changelog_offset().unwrap(), Some(19));
    }

    fn store() -> StateStore {
        let spec = StoreSpec::key_value("s", false);
        StateStore::new(
            spec,
            TaskId::for_partition(0),
            Box::new(MemoryBackend::new()),
        )
    }

    /// A window store of 10 s windows, 5 s grace, 120 s retention (60 s
    /// segments), on `backend`.
    fn window_store(backend: MemoryBackend) -> StateStore {
        let spec = StoreSpec {
            name: "w".into(),
            kind: StoreKind::Window,
            logged: true,
            persistent: false,
            key_format: Default::default(),
            value_format: Default::default(),
            window: Some(crate::topology::WindowSpec {
                size_ms: 10_000,
                grace_ms: 5_000,
                retention_ms: 120_000,
            }),
            source_changelog: None,
        };
        StateStore::new(spec, TaskId::for_partition(0), Box::new(backend))
    }

    fn starts(s: &StateStore, key: &[u8]) -> Vec<i64> {
        let q = WindowQuery::key(key, 0, i64::MAX / 2);
        let mut cursor = s.window_cursor(&q).unwrap();
        s.window_fetch(&q, &mut cursor, 1000)
            .unwrap()
            .into_iter()
            .map(|w| w.start)
            .collect()
    }

    #[test]
    fn window_writes_judge_lateness_record_by_record_and_expire_whole_segments() {
        let backend = MemoryBackend::new();
        let reader = backend.reader().unwrap();
        let mut s = window_store(backend);
        // One batch judged at stream time -1: the newest start written
        // moves the judgement within it.
        assert!(s.window_put(b"k", 0, b"a".to_vec(), -1));
        assert!(s.window_put(b"k", 100_000, b"b".to_vec(), -1));
        // [0, 10 s) + 5 s grace closed long before 100 s.
        assert!(!s.window_put(b"k", 0, b"late".to_vec(), -1));
        assert!(s.window_put(b"k", 95_000, b"c".to_vec(), -1));
        s.commit(Some(4)).unwrap();
        assert_eq!(starts(&s, b"k"), vec![0, 95_000, 100_000]);
        // 200 s: retention keeps starts after 80 s; the segment of 0 s is
        // dropped from the backend at the commit, not just hidden.
        assert!(s.window_put(b"k", 200_000, b"d".to_vec(), 150_000));
        s.commit(Some(5)).unwrap();
        assert_eq!(starts(&s, b"k"), vec![95_000, 100_000, 200_000]);
        let all = reader
            .scan(Bound::Unbounded, Bound::Unbounded, 100)
            .unwrap();
        let kept: Vec<i64> = all
            .iter()
            .filter_map(|(k, _)| Layout::decode(k).map(|(_, start)| start))
            .collect();
        assert_eq!(kept, vec![95_000, 100_000, 200_000], "segment 0 dropped");
        assert!(all.iter().any(|(k, _)| k == CLOCK_KEY), "the clock is kept");
    }

    #[test]
    fn an_undone_window_write_does_not_move_the_clock() {
        let mut s = window_store(MemoryBackend::new());
        assert!(s.window_put(b"k", 10_000, b"a".to_vec(), 10_000));
        s.commit(Some(1)).unwrap();
        s.begin_call();
        assert!(s.window_put(b"k", 900_000, b"far".to_vec(), 10_000));
        s.rollback_call();
        // Still judged by the clock before the undone call.
        assert!(s.window_put(b"k", 20_000, b"b".to_vec(), 10_000));
        s.commit(Some(2)).unwrap();
        assert_eq!(starts(&s, b"k"), vec![10_000, 20_000]);
        assert!(s.window_put(b"k", 900_000, b"far".to_vec(), 10_000));
        s.discard_uncommitted();
        assert!(s.window_put(b"k", 30_000, b"c".to_vec(), 10_000));
    }

    #[test]
    fn a_restored_window_store_goes_on_from_the_restored_clock() {
        // What the changelog carries: windows and the clock entry.
        let mut source = window_store(MemoryBackend::new());
        assert!(source.window_put(b"k", 50_000, b"a".to_vec(), 60_000));
        assert!(source.window_put(b"k", 300_000, b"b".to_vec(), 300_000));
        let changelog: Vec<Write> = source
            .pending_writes()
            .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
            .collect();
        // A standby or a restore applies them.
        let mut restored = window_store(MemoryBackend::new());
        restored.restore(changelog, 2, 0).unwrap();
        assert_eq!(
            starts(&restored, b"k"),
            vec![300_000],
            "50 s is past retention"
        );
        // Lateness goes on from the restored stream time, not from -1.
        assert!(!restored.window_put(b"k", 280_000, b"late".to_vec(), -1));
        assert!(restored.window_put(b"k", 290_000, b"in grace".to_vec(), -1));
    }

    fn keys(entries: Vec<Entry>) -> Vec<String> {
        entries
            .into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect()
    }

    #[test]
    fn reads_see_uncommitted_writes_and_deletes() {
        let mut s = store();
        s.put(b"a".to_vec(), b"1".to_vec());
        s.commit(Some(1)).unwrap();
        s.put(b"b".to_vec(), b"2".to_vec());
        s.delete(b"a".to_vec());
        assert_eq!(s.get(b"a").unwrap(), None);
        assert_eq!(s.get(b"b").unwrap(), Some(b"2".to_vec()));
        s.discard_uncommitted();
        assert_eq!(s.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.get(b"b").unwrap(), None);
    }

    #[test]
    fn a_rolled_back_call_leaves_the_buffer_as_before_it() {
        let mut s = store();
        s.put(b"a".to_vec(), b"1".to_vec());
        s.commit(Some(1)).unwrap();
        s.put(b"b".to_vec(), b"2".to_vec());
        let before = s.dirty_bytes();
        s.begin_call();
        s.put(b"b".to_vec(), b"changed".to_vec());
        s.delete(b"a".to_vec());
        s.put(b"c".to_vec(), b"3".to_vec());
        s.put(b"c".to_vec(), b"4".to_vec());
        s.rollback_call();
        assert_eq!(s.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.get(b"b").unwrap(), Some(b"2".to_vec()));
        assert_eq!(s.get(b"c").unwrap(), None);
        assert_eq!(s.dirty_bytes(), before);
        // A kept call stays; a later rollback has nothing to undo.
        s.begin_call();
        s.put(b"d".to_vec(), b"5".to_vec());
        s.end_call();
        s.rollback_call();
        assert_eq!(s.get(b"d").unwrap(), Some(b"5".to_vec()));
    }

    #[test]
    fn scans_merge_buffer_over_committed_across_pages() {
        let mut s = store();
        for k in ["a", "c", "e", "g", "i", "k"] {
            s.put(k.into(), b"old".to_vec());
        }
        s.commit(Some(6)).unwrap();
        s.put(b"b".to_vec(), b"new".to_vec());
        s.delete(b"c".to_vec());
        s.delete(b"e".to_vec());
        s.put(b"g".to_vec(), b"new".to_vec());
        s.put(b"z".to_vec(), b"new".to_vec());
        let all = s.scan(Bound::Unbounded, Bound::Unbounded, 100).unwrap();
        assert_eq!(keys(all.clone()), ["a", "b", "g", "i", "k", "z"]);
        assert_eq!(all[2].1, b"new".to_vec());
        // Small pages: deletes shadow whole committed pages.
        let mut collected = Vec::new();
        let mut from: Bound<Vec<u8>> = Bound::Unbounded;
        loop {
            let page = s
                .scan(from.as_ref().map(Vec::as_slice), Bound::Unbounded, 2)
                .unwrap();
            let Some((last, _)) = page.last().cloned() else {
                break;
            };
            collected.extend(keys(page));
            from = Bound::Excluded(last);
        }
        assert_eq!(collected, ["a", "b", "g", "i", "k", "z"]);
        let r = s
            .scan(Bound::Excluded(b"b"), Bound::Included(b"i"), 10)
            .unwrap();
        assert_eq!(keys(r), ["g", "i"]);
        assert!(
            s.scan(Bound::Included(b"q"), Bound::Excluded(b"q"), 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn buffer_keeps_only_the_last_write_per_key() {
        let mut s = store();
        for n in 0..5u8 {
            s.put(b"k".to_vec(), vec![n]);
        }
        s.delete(b"gone".to_vec());
        let pending: Vec<_> = s.pending_writes().collect();
        assert_eq!(
            pending,
            vec![(&b"gone"[..], None), (&b"k"[..], Some(&[4u8][..]))]
        );
        assert_eq!(s.dirty_bytes(), 4 + 1 + 1 + 2 * ENTRY_OVERHEAD);
        s.commit(Some(2)).unwrap();
        assert_eq!(s.dirty_bytes(), 0);
        assert!(!s.has_pending_writes());
    }
}
