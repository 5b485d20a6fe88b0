//! Kafka without a broker, for unit tests of the commit cycle and restore
//! and for offline drivers: [`MemoryLog`], topic partitions in memory with
//! Kafka's visibility rules (at-least-once: a record is there once flushed;
//! exactly-once: once its transaction commits, never if it aborts), and
//! [`MemoryCollector`], a producer into it. Failures are injected one at a
//! time; nothing here retries.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Collector, CommitError, Outgoing, RecordSink};
use crate::config::ProcessingGuarantee;
use crate::group::{GroupMetadata, TopicPartition};
use crate::member::OffsetAndMetadata;
use crate::partitioner::partition_for_key;
use crate::topology::TaskId;

/// A record as it sits in a topic partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp: Option<i64>,
    /// The task that sent it.
    pub task: TaskId,
    /// Position in the log across partitions: the order it was sent in.
    pub seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visibility {
    /// Sent, not acknowledged: lost by a failed flush or an abort.
    InFlight,
    /// Acknowledged inside an open transaction.
    Uncommitted,
    Visible,
    Aborted,
}

#[derive(Debug)]
struct Entry {
    record: SentRecord,
    visibility: Visibility,
    /// The collector that sent it: a transaction settles only its own.
    producer: u64,
    /// A changelog record: its offset is reported by
    /// [`Collector::take_changelog_offset`] once acknowledged.
    changelog: bool,
}

#[derive(Debug, Default)]
struct Topics {
    entries: Vec<Entry>,
    next_offset: HashMap<TopicPartition, i64>,
    next_seq: u64,
    /// Committed input offsets per consumer group (`__consumer_offsets`).
    group_offsets: BTreeMap<String, BTreeMap<TopicPartition, OffsetAndMetadata>>,
}

/// Topic partitions in memory, shared by the collectors writing them and
/// the readers (restore, tests) reading them `read_committed`.
#[derive(Debug, Clone, Default)]
pub struct MemoryLog(Arc<Mutex<Topics>>);

impl MemoryLog {
    fn lock(&self) -> MutexGuard<'_, Topics> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What a `read_committed` consumer of `topic` sees, in offset order
    /// per partition.
    pub fn records(&self, topic: &str) -> Vec<SentRecord> {
        let mut out: Vec<SentRecord> = self
            .lock()
            .entries
            .iter()
            .filter(|e| e.visibility == Visibility::Visible && e.record.topic == topic)
            .map(|e| e.record.clone())
            .collect();
        out.sort_by_key(|r| (r.partition, r.offset));
        out
    }

    /// Visible records of `topic` sent after the one numbered `seq`, in
    /// the order they were sent (across partitions).
    pub fn records_after(&self, topic: &str, seq: Option<u64>) -> Vec<SentRecord> {
        let mut out: Vec<SentRecord> = self
            .lock()
            .entries
            .iter()
            .filter(|e| {
                e.visibility == Visibility::Visible
                    && e.record.topic == topic
                    && seq.is_none_or(|s| e.record.seq > s)
            })
            .map(|e| e.record.clone())
            .collect();
        out.sort_by_key(|r| r.seq);
        out
    }

    /// The first visible record of `topic`/`partition` at or after `from`.
    pub fn next_record(&self, topic: &str, partition: i32, from: i64) -> Option<SentRecord> {
        self.fetch(topic, partition, (from, i64::MAX), 1).pop()
    }

    /// Up to `max` visible records of `topic`/`partition` at or past
    /// `from` and before `to`, in offset order: what one fetch returns.
    pub fn fetch(
        &self,
        topic: &str,
        partition: i32,
        (from, to): (i64, i64),
        max: usize,
    ) -> Vec<SentRecord> {
        let mut out: Vec<SentRecord> = self
            .lock()
            .entries
            .iter()
            .filter(|e| {
                e.visibility == Visibility::Visible
                    && e.record.topic == topic
                    && e.record.partition == partition
                    && (from..to).contains(&e.record.offset)
            })
            .map(|e| e.record.clone())
            .collect();
        out.sort_by_key(|r| r.offset);
        out.truncate(max);
        out
    }

    /// Where a `read_committed` consumer of `topic`/`partition` stops: the
    /// first offset of a transaction still open, else the end.
    pub fn last_stable_offset(&self, topic: &str, partition: i32) -> i64 {
        let open = self
            .lock()
            .entries
            .iter()
            .filter(|e| {
                e.visibility == Visibility::Uncommitted
                    && e.record.topic == topic
                    && e.record.partition == partition
            })
            .map(|e| e.record.offset)
            .min();
        open.unwrap_or_else(|| self.end_offset(topic, partition))
    }

