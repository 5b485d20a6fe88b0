//! A stream thread's source consumer: librdkafka in `assign()` mode for
//! fetching (partitions added and removed as the thread's tasks change,
//! starting from the group's committed offsets), with offsets committed
//! through the process's group membership so they carry the generation.
//!
//! Must never subscribe: librdkafka would join the group itself, with an
//! assignor that knows nothing of tasks.

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;

use crate::client::ClientError;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{GroupMetadata, SourceConsumer, StreamsGroup, TopicPartition, partition_list};
use std::collections::BTreeMap;

use crate::member::{MembershipError, OffsetAndMetadata};

/// Bounds the ListOffsets round of [`GroupSource::add`].
const RESET_LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The source consumer's context: client errors go to the log (librdkafka
/// retries them itself); there are no rebalance callbacks to serve.
pub struct SourceContext;

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // A partition's end is news for the tasks (see `Batches`).
        if !crate::kafka::is_partition_end(&error) {
            tracing::warn!(%error, reason, "source consumer error");
        }
    }
}

impl ConsumerContext for SourceContext {}

/// The consumer of one stream thread and the group it commits to.
pub struct GroupSource<'a, C: ConsumerContext> {
    pub consumer: &'a BaseConsumer<C>,
    pub group: &'a StreamsGroup,
    /// Where a partition nothing was committed for starts
    /// (`auto.offset.reset`, as a logical offset); `None` leaves it to
    /// librdkafka (`none` then fails the partition, as Kafka's does).
    pub reset: Option<Offset>,
}

impl<C: ConsumerContext> GroupSource<'_, C> {
    /// Starts fetching `partitions` from the group's committed offsets
    /// (`auto.offset.reset` where none is committed); returns where each
    /// starts (a logical offset where librdkafka resolves it).
    ///
    /// librdkafka is handed offsets, not the logical "committed" or
    /// "earliest": resolving those itself, a new consumer fetched nothing
    /// for half a second to a second (measured with `weir-bench`). The
    /// committed offsets are read through this process's membership
    /// (stable offsets only, as exactly-once needs), the reset ones by one
    /// ListOffsets round. Where either read fails, librdkafka resolves the
    /// offset itself, as before.
    pub fn add(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Offset)>, KafkaError> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let committed = match self.group.membership().fetch_committed(partitions) {
            Ok(committed) => Some(committed),
            Err(error) => {
                tracing::warn!(%error, "cannot read the committed offsets; the consumer will");
                None
            }
        };
        // Per partition: `None` unknown (the read failed), `Some(None)`
        // nothing committed.
        let committed_of =
            |tp: &TopicPartition| committed.as_ref().map(|c| c.get(tp).cloned().flatten());
        let unset: Vec<&TopicPartition> = partitions
            .iter()
            .filter(|tp| matches!(committed_of(tp), Some(None)))
            .collect();
        let reset = match self.reset {
            Some(policy) => reset_offsets(self.consumer, policy, &unset),
            None => BTreeMap::new(),
        };
        let mut tpl = TopicPartitionList::new();
        let mut starts = Vec::with_capacity(partitions.len());
        for tp in partitions {
            let offset = match committed_of(tp) {
                Some(Some(c)) => Offset::Offset(c.offset),
                // Not resolved above: librdkafka resolves the policy.
                Some(None) => reset
                    .get(tp)
                    .map_or(self.reset.unwrap_or(Offset::Stored), |o| Offset::Offset(*o)),
                // The committed offsets are unknown: librdkafka reads them.
                None => Offset::Stored,
            };
            tpl.add_partition_offset(&tp.0, tp.1, offset)?;
            starts.push((tp.clone(), offset));
        }
        self.consumer.incremental_assign(&tpl)?;
        Ok(starts)
    }

    /// Stops fetching `partitions`; records already polled for them are
    /// dropped by the task manager.
    pub fn remove(&self, partitions: &[TopicPartition]) -> Result<(), KafkaError> {
        if partitions.is_empty() {
            return Ok(());
        }
        self.consumer
            .incremental_unassign(&partition_list(partitions))
    }
}

impl<C: ConsumerContext> SourceConsumer for GroupSource<'_, C> {
    fn commit_offsets(
        &self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<(), MembershipError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let offsets: Vec<(String, i32, OffsetAndMetadata)> = offsets
            .iter()
            .map(|((topic, partition), committed)| (topic.clone(), *partition, committed.clone()))
            .collect();
        self.group.membership().commit_with_metadata(&offsets)
    }

    fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>, MembershipError> {
        self.group.membership().fetch_committed(partitions)
    }

    fn group_metadata(&self) -> Option<GroupMetadata> {
        self.group.metadata()
    }

    fn pause(&self, partitions: &[TopicPartition]) -> Result<(), ClientError> {
        if partitions.is_empty() {
            return Ok(());
        }
        Ok(Consumer::pause(self.consumer, &partition_list(partitions))?)
    }

    fn resume(&self, partitions: &[TopicPartition]) -> Result<(), ClientError> {
        if partitions.is_empty() {
            return Ok(());
        }
        Ok(Consumer::resume(
            self.consumer,
            &partition_list(partitions),
        )?)
    }
}

/// Where `reset` (a logical offset) starts each of `partitions`, as
/// offsets, by one ListOffsets round. Given the logical offset instead,
/// librdkafka resolves it itself and a new consumer fetched nothing for
/// half a second to a second. Partitions it cannot resolve now are left
/// out; each caller says what then.
pub(crate) fn reset_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    reset: Offset,
    partitions: &[&TopicPartition],
) -> BTreeMap<TopicPartition, i64> {
    let mut out = BTreeMap::new();
    if partitions.is_empty() {
        return out;
    }
    let mut times = TopicPartitionList::new();
    for (topic, partition) in partitions.iter().copied() {
        // As times, the logical offsets are ListOffsets' special times for
        // the earliest and the latest offset.
        if times
            .add_partition_offset(topic, *partition, reset)
            .is_err()
        {
            return out;
        }
    }
    match consumer.offsets_for_times(times, RESET_LOOKUP_TIMEOUT) {
        Ok(found) => {
            for e in found.elements() {
                if let (Ok(()), Offset::Offset(o)) = (e.error(), e.offset()) {
                    out.insert((e.topic().to_string(), e.partition()), o);
                }
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot look up where auto.offset.reset starts");
        }
    }
    out
}
