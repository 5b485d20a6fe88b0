//! The Kafka side of [`Collector`]: a stream thread's rdkafka producers,
//! their delivery reports (acknowledged changelog offsets, the first
//! failure) and, under exactly-once, the transaction. Knows nothing of
//! tasks or stores; the commit order is [`super::CommitProtocol`]'s.
//!
//! Exactly-once: one transactional producer sends everything. At-least-once:
//! outputs and repartition records go through a producer that reports only
//! failures, changelog records through one that reports every delivery,
//! since only their offsets are needed (see [`crate::kafka::producer`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message};

use super::{Collector, CommitError, Outgoing, RecordSink};
use crate::client::ClientError;
use crate::config::{Config, ProcessingGuarantee};
use crate::group::{GroupMetadata, TopicPartition, offset_list};
use crate::kafka::{RawRecord, TopicHandles};
use crate::member::OffsetAndMetadata;

const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// Delivery reports: the highest acknowledged offset per tracked
/// (changelog) partition, and the first failure.
#[derive(Default)]
pub struct DeliveryTracker {
    offsets: Mutex<HashMap<usize, i64, foldhash::fast::RandomState>>,
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

/// One producer and its topic handles.
struct Producing {
    /// Declared before `producer`, so dropped before it.
    topics: TopicHandles,
    producer: BaseProducer<DeliveryTracker>,
}

impl Producing {
    fn new(config: rdkafka::ClientConfig) -> Result<Self, CommitError> {
        let producer: BaseProducer<DeliveryTracker> = config
            .create_with_context(DeliveryTracker::default())
            .map_err(|e| CommitError::Create(e.into()))?;
        let topics = TopicHandles::new(&producer).ok_or_else(|| {
            CommitError::Create(ClientError::new("the producer has no librdkafka client"))
        })?;
        Ok(Producing { topics, producer })
    }

    fn send(&mut self, record: &RawRecord<'_>) -> Result<(), CommitError> {
        loop {
            match self.topics.send(record) {
                Ok(()) => return Ok(()),
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    // Back-pressure: serve delivery reports until there is room.
                    crate::kafka::serve_delivery_reports(&self.producer);
                }
                Err(e) => {
                    return Err(CommitError::Produce {
                        topic: record.topic.to_string(),
                        reason: e.to_string(),
                    });
                }
            }
        }
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
}

/// The producers of one stream thread, and its transaction state.
pub struct RecordCollector {
    /// Everything under exactly-once; under at-least-once all but changelog
    /// records, reporting only failures.
    records: Producing,
    /// At-least-once: changelog records, every delivery reported.
    changelog: Option<Producing>,
    exactly_once: bool,
    in_transaction: bool,
    /// Each changelog partition's tag, by topic: looked up per changelog
    /// record without building a key.
    changelog_tags: HashMap<String, Vec<(i32, usize)>, foldhash::fast::RandomState>,
    pending_since_commit: u64,
}

impl RecordCollector {
    pub fn new(config: &Config, thread: usize) -> Result<Self, CommitError> {
        let exactly_once = config.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2;
        let records = Producing::new(crate::kafka::producer(config, thread))?;
        if exactly_once {
            records
                .producer
                .init_transactions(TXN_TIMEOUT)
                .map_err(|source| CommitError::Transaction {
                    step: "init_transactions",
                    source: source.into(),
                })?;
        }
        let changelog = match exactly_once {
            true => None,
            false => Some(Producing::new(crate::kafka::changelog_producer(
                config, thread,
            ))?),
        };
        Ok(RecordCollector {
            records,
            changelog,
            exactly_once,
            in_transaction: false,
            changelog_tags: HashMap::default(),
            pending_since_commit: 0,
        })
    }

    /// Where changelog records go and their offsets are reported.
    fn changelog(&self) -> &Producing {
        self.changelog.as_ref().unwrap_or(&self.records)
    }

    fn producers(&self) -> impl Iterator<Item = &Producing> {
        std::iter::once(&self.records).chain(self.changelog.as_ref())
    }

    fn maybe_begin_transaction(&mut self) -> Result<(), CommitError> {
        if self.exactly_once && !self.in_transaction {
            self.records
                .producer
                .begin_transaction()
                .map_err(|source| CommitError::Transaction {
                    step: "begin_transaction",
                    source: source.into(),
                })?;
            self.in_transaction = true;
        }
        Ok(())
    }

