//! The commit cycle and the producer it owns ([`RecordCollector`]).
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

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message};

use crate::config::{Config, ProcessingGuarantee};
use crate::group::{GroupMetadata, SourceConsumer, TopicPartition, offset_list};
use crate::member::{MembershipError, OffsetAndMetadata, Recovery};

const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("producing to `{topic}` failed: {reason}")]
    Produce { topic: String, reason: String },
    #[error("flushing the producer failed: {0}")]
    Flush(KafkaError),
    #[error("committing input offsets failed: {0}")]
    Offsets(Box<MembershipError>),
    #[error("input offsets: {0}")]
    OffsetList(KafkaError),
    #[error("sending offsets to the transaction of group `{group}` failed: {reason}")]
    SendOffsets { group: String, reason: String },
    #[error("transaction failed in {step}: {source}")]
    Transaction {
        step: &'static str,
        source: KafkaError,
    },
    #[error("no consumer group metadata for the transaction (not yet joined)")]
    NoGroupMetadata,
    #[error("changelog `{topic}` partition {partition}: no acknowledged offset after flush")]
    MissingChangelogOffset { topic: String, partition: i32 },
    #[error("cannot create the producer: {0}")]
    Create(KafkaError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Delivery reports: the highest acknowledged offset per tracked
/// (changelog) partition, and the first failure.
#[derive(Default)]
pub struct DeliveryTracker {
    offsets: Mutex<HashMap<usize, i64>>,
    failure: Mutex<Option<(String, String)>>,
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    /// 0: untracked output; n: index of a changelog partition + 1.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: usize) {
        match result {
            Ok(message) => {
                if tag != 0 {
                    let mut offsets = self.offsets.lock().unwrap_or_else(|p| p.into_inner());
                    let slot = offsets.entry(tag).or_insert(-1);
                    *slot = (*slot).max(message.offset());
                }
            }
            Err((error, message)) => {
                let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
                failure.get_or_insert_with(|| (message.topic().to_string(), error.to_string()));
            }
        }
    }
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
}

/// Where a task's outputs go: the producer in production, a list in the
/// offline test driver.
pub trait RecordSink {
    fn send(&mut self, out: Outgoing<'_>) -> Result<(), CommitError>;
}

impl RecordSink for RecordCollector {
    fn send(&mut self, out: Outgoing<'_>) -> Result<(), CommitError> {
        self.send_tagged(out, 0)
    }
}

/// The producer of one stream thread, and its transaction state.
pub struct RecordCollector {
    producer: BaseProducer<DeliveryTracker>,
    exactly_once: bool,
    in_transaction: bool,
    changelog_tags: HashMap<TopicPartition, usize>,
    pending_since_commit: u64,
}

impl RecordCollector {
    pub fn new(config: &Config, thread: usize) -> Result<Self, CommitError> {
        let producer: BaseProducer<DeliveryTracker> = crate::kafka::producer(config, thread)
            .create_with_context(DeliveryTracker::default())
            .map_err(CommitError::Create)?;
        let exactly_once = config.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2;
        if exactly_once {
            producer
                .init_transactions(TXN_TIMEOUT)
                .map_err(|source| CommitError::Transaction {
                    step: "init_transactions",
                    source,
                })?;
        }
        Ok(RecordCollector {
            producer,
            exactly_once,
            in_transaction: false,
            changelog_tags: HashMap::new(),
            pending_since_commit: 0,
        })
    }

    pub fn exactly_once(&self) -> bool {
        self.exactly_once
    }

    fn maybe_begin_transaction(&mut self) -> Result<(), CommitError> {
        if self.exactly_once && !self.in_transaction {
            self.producer
                .begin_transaction()
                .map_err(|source| CommitError::Transaction {
                    step: "begin_transaction",
                    source,
                })?;
            self.in_transaction = true;
        }
        Ok(())
    }

    fn tag(&mut self, topic: &str, partition: i32) -> usize {
        let next = self.changelog_tags.len() + 1;
        *self
            .changelog_tags
            .entry((topic.to_string(), partition))
            .or_insert(next)
    }

