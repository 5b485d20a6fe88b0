//! Changelog records a restore has read but not written yet. An
//! aggregation's changelog repeats its keys (a count is written once per
//! update until compaction catches up), and RocksDB's memtable insert is
//! most of a restore's cost: holding the last write of each key across
//! batches writes each key once per hold instead of once per update.
//!
//! What is held is written together with the offset after the last record
//! merged into it, so a store never records an offset past what it wrote:
//! dropping a hold (a task closed mid-restore) loses nothing, the next
//! restore starts from the store's offset again. It must never grow past
//! the budget its owner gives it, and a store stops holding once a full
//! hold shows that its changelog does not repeat keys ([`Held::paid`]).

use super::Write;
use super::buffer::ENTRY_OVERHEAD;

/// The last write of each key read since the hold began, in key order,
/// and the changelog offset after them.
#[derive(Default)]
pub(super) struct Held {
    writes: Vec<Write>,
    bytes: usize,
    next_offset: Option<i64>,
    /// Records merged since the hold began (repeats included).
    read: usize,
}

fn size((key, value): &Write) -> usize {
    key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD
}

impl Held {
    /// Bytes held, each write counted with its bookkeeping.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether holding paid: at least a third of the records merged were
    /// repeats of a key, so that many fewer writes. A changelog of unique
    /// keys gains nothing from a hold and loses what the restore overlaps
    /// (a hold's writes come all at once, not a batch's worth per read).
    pub(super) fn paid(&self) -> bool {
        self.writes.len() * 3 < self.read * 2
    }

    /// Adds `batch` (the last write of each of its keys, in key order, out
    /// of `read` records) read up to `next_offset`: its writes replace
    /// held ones of the same key, as applying it after them would.
    pub(super) fn merge(&mut self, batch: Vec<Write>, read: usize, next_offset: i64) {
        self.next_offset = Some(next_offset);
        self.read += read;
        if batch.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.writes);
        let mut merged = Vec::with_capacity(held.len() + batch.len());
        let mut held = held.into_iter().peekable();
        for write in batch {
            while let Some(older) = held.next_if(|h| h.0 < write.0) {
                merged.push(older);
            }
            // The same key held: the batch's write is the later one.
            held.next_if(|h| h.0 == write.0);
            merged.push(write);
        }
        merged.extend(held);
        self.bytes = merged.iter().map(size).sum();
        self.writes = merged;
    }

    /// Everything held and the offset after it, leaving the hold empty;
    /// `None` if nothing was merged since the last take.
    pub(super) fn take(&mut self) -> Option<(Vec<Write>, i64)> {
        let next_offset = self.next_offset.take()?;
        self.bytes = 0;
        self.read = 0;
        Some((std::mem::take(&mut self.writes), next_offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(k: &str, v: Option<&str>) -> Write {
        (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec()))
    }

    #[test]
    fn a_later_batch_replaces_held_writes_of_its_keys_and_keeps_key_order() {
        let mut held = Held::default();
        assert_eq!(held.take(), None);
        held.merge(vec![w("b", Some("1")), w("d", Some("1"))], 2, 10);
        assert!(!held.paid(), "2 keys of 2 records");
        held.merge(
            vec![w("a", Some("2")), w("b", None), w("e", Some("2"))],
            5,
            20,
        );
        held.merge(Vec::new(), 0, 25);
        assert!(held.paid(), "4 keys of 7 records");
        // Keys and values of a=2, b (deleted), d=1, e=2.
        assert_eq!(held.bytes(), 7 + 4 * ENTRY_OVERHEAD);
        assert_eq!(
            held.take(),
            Some((
                vec![
                    w("a", Some("2")),
                    w("b", None),
                    w("d", Some("1")),
                    w("e", Some("2"))
                ],
                25
            ))
        );
        assert_eq!(held.take(), None);
        assert_eq!(held.bytes(), 0);
    }
}
