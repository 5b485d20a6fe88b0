//! Window stores, laid out over a key-value store as Kafka Streams'
//! segmented window store is: every entry's key is
//! `segment (8 bytes) ++ key ++ window start (8 bytes)`, integers
//! big-endian with the sign bit flipped so byte order is time order. A
//! segment spans max(retention / 2, 60 s) of window starts; once the newest
//! window start seen is `retention` past a segment, the whole segment is
//! dropped with one range delete (no per-key deletes, nothing sent to the
//! changelog, whose own time retention expires those records).
//!
//! Owns the key layout and the time arithmetic; never buffers or talks to
//! Kafka ([`StateStore`](super::StateStore) does).

use std::ops::Bound;

use super::Entry;
use crate::topology::WindowSpec;

/// Smallest segment interval, as Kafka Streams.
const MIN_SEGMENT_INTERVAL_MS: i64 = 60_000;

/// Where a window store keeps its clock (the newest window start and the
/// task's stream time it has seen, 8 bytes each), as an entry of its own
/// beyond every segment, so it travels through the changelog and survives
/// a restart or a restore: lateness and retention go on from where they
/// were, not from an empty clock.
pub const CLOCK_KEY: &[u8] = b"\xff\xff\xff\xff\xff\xff\xff\xff.weir.window-clock";

/// A window store's clock entry.
pub fn encode_clock(observed: i64, stream_time: i64) -> Vec<u8> {
    let mut v = observed.to_be_bytes().to_vec();
    v.extend_from_slice(&stream_time.to_be_bytes());
    v
}

/// (newest window start, stream time) from a clock entry.
pub fn decode_clock(value: &[u8]) -> Option<(i64, i64)> {
    let observed = i64::from_be_bytes(value.get(0..8)?.try_into().ok()?);
    let stream_time = i64::from_be_bytes(value.get(8..16)?.try_into().ok()?);
    Some((observed, stream_time))
}

/// One window of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Windowed {
    pub key: Vec<u8>,
    pub start: i64,
    pub value: Vec<u8>,
}

fn flip(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

fn unflip(bytes: &[u8]) -> i64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(bytes);
    (u64::from_be_bytes(array) ^ (1 << 63)) as i64
}

/// A window store's time rules, from its declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub size: i64,
    pub grace: i64,
    pub retention: i64,
    pub segment_interval: i64,
}

impl Layout {
    pub fn new(spec: &WindowSpec) -> Self {
        let clamp = |v: u64| v.min(i64::MAX as u64 / 4) as i64;
        let retention = clamp(spec.retention_ms);
        Layout {
            size: clamp(spec.size_ms),
            grace: clamp(spec.grace_ms),
            retention,
            segment_interval: (retention / 2).max(MIN_SEGMENT_INTERVAL_MS),
        }
    }

    pub fn segment(&self, start: i64) -> i64 {
        start.div_euclid(self.segment_interval)
    }

    /// The stored key of `key`'s window at `start`.
    pub fn encode(&self, key: &[u8], start: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + key.len());
        out.extend_from_slice(&flip(self.segment(start)));
        out.extend_from_slice(key);
        out.extend_from_slice(&flip(start));
        out
    }

    /// The first stored key of segment `segment`.
    pub fn segment_start(&self, segment: i64) -> Vec<u8> {
        flip(segment).to_vec()
    }

    /// Key and window start of a stored key (None if it is not one).
    pub fn decode(stored: &[u8]) -> Option<(&[u8], i64)> {
        if stored.len() < 16 || stored == CLOCK_KEY {
            return None;
        }
        let key = &stored[8..stored.len() - 8];
        Some((key, unflip(&stored[stored.len() - 8..])))
    }

    /// The oldest window start still retained when the newest seen is
    /// `observed` (Kafka Streams' `observedStreamTime - retention + 1`).
    pub fn min_live(&self, observed: i64) -> i64 {
        if observed == i64::MIN {
            i64::MIN
        } else {
            observed.saturating_sub(self.retention).saturating_add(1)
        }
    }

    /// Whether a write to `key`'s window at `start` comes too late: the
    /// window closed (end + grace at or before `stream_time`) or it is past
    /// retention.
    pub fn is_closed(&self, start: i64, stream_time: i64, observed: i64) -> bool {
        let end = start.saturating_add(self.size);
        (stream_time >= 0 && end.saturating_add(self.grace) <= stream_time)
            || start < self.min_live(observed)
    }
}

/// A window store's time: its layout and clock (the newest window start
/// written or restored, and the newest stream time its writes were judged
/// at), with what a discard or an undone call goes back to, so a skipped
/// record's far-future window cannot expire live segments.
#[derive(Debug, Clone)]
pub struct WindowState {
    pub layout: Layout,
    /// (newest window start, stream time).
    clock: (i64, i64),
    committed: (i64, i64),
    at_call: Option<(i64, i64)>,
    /// Segments below this one are dropped already.
    dropped_below: i64,
}

