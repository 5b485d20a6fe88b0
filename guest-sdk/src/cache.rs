//! The record cache (Kafka Streams' `statestore.cache.max.bytes`): an
//! aggregation's updates kept per key in the guest until the task's next
//! commit, then written to its store and forwarded once, latest per key, so
//! a hot key costs one output and one store write per commit instead of one
//! per update (the host already sends one changelog record per key per
//! commit).
//!
//! Must never hold an update across a commit: the host calls `flush` before
//! each one and every cache empties there. Past its share of the task's
//! budget (`context.record-cache-bytes`, divided among the task's caches) a
//! cache writes out its least recently updated keys at the end of the call.
//! With no budget (0; contract 0.2.0, which has no `flush`; Weir under
//! `processing.exception.handler = continue`) every update is written at
//! once and forwarded at the end of its call.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};

use crate::codec::Codec;
use crate::context::{Header, Pending, Record};
use crate::error::Error;
use crate::store::{KvStore, StoreError};
// A fixed seed, as the store's own cache.
use crate::store_cache::Keys;

/// Bytes an entry costs beyond its key and value (map slots, the queue).
const ENTRY_OVERHEAD: usize = 64;

thread_local! {
    /// The caches of this instance, for [`write_out_all`].
    static CACHES: RefCell<Vec<Weak<dyn WriteOut>>> = const { RefCell::new(Vec::new()) };
    /// The task's budget as the host gave it for the current call (asked
    /// once per call, on first use).
    static BUDGET: Cell<Option<usize>> = const { Cell::new(None) };
}

fn budget() -> usize {
    BUDGET.with(|b| {
        b.get().unwrap_or_else(|| {
            let bytes = crate::contract::record_cache_bytes();
            b.set(Some(bytes));
            bytes
        })
    })
}

/// What every cache does at the end of a call: hand over what it no
/// longer keeps.
trait WriteOut {
    /// Writes and forwards (into `outputs`) the oldest entries until at
    /// most `keep` bytes are held, and every update made without a budget.
    fn write_out(&self, keep: usize, outputs: &mut Vec<Pending>) -> Result<(), Error>;
    /// Drops the outputs of the current call's updates made without a
    /// budget.
    fn discard_call(&self);
}

/// The caches of this instance (forgetting dropped ones).
fn live_caches() -> Vec<Rc<dyn WriteOut>> {
    CACHES.with(|c| {
        let mut c = c.borrow_mut();
        c.retain(|w| w.strong_count() > 0);
        c.iter().filter_map(Weak::upgrade).collect()
    })
}

/// At the end of every call: each cache down to its share of the budget
/// (`commit`: to nothing, before the host commits). The budget is asked
/// again on the next call, as the task's share changes with the number of
/// tasks on its thread.
pub(crate) fn write_out_all(commit: bool, outputs: &mut Vec<Pending>) -> Result<(), Error> {
    let caches = live_caches();
    let keep = match (commit, caches.len()) {
        (true, _) | (_, 0) => 0,
        (false, n) => budget() / n,
    };
    BUDGET.with(|b| b.set(None));
    for cache in caches {
        cache.write_out(keep, outputs)?;
    }
    Ok(())
}

/// Forgets the outputs the current call's updates made without a budget:
/// the call failed, its outputs are dropped and its store writes undone.
/// (A cache with a budget holds updates across calls, so a host that runs
/// a failed batch again gives it none: Weir's does under
/// `processing.exception.handler = continue`.)
pub(crate) fn discard_call() {
    BUDGET.with(|b| b.set(None));
    for cache in live_caches() {
        cache.discard_call();
    }
}

/// A key's latest update, not yet written or forwarded.
struct Entry {
    /// The aggregate, encoded as the store keeps it.
    value: Vec<u8>,
    /// The timestamp and headers of the record that made it, for its output.
    timestamp: i64,
    headers: Vec<Header>,
    /// When it was last updated (see `Held::order`).
    stamp: u64,
}

impl Entry {
    fn bytes(&self, key: &[u8]) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.len())
            .sum();
        key.len() + self.value.len() + headers + ENTRY_OVERHEAD
    }
}

#[derive(Default)]
struct Held {
    entries: HashMap<Vec<u8>, Entry, Keys>,
    /// Keys by the stamp of an update, oldest first. An update pushes its
    /// key again; an element whose stamp is no longer its entry's is stale
    /// and skipped (compacted when they outnumber the entries).
    order: VecDeque<(u64, Vec<u8>)>,
    next: u64,
    bytes: usize,
    /// Outputs of updates made without a budget, for the end of the call.
    through: Vec<Pending>,
}

