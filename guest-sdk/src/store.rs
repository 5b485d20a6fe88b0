//! Typed access to the state stores a processor declared in `describe`.
//!
//! A [`KvStore`] is a handle to a store the host owns (RocksDB or in-memory,
//! with a changelog). The guest never sees files: every call goes through the
//! `weir:streams/state` interface. Writes are visible to the same task at once
//! and become durable at the host's next commit.
//!
//! A store keeps the keys it read and wrote (see `store_cache`): a read of
//! a known key does not cross to the host, and the writes go to the host in
//! one `write-all` when the call ends (or before a range scan, which the
//! host answers). What it knows is kept across calls within a budget, and
//! forgotten when a call fails.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::rc::{Rc, Weak};

use crate::bindings::weir::streams::state as wit;
use crate::codec::{Codec, CodecError};
use crate::store_cache::StoreCache;

/// How many entries an iterator asks the host for at a time.
const PAGE: u32 = 256;

/// A store operation that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The topology did not declare a store of this name.
    UnknownStore(String),
    /// The host could not read or write the store (the task will fail).
    Backend {
        /// The store's name.
        store: String,
        /// What the host reported.
        reason: String,
    },
    /// A stored key or value did not decode as the store's type.
    Codec {
        /// The store's name.
        store: String,
        /// Why it did not decode.
        error: CodecError,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::UnknownStore(name) => {
                write!(f, "store `{name}` is not declared in describe()")
            }
            StoreError::Backend { store, reason } => write!(f, "store `{store}`: {reason}"),
            StoreError::Codec { store, error } => write!(f, "store `{store}`: {error}"),
        }
    }
}

impl std::error::Error for StoreError {}

pub(crate) fn from_wit(store: &str, e: wit::StoreError) -> StoreError {
    match e {
        wit::StoreError::UnknownStore(name) => StoreError::UnknownStore(name),
        wit::StoreError::Backend(reason) => StoreError::Backend {
            store: store.to_string(),
            reason,
        },
    }
}

/// Buffered write bytes past which a store writes them out at once rather
/// than at the end of the call: a call that writes a lot (a bulk load)
/// neither grows the guest's memory by all of it nor meets the host's
/// per-call cap only at the end.
const MAX_BUFFERED_BYTES: usize = 1 << 20;

/// A host store and what the guest keeps of it.
struct HostStore {
    name: String,
    handle: wit::KvStore,
    cache: RefCell<StoreCache>,
}

impl HostStore {
    /// Buffers a write of `key` (`None`: a delete); past
    /// [`MAX_BUFFERED_BYTES`] the buffered writes go out now.
    fn write(&self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), StoreError> {
        let pending = self.cache.borrow_mut().write(key, value);
        if pending > MAX_BUFFERED_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the buffered writes to the host.
    fn flush(&self) -> Result<(), StoreError> {
        let writes = self.cache.borrow_mut().take_writes();
        if writes.is_empty() {
            return Ok(());
        }
        crate::contract::write_all(&self.handle, writes).map_err(|e| from_wit(&self.name, e))
    }
}

thread_local! {
    /// The host stores this instance opened, for [`flush_all`].
    static OPEN: RefCell<Vec<Weak<HostStore>>> = const { RefCell::new(Vec::new()) };
    /// Set for `close`: past the task's last commit, writes are refused.
    static CLOSING: Cell<bool> = const { Cell::new(false) };
}

/// The host stores this instance has open (forgetting dropped ones).
fn open_stores() -> Vec<Rc<HostStore>> {
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        open.retain(|s| s.strong_count() > 0);
        open.iter().filter_map(Weak::upgrade).collect()
    })
}

/// Writes every open store's buffered writes (at the end of each call),
/// keeping what they read and wrote within their budget.
pub(crate) fn flush_all() -> Result<(), StoreError> {
    for store in open_stores() {
        store.flush()?;
        store.cache.borrow_mut().trim();
    }
    Ok(())
}

/// Forgets what the current call read and wrote, writing nothing: the call
/// failed, the host undoes what it wrote and may run its batch again.
pub(crate) fn discard_all() {
    for store in open_stores() {
        store.cache.borrow_mut().clear();
    }
}

pub(crate) fn set_closing(closing: bool) {
    CLOSING.with(|c| c.set(closing));
}