impl WindowState {
    /// The state of a store whose committed clock entry is `stored`.
    pub fn new(spec: &WindowSpec, stored: Option<&[u8]>) -> Self {
        let clock = stored.and_then(decode_clock).unwrap_or((i64::MIN, -1));
        WindowState {
            layout: Layout::new(spec),
            clock,
            committed: clock,
            at_call: None,
            dropped_below: i64::MIN,
        }
    }

    /// The newest window start written or restored.
    pub fn observed(&self) -> i64 {
        self.clock.0
    }

    pub fn begin_call(&mut self) {
        self.at_call = Some(self.clock);
    }

    pub fn end_call(&mut self) {
        self.at_call = None;
    }

    pub fn rollback_call(&mut self) {
        if let Some(clock) = self.at_call.take() {
            self.clock = clock;
        }
    }

    pub fn discard(&mut self) {
        self.clock = self.committed;
    }

    /// The clock as it is now was committed (applied or restored).
    pub fn committed(&mut self) {
        self.committed = self.clock;
    }

    /// Moves the clock by a changelog record being restored.
    pub fn restored(&mut self, key: &[u8], value: Option<&[u8]>) {
        if key == CLOCK_KEY {
            if let Some((observed, stream_time)) = value.and_then(decode_clock) {
                self.clock = (self.clock.0.max(observed), self.clock.1.max(stream_time));
            }
        } else if let Some((_, start)) = Layout::decode(key) {
            self.clock.0 = self.clock.0.max(start);
        }
    }

    /// Judges a write to the window at `start`: `None` when it is closed
    /// (see [`Layout::is_closed`]); else the clock entry to write with it,
    /// if the clock moved.
    ///
    /// Closed is judged at the latest of `stream_time` (the task's, before
    /// this batch), the stream time this store saw before, and the newest
    /// window start written: every record before this one had a timestamp
    /// at or past its window's start, so that is a lower bound of Kafka
    /// Streams' per-record stream time that moves record by record within
    /// a batch. It never drops a record Kafka Streams would keep.
    pub fn admit(&mut self, start: i64, stream_time: i64) -> Option<Option<Vec<u8>>> {
        let (observed, seen) = self.clock;
        let stream_time = stream_time.max(seen);
        if self
            .layout
            .is_closed(start, stream_time.max(observed), observed)
        {
            return None;
        }
        let clock = (observed.max(start), stream_time);
        if clock == self.clock {
            return Some(None);
        }
        self.clock = clock;
        Some(Some(encode_clock(clock.0, clock.1)))
    }

    /// The end of the segments that passed retention and are not dropped
    /// yet (drop every stored key below it), if any.
    pub fn expired(&mut self) -> Option<Vec<u8>> {
        let min_live = self.layout.min_live(self.observed());
        if min_live == i64::MIN {
            return None;
        }
        let cut = self.layout.segment(min_live);
        if cut <= self.dropped_below {
            return None;
        }
        self.dropped_below = cut;
        Some(self.layout.segment_start(cut))
    }
}

/// Which windows a fetch wants: keys within bounds, starts within
/// [from, to], segment by segment.
#[derive(Debug, Clone)]
pub struct WindowQuery {
    pub key_from: Bound<Vec<u8>>,
    pub key_to: Bound<Vec<u8>>,
    pub from: i64,
    pub to: i64,
    /// One key only (`fetch`): its windows in time order.
    pub single: bool,
}

/// Where a paged window fetch resumes.
#[derive(Debug, Clone)]
pub struct WindowCursor {
    segment: i64,
    /// The last stored key returned in `segment`.
    after: Option<Vec<u8>>,
    done: bool,
}

impl WindowQuery {
    pub fn key(key: &[u8], from: i64, to: i64) -> Self {
        WindowQuery {
            key_from: Bound::Included(key.to_vec()),
            key_to: Bound::Included(key.to_vec()),
            from,
            to,
            single: true,
        }
    }

    pub fn range(key_from: Bound<Vec<u8>>, key_to: Bound<Vec<u8>>, from: i64, to: i64) -> Self {
        WindowQuery {
            key_from,
            key_to,
            from,
            to,
            single: false,
        }
    }

    /// The cursor at the start of this query, given the retained range.
    pub fn start(&self, layout: &Layout, observed: i64) -> WindowCursor {
        let from = self.from.max(layout.min_live(observed));
        WindowCursor {
            segment: layout.segment(from),
            after: None,
            done: from > self.to,
        }
    }

