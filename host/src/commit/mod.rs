//! The commit cycle: in which order a thread's tasks, its producer and the
//! group commit (the [`CommitProtocol`] of each processing guarantee), and
//! the seam it commits through ([`Collector`]: send, send to a changelog,
//! flush and read back acknowledged offsets, transaction verbs).
//!
//! At-least-once, every `commit.interval.ms` (or when the store buffers are
//! full): send buffered store writes to their changelogs, flush the producer
//! (outputs and changelog records acknowledged), apply each store's writes
//! together with the changelog offset they reached, then commit input
//! offsets. A crash at any point leaves state at or behind the committed
//! offsets' effects, never ahead of its own changelog.
//!
//! Exactly-once v2: one transaction per stream thread and commit; input
//! offsets are sent inside it; stores are applied only after the broker has
//! committed it (restore reads changelogs `read_committed`).
//!
//! The collectors: [`RecordCollector`] (rdkafka, `kafka.rs`) in
//! production, [`MemoryCollector`] (`memory.rs`) where no broker is wanted.
//! This module never talks to Kafka itself.

#[cfg(feature = "server")]
mod kafka;
mod memory;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use crate::client::ClientError;

#[cfg(feature = "server")]
pub use kafka::RecordCollector;
pub use memory::{Faults, MemoryCollector, MemoryLog, SentRecord};

use crate::config::ProcessingGuarantee;
use crate::group::{GroupMetadata, SourceConsumer, TopicPartition};
use crate::member::{MembershipError, OffsetAndMetadata, Recovery};
use crate::topology::TaskId;

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("producing to `{topic}` failed: {reason}")]
    Produce { topic: String, reason: String },
    #[error("flushing the producer failed: {0}")]
    Flush(ClientError),
    #[error("committing input offsets failed: {0}")]
    Offsets(Box<MembershipError>),
    #[error("input offsets: {0}")]
    OffsetList(ClientError),
    #[error("sending offsets to the transaction of group `{group}` failed: {reason}")]
    SendOffsets { group: String, reason: String },
    #[error("transaction failed in {step}: {source}")]
    Transaction {
        step: &'static str,
        source: ClientError,
    },
    #[error("no consumer group metadata for the transaction (not yet joined)")]
    NoGroupMetadata,
    #[error("changelog `{topic}` partition {partition}: no acknowledged offset after flush")]
    MissingChangelogOffset { topic: String, partition: i32 },
    #[error("cannot create the producer: {0}")]
    Create(ClientError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// A record for the producer.
pub struct Outgoing<'a> {
    pub topic: &'a str,
    /// `None`: by key hash (murmur2), as Kafka's Java clients do.
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, &'a [u8])>,
    pub timestamp: Option<i64>,
    /// The task sending it (Kafka does not carry it; the offline driver
    /// reports it).
    pub task: TaskId,
}

impl<'a> Outgoing<'a> {
    /// A store write for partition `partition` of changelog `topic`.
    pub fn changelog(
        topic: &'a str,
        partition: i32,
        key: &'a [u8],
        value: Option<&'a [u8]>,
    ) -> Self {
        Outgoing {
            topic,
            partition: Some(partition),
            key: Some(key),
            value,
            headers: Vec::new(),
            timestamp: None,
            task: TaskId::for_partition(partition),
        }
    }
}