    fn tag(&mut self, topic: &str, partition: i32) -> usize {
        if let Some(tag) = self.known_tag(topic, partition) {
            return tag;
        }
        let next = self.changelog_tags.values().map(Vec::len).sum::<usize>() + 1;
        let tags = self.changelog_tags.entry(topic.to_string()).or_default();
        tags.push((partition, next));
        next
    }

    fn known_tag(&self, topic: &str, partition: i32) -> Option<usize> {
        let tags = self.changelog_tags.get(topic)?;
        tags.iter()
            .find(|(p, _)| *p == partition)
            .map(|(_, tag)| *tag)
    }

    fn send_tagged(&mut self, out: Outgoing<'_>, tag: usize) -> Result<(), CommitError> {
        self.maybe_begin_transaction()?;
        let record = RawRecord {
            topic: out.topic,
            partition: out.partition,
            key: out.key,
            value: out.value,
            headers: &out.headers,
            timestamp: out.timestamp,
            opaque: tag,
        };
        let producing = match (&mut self.changelog, tag) {
            (Some(changelog), 1..) => changelog,
            _ => &mut self.records,
        };
        producing.send(&record)?;
        self.pending_since_commit += 1;
        Ok(())
    }

    fn check_failures(&self) -> Result<(), CommitError> {
        self.producers().try_for_each(Producing::check_failures)
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
                self.records.producer.client().native_ptr(),
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
}

impl RecordSink for RecordCollector {
    fn send(&mut self, out: Outgoing<'_>) -> Result<(), CommitError> {
        self.send_tagged(out, 0)
    }
}

impl Collector for RecordCollector {
    fn guarantee(&self) -> ProcessingGuarantee {
        if self.exactly_once {
            ProcessingGuarantee::ExactlyOnceV2
        } else {
            ProcessingGuarantee::AtLeastOnce
        }
    }

    /// Sends a changelog record, tracking its offset for the commit.
    fn send_changelog(
        &mut self,
        topic: &str,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), CommitError> {
        let tag = self.tag(topic, partition);
        self.send_tagged(Outgoing::changelog(topic, partition, key, value), tag)
    }

    /// Serves delivery reports without blocking; call once per loop.
    fn poll(&self) -> Result<(), CommitError> {
        for producing in self.producers() {
            producing.producer.poll(Duration::ZERO);
        }
        self.check_failures()
    }

    /// Waits for every sent record to be acknowledged.
    fn flush(&mut self) -> Result<(), CommitError> {
        for producing in self.producers() {
            crate::kafka::flush(&producing.producer, FLUSH_TIMEOUT)
                .map_err(|e| CommitError::Flush(e.into()))?;
        }
        self.check_failures()
    }

    /// The offset after the last acknowledged changelog record of
    /// `(topic, partition)` since the last call; `None` if none was sent.
    fn take_changelog_offset(&mut self, topic: &str, partition: i32) -> Option<i64> {
        let tag = self.known_tag(topic, partition)?;
        let mut offsets = self
            .changelog()
            .producer
            .context()
            .offsets
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        offsets.remove(&tag).map(|o| o + 1)
    }

    /// Exactly-once: commits the open transaction with `offsets` in it.
    fn commit_transaction(
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
            let tpl = offset_list(offsets).map_err(|e| CommitError::OffsetList(e.into()))?;
            self.send_offsets(&tpl, &group)?;
        }
        self.records
            .producer
            .commit_transaction(TXN_TIMEOUT)
            .map_err(|source| CommitError::Transaction {
                step: "commit_transaction",
                source: source.into(),
            })?;
        self.in_transaction = false;
        self.check_failures()
    }

    /// Exactly-once: abandons the open transaction (dirty close).
    fn abort_transaction(&mut self) {
        if self.in_transaction {
            if let Err(e) = self.records.producer.abort_transaction(TXN_TIMEOUT) {
                tracing::warn!(error = %e, "aborting the transaction failed");
            }
            self.in_transaction = false;
        }
    }

    /// Records sent since the last [`RecordCollector::committed`].
    fn pending(&self) -> u64 {
        self.pending_since_commit
    }

    fn committed(&mut self) {
        self.pending_since_commit = 0;
    }
}