    /// Commits input offsets for consumer group `group`, as a plain offset
    /// commit or a committed transaction does.
    pub fn commit_offsets(&self, group: &str, offsets: &[(TopicPartition, OffsetAndMetadata)]) {
        let mut topics = self.lock();
        let committed = topics.group_offsets.entry(group.to_string()).or_default();
        for (tp, offset) in offsets {
            committed.insert(tp.clone(), offset.clone());
        }
    }

    /// What group `group` has committed, the latest per partition.
    pub fn group_offsets(&self, group: &str) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        self.lock()
            .group_offsets
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    /// Appends `record` (its topic, partition, key, value, headers and
    /// timestamp) as an outside producer would, visible at once; returns
    /// the offset it got. What the offline driver pipes into a source a
    /// store is restored from.
    pub fn append(&self, mut record: SentRecord) -> i64 {
        let mut log = self.lock();
        let next = log
            .next_offset
            .entry((record.topic.clone(), record.partition))
            .or_insert(0);
        record.offset = *next;
        *next += 1;
        record.seq = log.next_seq;
        log.next_seq += 1;
        let offset = record.offset;
        log.entries.push(Entry {
            record,
            visibility: Visibility::Visible,
            producer: 0,
            changelog: false,
        });
        offset
    }

    /// The offset the next acknowledged record of `topic`/`partition` gets
    /// (Kafka's high watermark; aborted records count, as in Kafka).
    pub fn end_offset(&self, topic: &str, partition: i32) -> i64 {
        self.lock()
            .next_offset
            .get(&(topic.to_string(), partition))
            .copied()
            .unwrap_or(0)
    }
}

/// Failures to inject into a [`MemoryCollector`], shared with whoever
/// holds a clone (the collector may sit inside a task manager).
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<PendingFaults>>);

#[derive(Debug, Default)]
struct PendingFaults {
    flush: Option<CommitError>,
    commit: Option<CommitError>,
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, PendingFaults> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next flush fails with `error`; what was in flight is lost.
    #[cfg(test)]
    pub fn fail_next_flush(&self, error: CommitError) {
        self.lock().flush = Some(error);
    }

    /// The next transaction commit fails with `error` (the transaction
    /// stays open for the caller to abort).
    #[cfg(test)]
    pub fn fail_next_commit(&self, error: CommitError) {
        self.lock().commit = Some(error);
    }
}

/// A producer into a [`MemoryLog`].
pub struct MemoryCollector {
    guarantee: ProcessingGuarantee,
    log: MemoryLog,
    id: u64,
    /// Partitions per topic, for records sent without one.
    partitions: HashMap<String, i32>,
    /// Partitions of a topic not in `partitions`.
    default_partitions: i32,
    acked: HashMap<TopicPartition, i64>,
    in_transaction: bool,
    /// Input offsets committed inside transactions, the latest per partition.
    transaction_offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    pending: u64,
    faults: Faults,
}

impl MemoryCollector {
    /// A producer into a log of its own.
    #[cfg(test)]
    pub fn new(guarantee: ProcessingGuarantee) -> Self {
        Self::into_log(guarantee, MemoryLog::default())
    }

    /// A producer into `log`, which other collectors and readers share.
    pub fn into_log(guarantee: ProcessingGuarantee, log: MemoryLog) -> Self {
        static IDS: AtomicU64 = AtomicU64::new(1);
        MemoryCollector {
            guarantee,
            log,
            id: IDS.fetch_add(1, Ordering::Relaxed),
            partitions: HashMap::new(),
            default_partitions: 1,
            acked: HashMap::new(),
            in_transaction: false,
            transaction_offsets: BTreeMap::new(),
            pending: 0,
            faults: Faults::default(),
        }
    }

    /// Failures are injected through `faults` (and its clones).
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// What a `read_committed` consumer of `topic` sees.
    #[cfg(test)]
    pub fn records(&self, topic: &str) -> Vec<SentRecord> {
        self.log.records(topic)
    }

    /// Records sent without a partition to a topic not named in
    /// [`MemoryCollector::with_partitions`] are spread over `partitions`
    /// by key (default 1).
    pub fn with_default_partitions(mut self, partitions: i32) -> Self {
        self.default_partitions = partitions.max(1);
        self
    }

    /// Records sent to `topic` without a partition are spread over
    /// `partitions` by key, as the Kafka producer does.
    #[cfg(test)]
    pub fn with_partitions(mut self, topic: &str, partitions: i32) -> Self {
        self.partitions.insert(topic.to_string(), partitions);
        self
    }

