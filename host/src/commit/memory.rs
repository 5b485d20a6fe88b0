//! A [`Collector`] without a broker: an in-memory log per topic partition
//! with Kafka's visibility rules (at-least-once: a record is there once
//! flushed; exactly-once: once its transaction commits, and never if it
//! aborts). For unit tests of the commit cycle and for offline drivers.
//! Failures are injected one at a time; it never retries anything itself.

use std::collections::{BTreeMap, HashMap};

use super::{Collector, CommitError, Outgoing, RecordSink};
use crate::config::ProcessingGuarantee;
use crate::group::{GroupMetadata, TopicPartition};
use crate::kafka::partition_for_key;
use crate::member::OffsetAndMetadata;

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
    /// A changelog record: its offset is reported by
    /// [`Collector::take_changelog_offset`] once acknowledged.
    changelog: bool,
}

pub struct MemoryCollector {
    guarantee: ProcessingGuarantee,
    /// Partitions per topic, for records sent without one (default 1).
    partitions: HashMap<String, i32>,
    entries: Vec<Entry>,
    next_offset: HashMap<TopicPartition, i64>,
    acked: HashMap<TopicPartition, i64>,
    in_transaction: bool,
    /// Input offsets committed inside transactions, in commit order.
    transaction_offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    pending: u64,
    fail_flush: Option<CommitError>,
    fail_commit: Option<CommitError>,
}

impl MemoryCollector {
    pub fn new(guarantee: ProcessingGuarantee) -> Self {
        MemoryCollector {
            guarantee,
            partitions: HashMap::new(),
            entries: Vec::new(),
            next_offset: HashMap::new(),
            acked: HashMap::new(),
            in_transaction: false,
            transaction_offsets: BTreeMap::new(),
            pending: 0,
            fail_flush: None,
            fail_commit: None,
        }
    }

    /// Records sent to `topic` without a partition are spread over
    /// `partitions` by key, as the Kafka producer does.
    #[cfg(test)]
    pub fn with_partitions(mut self, topic: &str, partitions: i32) -> Self {
        self.partitions.insert(topic.to_string(), partitions);
        self
    }

    /// The next flush fails with `error`; what was in flight is lost.
    #[cfg(test)]
    pub fn fail_next_flush(&mut self, error: CommitError) {
        self.fail_flush = Some(error);
    }

    /// The next transaction commit fails with `error` (the transaction
    /// stays open for the caller to abort).
    #[cfg(test)]
    pub fn fail_next_commit(&mut self, error: CommitError) {
        self.fail_commit = Some(error);
    }

    /// What a `read_committed` consumer of `topic` sees, in offset order
    /// per partition.
    pub fn records(&self, topic: &str) -> Vec<&SentRecord> {
        let mut out: Vec<&SentRecord> = self
            .entries
            .iter()
            .filter(|e| e.visibility == Visibility::Visible && e.record.topic == topic)
            .map(|e| &e.record)
            .collect();
        out.sort_by_key(|r| (r.partition, r.offset));
        out
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
            let n = self.partitions.get(out.topic).copied().unwrap_or(1);
            partition_for_key(out.key.unwrap_or_default(), n)
        });
        if self.exactly_once() {
            self.in_transaction = true;
        }
        self.entries.push(Entry {
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
            },
            visibility: Visibility::InFlight,
            changelog,
        });
        self.pending += 1;
    }

    fn settle(&mut self, from: Visibility, to: Visibility) {
        for entry in self.entries.iter_mut().filter(|e| e.visibility == from) {
            entry.visibility = to;
        }
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
        let out = Outgoing {
            topic,
            partition: Some(partition),
            key: Some(key),
            value,
            headers: Vec::new(),
            timestamp: None,
        };
        self.push(out, true);
        Ok(())
    }

    fn poll(&self) -> Result<(), CommitError> {
        Ok(())
    }

    fn flush(&mut self) -> Result<(), CommitError> {
        if let Some(error) = self.fail_flush.take() {
            self.entries
                .retain(|e| e.visibility != Visibility::InFlight);
            return Err(error);
        }
        let acknowledged = if self.exactly_once() {
            Visibility::Uncommitted
        } else {
            Visibility::Visible
        };
        for entry in self
            .entries
            .iter_mut()
            .filter(|e| e.visibility == Visibility::InFlight)
        {
            let at = (entry.record.topic.clone(), entry.record.partition);
            let next = self.next_offset.entry(at.clone()).or_insert(0);
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
        if let Some(error) = self.fail_commit.take() {
            return Err(error);
        }
        self.flush()?;
        self.settle(Visibility::Uncommitted, Visibility::Visible);
        for (tp, committed) in offsets {
            self.transaction_offsets
                .insert(tp.clone(), committed.clone());
        }
        self.in_transaction = false;
        Ok(())
    }

    fn abort_transaction(&mut self) {
        if self.in_transaction {
            self.entries
                .retain(|e| e.visibility != Visibility::InFlight);
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