    /// Sends a changelog record, tracking its offset for the commit.
    pub fn send_changelog(
        &mut self,
        topic: &str,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), CommitError> {
        let tag = self.tag(topic, partition);
        let out = Outgoing {
            topic,
            partition: Some(partition),
            key: Some(key),
            value,
            headers: Vec::new(),
            timestamp: None,
        };
        self.send_tagged(out, tag)
    }

    fn send_tagged(&mut self, out: Outgoing<'_>, tag: usize) -> Result<(), CommitError> {
        self.maybe_begin_transaction()?;
        let mut record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(out.topic, tag);
        if let Some(p) = out.partition {
            record = record.partition(p);
        }
        if let Some(k) = out.key {
            record = record.key(k);
        }
        if let Some(v) = out.value {
            record = record.payload(v);
        }
        if let Some(ts) = out.timestamp {
            record = record.timestamp(ts);
        }
        if !out.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(out.headers.len());
            for (key, value) in &out.headers {
                headers = headers.insert(Header {
                    key,
                    value: Some(*value),
                });
            }
            record = record.headers(headers);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // Back-pressure: serve delivery reports until there is room.
                    self.producer.poll(Duration::from_millis(50));
                    record = back;
                }
                Err((e, _)) => {
                    return Err(CommitError::Produce {
                        topic: out.topic.to_string(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        self.pending_since_commit += 1;
        Ok(())
    }

    /// Serves delivery reports without blocking; call once per loop.
    pub fn poll(&self) -> Result<(), CommitError> {
        self.producer.poll(Duration::ZERO);
        self.check_failures()
    }

    fn check_failures(&self) -> Result<(), CommitError> {
        let failure = self
            .producer
            .context()
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match failure {
            Some((topic, reason)) => Err(CommitError::Produce { topic, reason }),
            None => Ok(()),
        }
    }

    /// Waits for every sent record to be acknowledged.
    pub fn flush(&mut self) -> Result<(), CommitError> {
        self.producer
            .flush(FLUSH_TIMEOUT)
            .map_err(CommitError::Flush)?;
        self.check_failures()
    }

    /// The offset after the last acknowledged changelog record of
    /// `(topic, partition)` since the last call; `None` if none was sent.
    pub fn take_changelog_offset(&mut self, topic: &str, partition: i32) -> Option<i64> {
        let tag = *self.changelog_tags.get(&(topic.to_string(), partition))?;
        let mut offsets = self
            .producer
            .context()
            .offsets
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        offsets.remove(&tag).map(|o| o + 1)
    }

    /// Exactly-once: commits the open transaction with `offsets` in it.
    pub fn commit_transaction(
        &mut self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        group: Option<GroupMetadata>,
    ) -> Result<(), CommitError> {
        if offsets.is_empty() && !self.in_transaction {
            return Ok(());
        }
        self.maybe_begin_transaction()?;
        if !offsets.is_empty() {
            let group = group.ok_or(CommitError::NoGroupMetadata)?;
            let tpl = offset_list(offsets).map_err(CommitError::OffsetList)?;
            self.send_offsets(&tpl, &group)?;
        }
        self.producer
            .commit_transaction(TXN_TIMEOUT)
            .map_err(|source| CommitError::Transaction {
                step: "commit_transaction",
                source,
            })?;
        self.in_transaction = false;
        self.check_failures()
    }

    /// `send_offsets_to_transaction` with the group's generation and member
    /// id, so the coordinator refuses the commit of a zombie from an older
    /// generation. rdkafka builds group metadata only from its own group
    /// consumer, which Weir does not use; librdkafka's C API takes it from
    /// the ids directly.
    fn send_offsets(
        &self,
        offsets: &rdkafka::TopicPartitionList,
        group: &GroupMetadata,
    ) -> Result<(), CommitError> {
        use rdkafka::bindings as rd;
        use std::ffi::{CStr, CString};
        let failed = |reason: String| CommitError::SendOffsets {
            group: group.group_id.clone(),
            reason,
        };
        let cstring = |s: &str| CString::new(s).map_err(|_| failed(format!("NUL in {s:?}")));
        let group_id = cstring(&group.group_id)?;
        let member_id = cstring(&group.member_id)?;
        let instance_id = group
            .group_instance_id
            .as_deref()
            .map(cstring)
            .transpose()?;
        // SAFETY: the strings outlive the call that copies them; the
        // metadata is destroyed here and nowhere else; the producer and the
        // partition list are live for the whole call; the returned error is
        // read and destroyed exactly once.
        unsafe {
            let metadata = rd::rd_kafka_consumer_group_metadata_new_with_genid(
                group_id.as_ptr(),
                group.generation,
                member_id.as_ptr(),
                instance_id
                    .as_ref()
                    .map_or(std::ptr::null(), |id| id.as_ptr()),
            );
            if metadata.is_null() {
                return Err(failed("librdkafka refused the group metadata".into()));
            }
            let error = rd::rd_kafka_send_offsets_to_transaction(
                self.producer.client().native_ptr(),
                offsets.ptr(),
                metadata,
                TXN_TIMEOUT.as_millis() as i32,
            );
            rd::rd_kafka_consumer_group_metadata_destroy(metadata);
            if error.is_null() {
                return Ok(());
            }
            let reason = CStr::from_ptr(rd::rd_kafka_error_string(error))
                .to_string_lossy()
                .into_owned();
            rd::rd_kafka_error_destroy(error);
            Err(failed(reason))
        }
    }

    /// Exactly-once: abandons the open transaction (dirty close).
    pub fn abort_transaction(&mut self) {
        if self.in_transaction {
            if let Err(e) = self.producer.abort_transaction(TXN_TIMEOUT) {
                tracing::warn!(error = %e, "aborting the transaction failed");
            }
            self.in_transaction = false;
        }
    }

    /// Records sent since the last [`RecordCollector::committed`].
    pub fn pending(&self) -> u64 {
        self.pending_since_commit
    }

    pub fn committed(&mut self) {
        self.pending_since_commit = 0;
    }
}

/// What the commit cycle needs from a task.
pub trait CommitParticipant {
    /// Sends buffered store writes to their changelogs; returns how many.
    fn send_changelog(&mut self, collector: &mut RecordCollector) -> Result<u64, CommitError>;
    /// Next offset to read per source partition, for what was processed,
    /// with the metadata to commit beside it.
    fn consumed_offsets(&self) -> Vec<(TopicPartition, OffsetAndMetadata)>;
    /// Applies buffered store writes with the changelog offsets they reached.
    fn apply_store_writes(&mut self, collector: &mut RecordCollector) -> Result<(), CommitError>;
    /// Records that `consumed_offsets` is now committed.
    fn offsets_committed(&mut self);
}

/// Timing of one commit, for logs and metrics.
#[derive(Debug, Clone, Copy)]
pub struct CommitStats {
    pub tasks: usize,
    pub changelog_records: u64,
    pub elapsed: Duration,
}

/// One commit of `tasks`, in the order the guarantee requires (see the
/// module docs).
pub fn commit_tasks(
    tasks: &mut [&mut dyn CommitParticipant],
    collector: &mut RecordCollector,
    consumer: &dyn SourceConsumer,
) -> Result<CommitStats, CommitError> {
    let started = Instant::now();
    let mut changelog_records = 0;
    for task in tasks.iter_mut() {
        changelog_records += task.send_changelog(collector)?;
    }
    collector.flush()?;
    let offsets: Vec<(TopicPartition, OffsetAndMetadata)> =
        tasks.iter().flat_map(|t| t.consumed_offsets()).collect();
    if collector.exactly_once() {
        collector.commit_transaction(&offsets, consumer.group_metadata())?;
    }
    for task in tasks.iter_mut() {
        task.apply_store_writes(collector)?;
    }
    let mut offsets_committed = true;
    if !collector.exactly_once() {
        match consumer.commit_offsets(&offsets) {
            Ok(()) => {}
            // A rebalance is under way or the coordinator moved: the state
            // is applied (at-least-once allows it to run ahead); the offsets
            // stay pending and go with the next commit, or the group's
            // `Lost` event closes the tasks if the generation is gone.
            Err(e) if e.recovery() != Recovery::Fatal => {
                tracing::warn!(error = %e, "input offsets not committed; retrying at the next commit");
                offsets_committed = false;
            }
            Err(e) => return Err(CommitError::Offsets(Box::new(e))),
        }
    }
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
    })
}