impl Held {
    fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.bytes -= entry.bytes(key);
        Some(entry)
    }

    /// The least recently updated entry.
    fn pop_oldest(&mut self) -> Option<(Vec<u8>, Entry)> {
        while let Some((stamp, key)) = self.order.pop_front() {
            if self.entries.get(&key).is_some_and(|e| e.stamp == stamp) {
                let entry = self.remove(&key)?;
                return Some((key, entry));
            }
        }
        None
    }

    fn compact(&mut self) {
        if self.order.len() <= 2 * self.entries.len() + 64 {
            return;
        }
        let mut live: Vec<(u64, Vec<u8>)> = self
            .entries
            .iter()
            .map(|(k, e)| (e.stamp, k.clone()))
            .collect();
        live.sort_unstable_by_key(|(stamp, _)| *stamp);
        self.order = live.into();
    }
}

/// Encodes an aggregate as its output's value.
pub(crate) type Emit<A> = Box<dyn Fn(&A) -> Vec<u8>>;

/// A record cache in front of an aggregation's store, forwarding its
/// updates to one output.
pub(crate) struct RecordCache<K, A> {
    store: Rc<KvStore<K, A>>,
    /// The output's index (sinks, then repartitions).
    sink: u32,
    /// The output value for an aggregate.
    emit: Emit<A>,
    held: RefCell<Held>,
}

impl<K: Codec + 'static, A: Codec + 'static> RecordCache<K, A> {
    /// A cache over `store`, forwarding to output `sink` as `emit` encodes;
    /// registered for the end of every call.
    pub(crate) fn new(store: Rc<KvStore<K, A>>, sink: u32, emit: Emit<A>) -> Rc<Self> {
        let cache = Rc::new(RecordCache {
            store,
            sink,
            emit,
            held: RefCell::default(),
        });
        let weak: Weak<dyn WriteOut> = Rc::downgrade(&(cache.clone() as Rc<dyn WriteOut>));
        CACHES.with(|c| c.borrow_mut().push(weak));
        cache
    }

    /// The latest aggregate of `key`: the cache's, else the store's.
    pub(crate) fn get(&self, key: &K) -> Result<Option<A>, StoreError> {
        let encoded = key.encode();
        if let Some(entry) = self.held.borrow().entries.get(&encoded) {
            return self.store.decode(&entry.value).map(Some);
        }
        self.store.get_encoded(encoded)
    }

    /// `key`'s new aggregate, made by `record`: held for the next write-out
    /// (or, without a budget, written now and forwarded at the call's end).
    pub(crate) fn put(&self, key: &K, value: &A, record: &Record) -> Result<(), StoreError> {
        let encoded = key.encode();
        let mut held = self.held.borrow_mut();
        if budget() == 0 {
            held.remove(&encoded);
            self.store
                .write_encoded(encoded.clone(), Some(value.encode()))?;
            let output = self.output(encoded, value, record.timestamp, record.headers.clone());
            held.through.push(output);
            return Ok(());
        }
        let stamp = held.next;
        held.next += 1;
        let entry = Entry {
            value: value.encode(),
            timestamp: record.timestamp,
            headers: record.headers.clone(),
            stamp,
        };
        held.bytes += entry.bytes(&encoded);
        if let Some(old) = held.entries.insert(encoded.clone(), entry) {
            held.bytes -= old.bytes(&encoded);
        }
        held.order.push_back((stamp, encoded));
        held.compact();
        Ok(())
    }

    /// The output for `key`'s aggregate `value`, made by a record at
    /// `timestamp` with `headers`.
    fn output(&self, key: Vec<u8>, value: &A, timestamp: i64, headers: Vec<Header>) -> Pending {
        Pending {
            sink: self.sink,
            key: Some(key),
            value: Some((self.emit)(value)),
            headers,
            timestamp: Some(timestamp),
        }
    }
}

impl<K: Codec + 'static, A: Codec + 'static> WriteOut for RecordCache<K, A> {
    fn write_out(&self, keep: usize, outputs: &mut Vec<Pending>) -> Result<(), Error> {
        let mut held = self.held.borrow_mut();
        outputs.append(&mut held.through);
        while held.bytes > keep {
            let Some((key, entry)) = held.pop_oldest() else {
                break;
            };
            let value: A = self.store.decode(&entry.value)?;
            self.store.write_encoded(key.clone(), Some(entry.value))?;
            outputs.push(self.output(key, &value, entry.timestamp, entry.headers));
        }
        if held.entries.is_empty() {
            held.order.clear();
        }
        Ok(())
    }

