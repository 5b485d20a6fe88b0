//! Windowed state: [`TimeWindows`] says which windows a timestamp falls in
//! (tumbling or hopping, with a grace period), and a [`WindowStore`] keeps a
//! value per key and window in the host's segmented window store, which
//! drops closed-and-expired windows by itself.
//!
//! ```no_run
//! # use weir_sdk::{Error, TimeWindows, WindowStore};
//! # fn demo(word: String, timestamp: i64) -> Result<(), Error> {
//! let windows = TimeWindows::tumbling_ms(60_000).grace_ms(10_000);
//! let counts: WindowStore<String, u64> = WindowStore::open("counts")?;
//! for start in windows.windows_for(timestamp) {
//!     let n = counts.get(&word, start)?.unwrap_or(0);
//!     // false: the window closed (a late record), nothing written.
//!     let _written = counts.put(&word, start, &(n + 1))?;
//! }
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::ops::RangeBounds;

use crate::bindings::weir::streams::state as wit;
use crate::codec::Codec;
use crate::store::{StoreError, from_wit, wit_bound};

/// Window sizes and grace, Kafka Streams' `TimeWindows`: windows of
/// `size` milliseconds starting every `advance` (tumbling when they are
/// equal), accepting records until stream time passes their end by `grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindows {
    /// Window length in milliseconds: a window covers [start, start + size).
    pub size_ms: u64,
    /// Milliseconds between window starts (`size_ms`: tumbling).
    pub advance_ms: u64,
    /// How long past its end a window still accepts records.
    pub grace_ms: u64,
}

impl TimeWindows {
    /// Back-to-back windows of `size_ms`, no grace.
    pub fn tumbling_ms(size_ms: u64) -> Self {
        let size_ms = size_ms.max(1);
        TimeWindows {
            size_ms,
            advance_ms: size_ms,
            grace_ms: 0,
        }
    }

    /// Windows of `size_ms` starting every `advance_ms` (at most the size),
    /// so each record falls in size / advance of them.
    pub fn hopping_ms(size_ms: u64, advance_ms: u64) -> Self {
        let size_ms = size_ms.max(1);
        TimeWindows {
            size_ms,
            advance_ms: advance_ms.clamp(1, size_ms),
            grace_ms: 0,
        }
    }

    /// Accept records this long after a window's end.
    pub fn grace_ms(mut self, grace_ms: u64) -> Self {
        self.grace_ms = grace_ms;
        self
    }

    /// Starts of the windows `timestamp` falls in, oldest first.
    pub fn windows_for(&self, timestamp: i64) -> Vec<i64> {
        let (size, advance) = (self.size_ms as i64, self.advance_ms as i64);
        let last = timestamp - timestamp.rem_euclid(advance);
        let mut starts = Vec::new();
        let mut start = last;
        while start > timestamp - size {
            if start >= 0 {
                starts.push(start);
            }
            start -= advance;
        }
        starts.reverse();
        starts
    }

    /// When the window starting at `start` closes: stream time at or past
    /// this drops its records.
    pub fn close_time(&self, start: i64) -> i64 {
        start + self.size_ms as i64 + self.grace_ms as i64
    }
}