/// Where a task's outputs go while it processes: a [`Collector`] in
/// production, a list in the offline test driver.
pub trait RecordSink {
    fn send(&mut self, out: Outgoing<'_>) -> Result<(), CommitError>;
}

/// A stream thread's producer as the commit cycle uses it.
pub trait Collector: RecordSink + Send {
    fn guarantee(&self) -> ProcessingGuarantee;
    /// Sends a changelog record, tracking its offset for the commit.
    fn send_changelog(
        &mut self,
        topic: &str,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), CommitError>;
    /// Serves delivery reports without blocking; reports the first failure.
    fn poll(&self) -> Result<(), CommitError>;
    /// Waits for every sent record to be acknowledged.
    fn flush(&mut self) -> Result<(), CommitError>;
    /// The offset after the last acknowledged changelog record of
    /// `(topic, partition)` since the last call; `None` if none was sent.
    fn take_changelog_offset(&mut self, topic: &str, partition: i32) -> Option<i64>;
    /// Exactly-once: commits the open transaction with `offsets` in it.
    fn commit_transaction(
        &mut self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        group: Option<GroupMetadata>,
    ) -> Result<(), CommitError>;
    /// Exactly-once: abandons the open transaction (dirty close).
    fn abort_transaction(&mut self);
    /// Records sent since the last [`Collector::committed`].
    fn pending(&self) -> u64;
    fn committed(&mut self);
}

/// What the commit cycle needs from a task.
pub trait CommitParticipant {
    /// Sends buffered store writes to their changelogs; returns how many.
    fn send_changelog(&mut self, collector: &mut dyn Collector) -> Result<u64, CommitError>;
    /// Next offset to read per source partition, for what was processed,
    /// with the metadata to commit beside it.
    fn consumed_offsets(&self) -> Vec<(TopicPartition, OffsetAndMetadata)>;
    /// Applies buffered store writes with the changelog offsets they reached.
    fn apply_store_writes(&mut self, collector: &mut dyn Collector) -> Result<(), CommitError>;
    /// Records that `consumed_offsets` is now committed.
    fn offsets_committed(&mut self);
}

/// Timing of one commit, for logs and metrics.
#[derive(Debug, Clone, Copy)]
pub struct CommitStats {
    pub tasks: usize,
    pub changelog_records: u64,
    pub elapsed: Duration,
    /// Of `elapsed`, waiting for the producer's acknowledgements.
    pub flush: Duration,
}

/// How a processing guarantee commits, and what a failure costs under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitProtocol {
    /// Flush, apply stores, then commit offsets through the group.
    AtLeastOnce,
    /// One transaction per thread: offsets inside it, stores applied after.
    ExactlyOnce,
}

impl CommitProtocol {
    pub fn of(guarantee: ProcessingGuarantee) -> Self {
        match guarantee {
            ProcessingGuarantee::AtLeastOnce => CommitProtocol::AtLeastOnce,
            ProcessingGuarantee::ExactlyOnceV2 => CommitProtocol::ExactlyOnce,
        }
    }

    /// Whether uncommitted work of one task is bound to every other task of
    /// the thread (one open transaction spans them): a failing task then
    /// costs all of them their uncommitted work.
    pub fn binds_thread(self) -> bool {
        self == CommitProtocol::ExactlyOnce
    }

    /// Whether starting again from the last commit needs a new producer
    /// (a fenced or aborted transactional producer cannot be used again).
    pub fn replaces_producer_on_reset(self) -> bool {
        self == CommitProtocol::ExactlyOnce
    }

    /// One commit of `tasks`, in the order the guarantee requires (see the
    /// module docs).
    pub fn commit(
        self,
        tasks: &mut [&mut dyn CommitParticipant],
        collector: &mut dyn Collector,
        consumer: &dyn SourceConsumer,
    ) -> Result<CommitStats, CommitError> {
        let started = Instant::now();
        let mut changelog_records = 0;
        for task in tasks.iter_mut() {
            changelog_records += task.send_changelog(collector)?;
        }
        let flush_started = Instant::now();
        collector.flush()?;
        let flush = flush_started.elapsed();
        let offsets: Vec<(TopicPartition, OffsetAndMetadata)> =
            tasks.iter().flat_map(|t| t.consumed_offsets()).collect();
        let offsets_committed = match self {
            CommitProtocol::ExactlyOnce => {
                collector.commit_transaction(&offsets, consumer.group_metadata())?;
                apply_store_writes(tasks, collector)?;
                true
            }
            CommitProtocol::AtLeastOnce => {
                apply_store_writes(tasks, collector)?;
                match consumer.commit_offsets(&offsets) {
                    Ok(()) => true,
                    // A rebalance is under way or the coordinator moved: the
                    // state is applied (at-least-once allows it to run
                    // ahead); the offsets stay pending and go with the next
                    // commit, or the group's `Lost` event closes the tasks
                    // if the generation is gone.
                    Err(e) if e.recovery() != Recovery::Fatal => {
                        tracing::warn!(error = %e, "input offsets not committed; retrying at the next commit");
                        false
                    }
                    Err(e) => return Err(CommitError::Offsets(Box::new(e))),
                }
            }
        };
        if offsets_committed {
            for task in tasks.iter_mut() {
                task.offsets_committed();
            }
        }
        collector.committed();
        Ok(CommitStats {
            tasks: tasks.len(),
            changelog_records,
            elapsed: started.elapsed(),
            flush,
        })
    }
}

fn apply_store_writes(
    tasks: &mut [&mut dyn CommitParticipant],
    collector: &mut dyn Collector,
) -> Result<(), CommitError> {
    for task in tasks.iter_mut() {
        task.apply_store_writes(collector)?;
    }
    Ok(())
}