    fn wants(&self, key: &[u8], start: i64, min_live: i64) -> bool {
        let after_from = match &self.key_from {
            Bound::Included(k) => key >= k.as_slice(),
            Bound::Excluded(k) => key > k.as_slice(),
            Bound::Unbounded => true,
        };
        let before_to = match &self.key_to {
            Bound::Included(k) => key <= k.as_slice(),
            Bound::Excluded(k) => key < k.as_slice(),
            Bound::Unbounded => true,
        };
        after_from && before_to && start >= self.from && start <= self.to && start >= min_live
    }

    /// The stored-key bounds of this query within `segment`.
    fn segment_bounds(&self, layout: &Layout, segment: i64) -> (Vec<u8>, Bound<Vec<u8>>) {
        let prefix = layout.segment_start(segment);
        let with = |key: &[u8], tail: &[u8]| {
            let mut k = prefix.clone();
            k.extend_from_slice(key);
            k.extend_from_slice(tail);
            k
        };
        let start = match (&self.key_from, self.single) {
            (Bound::Included(k), true) => with(k, &flip(self.from)),
            (Bound::Included(k) | Bound::Excluded(k), _) => with(k, &[]),
            (Bound::Unbounded, _) => prefix.clone(),
        };
        // A key range cannot bound the end tighter than the segment: a
        // key that is a prefix of `key_to` sorts after it once its window
        // start is appended ("a" ++ 0x80… > "ab" ++ …); `wants` filters.
        let end = match (&self.key_to, self.single) {
            (Bound::Included(k), true) => Bound::Included(with(k, &flip(self.to))),
            _ => Bound::Excluded(layout.segment_start(segment.saturating_add(1))),
        };
        (start, end)
    }

