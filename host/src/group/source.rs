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

/// The source consumer's context: client errors go to the log (librdkafka
/// retries them itself); there are no rebalance callbacks to serve.
pub struct SourceContext;

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "source consumer error");
    }
}

impl ConsumerContext for SourceContext {}

/// The consumer of one stream thread and the group it commits to.
pub struct GroupSource<'a, C: ConsumerContext> {
    pub consumer: &'a BaseConsumer<C>,
    pub group: &'a StreamsGroup,
}

impl<C: ConsumerContext> GroupSource<'_, C> {
    /// Starts fetching `partitions` from the group's committed offsets
    /// (`auto.offset.reset` where none is committed).
    pub fn add(&self, partitions: &[TopicPartition]) -> Result<(), KafkaError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in partitions {
            tpl.add_partition_offset(topic, *partition, Offset::Stored)?;
        }
        self.consumer.incremental_assign(&tpl)
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