/// A window store with typed keys and values.
pub struct WindowStore<K, V> {
    name: String,
    raw: wit::WindowStore,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K: Codec, V: Codec> WindowStore<K, V> {
    /// Opens the window store `name` declared with
    /// [`StoreSpec::window`](crate::StoreSpec::window).
    pub fn open(name: &str) -> Result<Self, StoreError> {
        let raw = wit::WindowStore::open(name).map_err(|e| from_wit(name, e))?;
        Ok(WindowStore {
            name: name.to_string(),
            raw,
            _types: PhantomData,
        })
    }

    /// Writes `key`'s window at `start`. Returns false, writing nothing,
    /// when the window has closed (a late record: counted as dropped).
    pub fn put(&self, key: &K, start: i64, value: &V) -> Result<bool, StoreError> {
        self.raw
            .put(&key.encode(), start, &value.encode())
            .map_err(|e| from_wit(&self.name, e))
    }

    /// The value of `key`'s window starting at `start`.
    pub fn get(&self, key: &K, start: i64) -> Result<Option<V>, StoreError> {
        let bytes = self
            .raw
            .get(&key.encode(), start)
            .map_err(|e| from_wit(&self.name, e))?;
        bytes.map(|b| decode(&self.name, &b)).transpose()
    }

    /// Deletes `key`'s window starting at `start`.
    pub fn delete(&self, key: &K, start: i64) -> Result<(), StoreError> {
        self.raw
            .delete(&key.encode(), start)
            .map_err(|e| from_wit(&self.name, e))
    }

    /// `key`'s windows starting in `from..=to`, in time order.
    pub fn fetch(&self, key: &K, from: i64, to: i64) -> Result<WindowIter<K, V>, StoreError> {
        let it = self
            .raw
            .fetch(&key.encode(), from, to)
            .map_err(|e| from_wit(&self.name, e))?;
        Ok(self.iter(it))
    }

    /// Windows of keys in `keys` starting in `from..=to`, segment by
    /// segment, then by key and start.
    pub fn fetch_range<R: RangeBounds<K>>(
        &self,
        keys: R,
        from: i64,
        to: i64,
    ) -> Result<WindowIter<K, V>, StoreError> {
        let it = self
            .raw
            .fetch_range(
                &wit_bound(keys.start_bound()),
                &wit_bound(keys.end_bound()),
                from,
                to,
            )
            .map_err(|e| from_wit(&self.name, e))?;
        Ok(self.iter(it))
    }

    /// Every key's windows starting in `from..=to`.
    pub fn fetch_all(&self, from: i64, to: i64) -> Result<WindowIter<K, V>, StoreError> {
        let it = self
            .raw
            .fetch_all(from, to)
            .map_err(|e| from_wit(&self.name, e))?;
        Ok(self.iter(it))
    }

    fn iter(&self, raw: wit::WindowIterator) -> WindowIter<K, V> {
        WindowIter {
            store: self.name.clone(),
            raw,
            buffered: VecDeque::new(),
            done: false,
            _types: PhantomData,
        }
    }
}

fn decode<T: Codec>(store: &str, bytes: &[u8]) -> Result<T, StoreError> {
    T::decode(bytes).map_err(|error| StoreError::Codec {
        store: store.to_string(),
        error,
    })
}

/// Windows of a fetch: `(key, window start, value)`, a page at a time.
pub struct WindowIter<K, V> {
    store: String,
    raw: wit::WindowIterator,
    buffered: VecDeque<wit::WindowedEntry>,
    done: bool,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K: Codec, V: Codec> Iterator for WindowIter<K, V> {
    type Item = Result<(K, i64, V), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffered.is_empty() && !self.done {
            match self.raw.next(256) {
                Ok(page) if page.is_empty() => self.done = true,
                Ok(page) => self.buffered.extend(page),
                Err(e) => {
                    self.done = true;
                    return Some(Err(from_wit(&self.store, e)));
                }
            }
        }
        let entry = self.buffered.pop_front()?;
        Some((|| {
            Ok((
                decode(&self.store, &entry.key)?,
                entry.window_start,
                decode(&self.store, &entry.value)?,
            ))
        })())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_windows_hold_each_timestamp_once() {
        let w = TimeWindows::tumbling_ms(60_000);
        assert_eq!(w.windows_for(0), vec![0]);
        assert_eq!(w.windows_for(59_999), vec![0]);
        assert_eq!(w.windows_for(60_000), vec![60_000]);
        assert_eq!(w.close_time(60_000), 120_000);
    }

    #[test]
    fn hopping_windows_overlap_and_never_start_before_zero() {
        let w = TimeWindows::hopping_ms(10_000, 5_000).grace_ms(1_000);
        assert_eq!(w.windows_for(12_000), vec![5_000, 10_000]);
        assert_eq!(w.windows_for(10_000), vec![5_000, 10_000]);
        assert_eq!(w.windows_for(3_000), vec![0]);
        assert_eq!(w.close_time(5_000), 16_000);
    }
}