    #[cfg(test)]
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Input offsets committed inside transactions (exactly-once).
    #[cfg(test)]
    pub fn transaction_offsets(&self) -> &BTreeMap<TopicPartition, OffsetAndMetadata> {
        &self.transaction_offsets
    }

    #[cfg(test)]
    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    fn exactly_once(&self) -> bool {
        self.guarantee == ProcessingGuarantee::ExactlyOnceV2
    }

    fn push(&mut self, out: Outgoing<'_>, changelog: bool) {
        let partition = out.partition.unwrap_or_else(|| {
            let n = self
                .partitions
                .get(out.topic)
                .copied()
                .unwrap_or(self.default_partitions);
            partition_for_key(out.key.unwrap_or_default(), n)
        });
        if self.exactly_once() {
            self.in_transaction = true;
        }
        let mut log = self.log.lock();
        let seq = log.next_seq;
        log.next_seq += 1;
        log.entries.push(Entry {
            record: SentRecord {
                topic: out.topic.to_string(),
                partition,
                offset: -1,
                key: out.key.map(<[u8]>::to_vec),
                value: out.value.map(<[u8]>::to_vec),
                headers: out
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_vec()))
                    .collect(),
                timestamp: out.timestamp,
                task: out.task,
                seq,
            },
            visibility: Visibility::InFlight,
            producer: self.id,
            changelog,
        });
        self.pending += 1;
    }

    /// Moves this collector's entries from one visibility to another.
    fn settle(&self, from: Visibility, to: Visibility) {
        for entry in self
            .log
            .lock()
            .entries
            .iter_mut()
            .filter(|e| e.producer == self.id && e.visibility == from)
        {
            entry.visibility = to;
        }
    }

    fn drop_in_flight(&self) {
        let id = self.id;
        self.log
            .lock()
            .entries
            .retain(|e| e.producer != id || e.visibility != Visibility::InFlight);
    }
}

impl RecordSink for MemoryCollector {
    fn send(&mut self, out: Outgoing<'_>) -> Result<(), CommitError> {
        self.push(out, false);
        Ok(())
    }
}

impl Collector for MemoryCollector {
    fn guarantee(&self) -> ProcessingGuarantee {
        self.guarantee
    }

    fn send_changelog(
        &mut self,
        topic: &str,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), CommitError> {
        self.push(Outgoing::changelog(topic, partition, key, value), true);
        Ok(())
    }

    fn poll(&self) -> Result<(), CommitError> {
        Ok(())
    }

    fn flush(&mut self) -> Result<(), CommitError> {
        if let Some(error) = self.faults.lock().flush.take() {
            self.drop_in_flight();
            return Err(error);
        }
        let acknowledged = if self.exactly_once() {
            Visibility::Uncommitted
        } else {
            Visibility::Visible
        };
        let mut log = self.log.lock();
        let Topics {
            entries,
            next_offset,
            ..
        } = &mut *log;
        for entry in entries
            .iter_mut()
            .filter(|e| e.producer == self.id && e.visibility == Visibility::InFlight)
        {
            let at = (entry.record.topic.clone(), entry.record.partition);
            let next = next_offset.entry(at.clone()).or_insert(0);
            entry.record.offset = *next;
            *next += 1;
            entry.visibility = acknowledged;
            if entry.changelog {
                self.acked.insert(at, entry.record.offset);
            }
        }
        Ok(())
    }

    fn take_changelog_offset(&mut self, topic: &str, partition: i32) -> Option<i64> {
        self.acked
            .remove(&(topic.to_string(), partition))
            .map(|o| o + 1)
    }

    fn commit_transaction(
        &mut self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        group: Option<GroupMetadata>,
    ) -> Result<(), CommitError> {
        if !offsets.is_empty() && group.is_none() {
            return Err(CommitError::NoGroupMetadata);
        }
        if let Some(error) = self.faults.lock().commit.take() {
            return Err(error);
        }
        self.flush()?;
        self.settle(Visibility::Uncommitted, Visibility::Visible);
        if let Some(group) = group {
            self.log.commit_offsets(&group.group_id, offsets);
        }
        for (tp, committed) in offsets {
            self.transaction_offsets
                .insert(tp.clone(), committed.clone());
        }
        self.in_transaction = false;
        Ok(())
    }

    fn abort_transaction(&mut self) {
        if self.in_transaction {
            self.drop_in_flight();
            self.settle(Visibility::Uncommitted, Visibility::Aborted);
            self.in_transaction = false;
        }
    }

    fn pending(&self) -> u64 {
        self.pending
    }

    fn committed(&mut self) {
        self.pending = 0;
    }
}