    fn discard_call(&self) {
        self.held.borrow_mut().through.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_budget(bytes: usize) {
        BUDGET.with(|b| b.set(Some(bytes)));
    }

    type Counts = Rc<KvStore<String, u64>>;

    fn cache() -> (Counts, Rc<RecordCache<String, u64>>) {
        let store = Rc::new(KvStore::in_memory("counts"));
        let emit = Box::new(|n: &u64| n.to_string().into_bytes());
        (store.clone(), RecordCache::new(store, 7, emit))
    }

    fn record(timestamp: i64) -> Record {
        Record {
            source: "words".into(),
            key: None,
            value: None,
            headers: vec![Header {
                key: "at".into(),
                value: timestamp.to_string().into_bytes(),
            }],
            timestamp,
            topic: "words".into(),
            partition: 0,
            offset: timestamp,
        }
    }

    fn put(cache: &RecordCache<String, u64>, key: &str, value: u64, at: i64) {
        cache.put(&key.to_string(), &value, &record(at)).unwrap();
    }

    /// (key, value, timestamp) of each output.
    fn sent(outputs: &[Pending]) -> Vec<(String, String, i64)> {
        outputs
            .iter()
            .map(|o| {
                assert_eq!(o.sink, 7);
                let text = |b: &Option<Vec<u8>>| String::from_utf8(b.clone().unwrap()).unwrap();
                (text(&o.key), text(&o.value), o.timestamp.unwrap())
            })
            .collect()
    }

    #[test]
    fn updates_of_a_key_are_held_until_the_commit_and_sent_once() {
        let (store, cache) = cache();
        set_budget(1 << 20);
        put(&cache, "a", 1, 10);
        put(&cache, "a", 2, 11);
        put(&cache, "b", 1, 12);
        assert_eq!(cache.get(&"a".to_string()).unwrap(), Some(2));
        assert_eq!(
            store.get(&"a".to_string()).unwrap(),
            None,
            "not written yet"
        );
        let mut outputs = Vec::new();
        set_budget(1 << 20);
        write_out_all(false, &mut outputs).unwrap();
        assert!(
            outputs.is_empty(),
            "within budget: nothing leaves before the commit"
        );
        write_out_all(true, &mut outputs).unwrap();
        assert_eq!(
            sent(&outputs),
            vec![("a".into(), "2".into(), 11), ("b".into(), "1".into(), 12)]
        );
        assert_eq!(
            outputs[0].headers[0].value, b"11",
            "the latest record's headers"
        );
        assert_eq!(store.get(&"a".to_string()).unwrap(), Some(2));
        assert_eq!(store.get(&"b".to_string()).unwrap(), Some(1));
        let mut again = Vec::new();
        write_out_all(true, &mut again).unwrap();
        assert!(again.is_empty(), "a commit leaves nothing held");
    }

    #[test]
    fn past_its_budget_a_cache_writes_out_the_least_recently_updated_keys() {
        let (store, cache) = cache();
        set_budget(1 << 20);
        put(&cache, "a", 1, 1);
        put(&cache, "b", 1, 2);
        put(&cache, "c", 1, 3);
        put(&cache, "a", 2, 4);
        // Room for two entries: "b" is the oldest update now.
        let entry = ENTRY_OVERHEAD + 1 + 8 + "at".len() + 1;
        set_budget(2 * entry);
        let mut outputs = Vec::new();
        write_out_all(false, &mut outputs).unwrap();
        assert_eq!(sent(&outputs), vec![("b".into(), "1".into(), 2)]);
        assert_eq!(store.get(&"b".to_string()).unwrap(), Some(1));
        assert_eq!(store.get(&"a".to_string()).unwrap(), None);
        write_out_all(true, &mut outputs).unwrap();
        assert_eq!(
            sent(&outputs[1..]),
            vec![("c".into(), "1".into(), 3), ("a".into(), "2".into(), 4)]
        );
    }

    #[test]
    fn without_a_budget_every_update_is_written_and_sent_in_order() {
        let (store, cache) = cache();
        set_budget(0);
        put(&cache, "a", 1, 1);
        put(&cache, "a", 2, 2);
        assert_eq!(store.get(&"a".to_string()).unwrap(), Some(2));
        let mut outputs = Vec::new();
        set_budget(0);
        write_out_all(false, &mut outputs).unwrap();
        assert_eq!(
            sent(&outputs),
            vec![("a".into(), "1".into(), 1), ("a".into(), "2".into(), 2)]
        );
    }

    #[test]
    fn stale_order_entries_are_compacted() {
        let (_store, cache) = cache();
        set_budget(1 << 20);
        for n in 0..1000 {
            put(&cache, "hot", n, n as i64);
        }
        let held = cache.held.borrow();
        assert_eq!(held.entries.len(), 1);
        assert!(
            held.order.len() <= 2 * held.entries.len() + 65,
            "{}",
            held.order.len()
        );
    }
}