    /// Up to `max` further windows, reading through `scan` (a store's or a
    /// query reader's: bounds and a limit, entries in key order). Empty
    /// segments cost one probe for the next stored key, not a scan each,
    /// so a fetch over any time span is bounded by what is stored.
    pub fn next<E>(
        &self,
        layout: &Layout,
        observed: i64,
        cursor: &mut WindowCursor,
        max: usize,
        scan: impl Fn(Bound<&[u8]>, Bound<&[u8]>, usize) -> Result<Vec<Entry>, E>,
    ) -> Result<Vec<Windowed>, E> {
        const PAGE: usize = 256;
        let mut out = Vec::new();
        let last_segment = layout.segment(self.to);
        let past_last = layout.segment_start(last_segment.saturating_add(1));
        let min_live = layout.min_live(observed);
        'segments: while !cursor.done && out.len() < max {
            if cursor.segment > last_segment {
                cursor.done = true;
                break;
            }
            let (start, end) = self.segment_bounds(layout, cursor.segment);
            let start = match &cursor.after {
                Some(after) => Bound::Excluded(after.as_slice()),
                None => Bound::Included(start.as_slice()),
            };
            let page = scan(start, end.as_ref().map(Vec::as_slice), PAGE)?;
            let full = page.len() == PAGE;
            for (stored, value) in &page {
                if out.len() == max {
                    // Resume at this entry next time.
                    continue 'segments;
                }
                cursor.after = Some(stored.clone());
                if let Some((key, start)) = Layout::decode(stored)
                    && self.wants(key, start, min_live)
                {
                    out.push(Windowed {
                        key: key.to_vec(),
                        start,
                        value: value.clone(),
                    });
                }
            }
            if full {
                continue;
            }
            // This segment is done: jump to the next one holding anything.
            cursor.after = None;
            let next = layout.segment_start(cursor.segment.saturating_add(1));
            let probe = scan(
                Bound::Included(next.as_slice()),
                Bound::Excluded(past_last.as_slice()),
                1,
            )?;
            match probe.first() {
                Some((stored, _)) if stored.len() >= 8 => {
                    cursor.segment = unflip(&stored[..8]);
                }
                _ => cursor.done = true,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn layout() -> Layout {
        Layout::new(&WindowSpec {
            size_ms: 10_000,
            grace_ms: 2_000,
            retention_ms: 200_000,
        })
    }

    type Map = BTreeMap<Vec<u8>, Vec<u8>>;

    fn scan(
        map: &Map,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, ()> {
        let start = start.map(<[u8]>::to_vec);
        let end = end.map(<[u8]>::to_vec);
        Ok(map
            .range((start, end))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    #[test]
    fn stored_keys_sort_by_segment_then_key_then_time_and_decode_back() {
        let l = layout();
        assert_eq!(l.segment_interval, 100_000);
        let a = l.encode(b"a", 50_000);
        let b = l.encode(b"b", 10_000);
        let a_late = l.encode(b"a", 150_000);
        assert!(a < b, "same segment: by key, then time");
        assert!(l.encode(b"a", 10_000) < l.encode(b"a", 50_000));
        assert!(a_late > b, "a later segment sorts after");
        assert_eq!(Layout::decode(&a), Some((&b"a"[..], 50_000)));
        assert_eq!(Layout::decode(&l.encode(b"", -5)), Some((&b""[..], -5)));
    }

    #[test]
    fn fetches_skip_empty_segments_return_at_most_max_and_find_prefix_keys() {
        let l = layout();
        let mut map = BTreeMap::new();
        for (key, start) in [
            (&b"user1"[..], 0),
            (b"user10", 0),
            (b"user1", 1_000_000_000),
        ] {
            map.insert(l.encode(key, start), b"v".to_vec());
        }
        map.insert(CLOCK_KEY.to_vec(), encode_clock(0, 0));
        let calls = std::cell::Cell::new(0);
        let counted = |s: Bound<&[u8]>, e: Bound<&[u8]>, n: usize| {
            calls.set(calls.get() + 1);
            scan(&map, s, e, n)
        };
        // Over all of time: a handful of scans, not one per segment.
        let q = WindowQuery::key(b"user1", 0, i64::MAX);
        let mut cursor = q.start(&l, i64::MIN);
        let got = q.next(&l, i64::MIN, &mut cursor, 100, counted).unwrap();
        let starts: Vec<i64> = got.iter().map(|w| w.start).collect();
        assert_eq!(starts, vec![0, 1_000_000_000]);
        assert!(calls.get() < 10, "{} scans", calls.get());
        // `user1` is within "user1"..="user10" although "user1" ++ start
        // sorts after "user10" ++ …; at most `max` per call.
        let q = WindowQuery::range(
            Bound::Included(b"user1".to_vec()),
            Bound::Included(b"user10".to_vec()),
            0,
            0,
        );
        let mut cursor = q.start(&l, i64::MIN);
        let first = q
            .next(&l, i64::MIN, &mut cursor, 1, |s, e, n| scan(&map, s, e, n))
            .unwrap();
        let rest = q
            .next(&l, i64::MIN, &mut cursor, 10, |s, e, n| scan(&map, s, e, n))
            .unwrap();
        assert_eq!(first.len(), 1);
        let mut keys: Vec<Vec<u8>> = first.into_iter().chain(rest).map(|w| w.key).collect();
        keys.sort();
        assert_eq!(keys, vec![b"user1".to_vec(), b"user10".to_vec()]);
    }

    #[test]
    fn late_and_expired_windows_are_closed() {
        let l = layout();
        // Window [0, 10 s) with 2 s grace closes at stream time 12 s.
        assert!(!l.is_closed(0, 11_999, 0));
        assert!(l.is_closed(0, 12_000, 0));
        // Past retention of the newest start seen.
        assert!(l.is_closed(0, -1, 200_000));
        assert!(!l.is_closed(1, -1, 200_000));
    }

    #[test]
    fn fetches_page_through_segments_with_bounds_inclusive() {
        let l = layout();
        let mut map = BTreeMap::new();
        for key in [&b"a"[..], b"ab", b"b", b"c"] {
            for start in [0, 90_000, 100_000, 250_000] {
                map.insert(l.encode(key, start), format!("{start}").into_bytes());
            }
        }
        let q = WindowQuery::key(b"a", 90_000, 250_000);
        let mut cursor = q.start(&l, 250_000);
        let mut got = Vec::new();
        loop {
            let page = q
                .next(&l, 250_000, &mut cursor, 1, |s, e, n| scan(&map, s, e, n))
                .unwrap();
            if page.is_empty() {
                break;
            }
            got.extend(page);
        }
        let starts: Vec<i64> = got.iter().map(|w| w.start).collect();
        assert_eq!(starts, vec![90_000, 100_000, 250_000]);
        assert!(got.iter().all(|w| w.key == b"a"));

        // Retention: the newest start 250 s keeps starts after 50 s.
        let q = WindowQuery::range(
            Bound::Included(b"ab".to_vec()),
            Bound::Excluded(b"c".to_vec()),
            0,
            100_000,
        );
        let mut cursor = q.start(&l, 250_000);
        let got = q
            .next(&l, 250_000, &mut cursor, 100, |s, e, n| scan(&map, s, e, n))
            .unwrap();
        let seen: Vec<(Vec<u8>, i64)> = got.into_iter().map(|w| (w.key, w.start)).collect();
        assert_eq!(
            seen,
            vec![
                (b"ab".to_vec(), 90_000),
                (b"b".to_vec(), 90_000),
                (b"ab".to_vec(), 100_000),
                (b"b".to_vec(), 100_000),
            ]
        );
    }
}
