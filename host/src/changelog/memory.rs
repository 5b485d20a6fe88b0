//! A [`ChangelogConsumer`] over a [`MemoryLog`]: what a `read_committed`
//! consumer of one topic would fetch, for restore without a broker. Aborted
//! records are skipped; the end of a partition is reported once per
//! position, as `enable.partition.eof` does.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::client::ClientError;

use super::{ChangelogConsumer, Fetched};
use crate::commit::{MemoryLog, SentRecord};

/// Records fetched from the log at once: a read per record would scan the
/// whole log each time (a restore quadratic in its length).
const FETCH: usize = 1024;

pub struct MemoryChangelog {
    log: MemoryLog,
    topic: String,
    /// Assigned partitions: the next offset, and whether the end at that
    /// offset was reported.
    positions: BTreeMap<i32, (i64, bool)>,
    /// Fetched and not yet polled, per partition (all below the stable
    /// offset when fetched, so never aborted later).
    fetched: BTreeMap<i32, VecDeque<SentRecord>>,
}

impl MemoryChangelog {
    pub fn new(log: MemoryLog, topic: &str) -> Self {
        MemoryChangelog {
            log,
            topic: topic.to_string(),
            positions: BTreeMap::new(),
            fetched: BTreeMap::new(),
        }
    }
}

impl ChangelogConsumer for MemoryChangelog {
    fn watermarks(&self, partition: i32, _: Duration) -> Result<(i64, i64), ClientError> {
        Ok((0, self.log.end_offset(&self.topic, partition)))
    }

    fn assign(&mut self, from: &[(i32, i64)]) -> Result<(), ClientError> {
        self.positions = from.iter().map(|&(p, o)| (p, (o, false))).collect();
        self.fetched.clear();
        Ok(())
    }

    fn poll(&mut self, _: Duration) -> Option<Result<Fetched, ClientError>> {
        for (&partition, (next, end_reported)) in self.positions.iter_mut() {
            let fetched = self.fetched.entry(partition).or_default();
            if fetched.is_empty() {
                // At the end (an O(1) check) nothing is scanned for.
                let stable = if *next >= self.log.end_offset(&self.topic, partition) {
                    *next
                } else {
                    self.log.last_stable_offset(&self.topic, partition)
                };
                if *next < stable {
                    fetched.extend(
                        self.log
                            .fetch(&self.topic, partition, (*next, stable), FETCH),
                    );
                }
                if fetched.is_empty() {
                    if !*end_reported {
                        // Past aborted records (not into an open
                        // transaction), as a read_committed consumer's
                        // position is.
                        *next = (*next).max(stable);
                        *end_reported = true;
                        return Some(Ok(Fetched::End {
                            partition,
                            next: *next,
                        }));
                    }
                    continue;
                }
            }
            let record = fetched.pop_front()?;
            *next = record.offset + 1;
            *end_reported = false;
            return Some(Ok(Fetched::Record {
                partition,
                offset: record.offset,
                key: record.key,
                value: record.value,
            }));
        }
        None
    }

    fn cached_high_watermark(&self, partition: i32) -> Option<i64> {
        Some(self.log.end_offset(&self.topic, partition))
    }
}