/// Where a store's bytes live: the host, or (in this crate's own unit tests)
/// a map standing in for it.
enum Raw {
    Host(Rc<HostStore>),
    #[cfg(test)]
    Memory(std::rc::Rc<std::cell::RefCell<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>>),
}

/// A key-value store with typed keys and values.
///
/// Keys sort by their encoded bytes, which for the SDK's codecs is the natural
/// order of strings, byte strings and integers.
///
/// The handle keeps what it read and wrote (up to 4 MiB of keys and values
/// between calls): reading a known key again does not call the host, and
/// a call's writes reach the host together when the call ends.
///
/// ```no_run
/// # use weir_sdk::{KvStore, Error};
/// # fn demo() -> Result<(), Error> {
/// let counts: KvStore<String, u64> = KvStore::open("counts")?;
/// let n = counts.get(&"apple".to_string())?.unwrap_or(0);
/// counts.put(&"apple".to_string(), &(n + 1))?;
/// for entry in counts.range("a".to_string().."b".to_string())? {
///     let (word, count) = entry?;
///     # let _ = (word, count);
/// }
/// # Ok(()) }
/// ```
pub struct KvStore<K, V> {
    name: String,
    raw: Raw,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K: Codec, V: Codec> KvStore<K, V> {
    /// Opens the store `name`, which `describe()` must declare.
    pub fn open(name: &str) -> Result<Self, StoreError> {
        // Handles of one store share what they keep: one handle's write is
        // what another reads, in this call and the next.
        let store = match open_stores().into_iter().find(|s| s.name == name) {
            Some(store) => store,
            None => {
                let handle = wit::KvStore::open(name).map_err(|e| from_wit(name, e))?;
                let store = Rc::new(HostStore {
                    name: name.to_string(),
                    handle,
                    cache: RefCell::new(StoreCache::default()),
                });
                OPEN.with(|open| open.borrow_mut().push(Rc::downgrade(&store)));
                store
            }
        };
        Ok(KvStore {
            name: name.to_string(),
            raw: Raw::Host(store),
            _types: PhantomData,
        })
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value for `key`, if any.
    pub fn get(&self, key: &K) -> Result<Option<V>, StoreError> {
        self.get_encoded(key.encode())
    }

    /// The value for `key`, already encoded (a record cache that missed).
    pub(crate) fn get_encoded(&self, key: Vec<u8>) -> Result<Option<V>, StoreError> {
        match &self.raw {
            Raw::Host(s) => {
                if let Some(known) = s.cache.borrow().get(&key) {
                    return known.map(|b| self.decode::<V>(b)).transpose();
                }
                let value = s.handle.get(&key).map_err(|e| from_wit(&self.name, e))?;
                let decoded = value.as_deref().map(|b| self.decode::<V>(b)).transpose();
                s.cache.borrow_mut().remember(key, value);
                decoded
            }
            #[cfg(test)]
            Raw::Memory(m) => {
                let map = m.borrow();
                map.get(&key).map(|b| self.decode::<V>(b)).transpose()
            }
        }
    }

    /// Sets `key` to `value`.
    pub fn put(&self, key: &K, value: &V) -> Result<(), StoreError> {
        self.write_encoded(key.encode(), Some(value.encode()))
    }

    /// Removes `key` (a tombstone in the changelog).
    pub fn delete(&self, key: &K) -> Result<(), StoreError> {
        self.write_encoded(key.encode(), None)
    }

    /// Sets (`Some`) or removes (`None`) `key`, both already encoded (also
    /// what a record cache writes out).
    pub(crate) fn write_encoded(
        &self,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        self.refuse_in_close()?;
        match &self.raw {
            Raw::Host(s) => s.write(key, value),
            #[cfg(test)]
            Raw::Memory(m) => {
                let mut map = m.borrow_mut();
                match value {
                    Some(value) => map.insert(key, value),
                    None => map.remove(&key),
                };
                Ok(())
            }
        }
    }

    /// Entries whose keys fall in `range`, in key order:
    /// `store.range(a..b)`, `store.range(a..=b)`, `store.range(..)`.
    pub fn range<R: RangeBounds<K>>(&self, range: R) -> Result<Iter<K, V>, StoreError> {
        let start = wit_bound(range.start_bound());
        let end = wit_bound(range.end_bound());
        let cursor = match &self.raw {
            Raw::Host(s) => {
                s.flush()?;
                let it = s.handle.range(&start, &end);
                Cursor::Host(it.map_err(|e| from_wit(&self.name, e))?, s.clone())
            }
            #[cfg(test)]
            Raw::Memory(m) => Cursor::Memory(
                m.borrow()
                    .iter()
                    .filter(|(k, _)| in_bounds(k, &start, &end))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        };
        Ok(self.iter(cursor))
    }

    /// Every entry, in key order.
    pub fn all(&self) -> Result<Iter<K, V>, StoreError> {
        self.range::<(Bound<K>, Bound<K>)>((Bound::Unbounded, Bound::Unbounded))
    }

    /// Entries whose encoded key starts with the encoding of `prefix`
    /// (for string keys: keys that start with `prefix`).
    pub fn prefix_scan<P: Codec>(&self, prefix: &P) -> Result<Iter<K, V>, StoreError> {
        let prefix = prefix.encode();
        let cursor = match &self.raw {
            Raw::Host(s) => {
                s.flush()?;
                let it = s.handle.prefix_scan(&prefix);
                Cursor::Host(it.map_err(|e| from_wit(&self.name, e))?, s.clone())
            }
            #[cfg(test)]
            Raw::Memory(m) => Cursor::Memory(
                m.borrow()
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        };
        Ok(self.iter(cursor))
    }

    fn iter(&self, cursor: Cursor) -> Iter<K, V> {
        Iter {
            store: self.name.clone(),
            cursor,
            buffered: VecDeque::new(),
            done: false,
            _types: PhantomData,
        }
    }

    /// `close` runs past the task's last commit: a write there could not be
    /// kept, so it is refused when made rather than dropped unseen.
    fn refuse_in_close(&self) -> Result<(), StoreError> {
        if CLOSING.with(Cell::get) {
            return Err(StoreError::Backend {
                store: self.name.clone(),
                reason: "close() cannot write: the task's last commit is done".into(),
            });
        }
        Ok(())
    }

    pub(crate) fn decode<T: Codec>(&self, bytes: &[u8]) -> Result<T, StoreError> {
        T::decode(bytes).map_err(|error| StoreError::Codec {
            store: self.name.clone(),
            error,
        })
    }

    #[cfg(test)]
    pub(crate) fn in_memory(name: &str) -> Self {
        KvStore {
            name: name.to_string(),
            raw: Raw::Memory(Default::default()),
            _types: PhantomData,
        }
    }
}

pub(crate) fn wit_bound<K: Codec>(bound: Bound<&K>) -> wit::Bound {
    match bound {
        Bound::Included(k) => wit::Bound::Included(k.encode()),
        Bound::Excluded(k) => wit::Bound::Excluded(k.encode()),
        Bound::Unbounded => wit::Bound::Unbounded,
    }
}

#[cfg(test)]
fn in_bounds(key: &[u8], start: &wit::Bound, end: &wit::Bound) -> bool {
    let after_start = match start {
        wit::Bound::Unbounded => true,
        wit::Bound::Included(s) => key >= s.as_slice(),
        wit::Bound::Excluded(s) => key > s.as_slice(),
    };
    let before_end = match end {
        wit::Bound::Unbounded => true,
        wit::Bound::Included(e) => key <= e.as_slice(),
        wit::Bound::Excluded(e) => key < e.as_slice(),
    };
    after_start && before_end
}

enum Cursor {
    /// The host's iterator, and the store whose writes it must see.
    Host(wit::KvIterator, Rc<HostStore>),
    #[cfg(test)]
    Memory(VecDeque<(Vec<u8>, Vec<u8>)>),
}

/// Entries of a range or prefix scan, fetched from the host a page at a time.
pub struct Iter<K, V> {
    store: String,
    cursor: Cursor,
    buffered: VecDeque<(Vec<u8>, Vec<u8>)>,
    done: bool,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K: Codec, V: Codec> Iter<K, V> {
    fn fill(&mut self) -> Result<(), StoreError> {
        let page: Vec<(Vec<u8>, Vec<u8>)> = match &mut self.cursor {
            Cursor::Host(it, store) => {
                // The iterator sees the store as it is at each page.
                store.flush()?;
                it.next(PAGE)
                    .map_err(|e| from_wit(&self.store, e))?
                    .into_iter()
                    .map(|e| (e.key, e.value))
                    .collect()
            }
            #[cfg(test)]
            Cursor::Memory(rest) => {
                let n = rest.len().min(PAGE as usize);
                rest.drain(..n).collect()
            }
        };
        self.done = page.is_empty();
        self.buffered.extend(page);
        Ok(())
    }
}

impl<K: Codec, V: Codec> Iterator for Iter<K, V> {
    type Item = Result<(K, V), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffered.is_empty()
            && !self.done
            && let Err(e) = self.fill()
        {
            self.done = true;
            return Some(Err(e));
        }
        let (k, v) = self.buffered.pop_front()?;
        let decoded = K::decode(&k)
            .and_then(|k| V::decode(&v).map(|v| (k, v)))
            .map_err(|error| StoreError::Codec {
                store: self.store.clone(),
                error,
            });
        Some(decoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Json;

    #[test]
    fn put_get_delete() {
        let store: KvStore<String, u64> = KvStore::in_memory("counts");
        let k = "apple".to_string();
        assert_eq!(store.get(&k).unwrap(), None);
        store.put(&k, &3).unwrap();
        assert_eq!(store.get(&k).unwrap(), Some(3));
        store.delete(&k).unwrap();
        assert_eq!(store.get(&k).unwrap(), None);
    }

    #[test]
    fn ranges_honour_bounds_and_numeric_order() {
        let store: KvStore<i64, String> = KvStore::in_memory("by-number");
        for n in [-300i64, -2, 0, 5, 9, 10, 700] {
            store.put(&n, &format!("v{n}")).unwrap();
        }
        let keys = |it: Iter<i64, String>| it.map(|e| e.unwrap().0).collect::<Vec<_>>();
        assert_eq!(keys(store.range(-2..9).unwrap()), vec![-2, 0, 5]);
        assert_eq!(keys(store.range(-2..=9).unwrap()), vec![-2, 0, 5, 9]);
        assert_eq!(keys(store.range(..0).unwrap()), vec![-300, -2]);
        assert_eq!(keys(store.range(10..).unwrap()), vec![10, 700]);
        assert_eq!(keys(store.range(6..6).unwrap()), Vec::<i64>::new());
        assert_eq!(keys(store.all().unwrap()), vec![-300, -2, 0, 5, 9, 10, 700]);
    }

    #[test]
    fn iteration_pages_through_large_ranges() {
        let store: KvStore<u32, u32> = KvStore::in_memory("many");
        for n in 0..(PAGE * 3 + 7) {
            store.put(&n, &(n * 2)).unwrap();
        }
        let all: Vec<(u32, u32)> = store.all().unwrap().map(Result::unwrap).collect();
        assert_eq!(all.len(), (PAGE * 3 + 7) as usize);
        assert!(all.iter().all(|(k, v)| *v == k * 2));
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn prefix_scan_matches_string_prefixes() {
        let store: KvStore<String, Json<Vec<u8>>> = KvStore::in_memory("profiles");
        for k in ["user:1", "user:2", "usex", "team:1"] {
            store
                .put(&k.to_string(), &Json(k.as_bytes().to_vec()))
                .unwrap();
        }
        let keys: Vec<String> = store
            .prefix_scan(&"user:".to_string())
            .unwrap()
            .map(|e| e.unwrap().0)
            .collect();
        assert_eq!(keys, vec!["user:1", "user:2"]);
    }

    #[test]
    fn undecodable_values_name_the_store() {
        let raw: KvStore<String, Vec<u8>> = KvStore::in_memory("mixed");
        raw.put(&"k".to_string(), &vec![1, 2, 3]).unwrap();
        let typed: KvStore<String, u64> = KvStore {
            name: raw.name.clone(),
            raw: match &raw.raw {
                Raw::Memory(m) => Raw::Memory(m.clone()),
                Raw::Host(_) => unreachable!(),
            },
            _types: PhantomData,
        };
        let err = typed.get(&"k".to_string()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("store `mixed`: cannot decode u64"),
            "{err}"
        );
    }
}
