//! Consumer-group membership: librdkafka's rebalance callbacks turned into
//! "partitions assigned / revoked / lost" calls on a [`RebalanceListener`],
//! and the narrow [`SourceConsumer`] view of the consumer that task code may
//! use (commit, pause, resume, group metadata).
//!
//! Callbacks run on the stream thread inside `poll`, so the listener is
//! never entered concurrently with the thread's own work. Must not decide
//! anything about tasks: that is the listener's job.

use std::sync::{Arc, Mutex};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance,
};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// A topic and partition.
pub type TopicPartition = (String, i32);

/// What the task manager hears about membership.
pub trait RebalanceListener: Send {
    /// Partitions are now ours (after the assignment took effect).
    fn on_assigned(&mut self, partitions: &[TopicPartition], consumer: &dyn SourceConsumer);
    /// Partitions are about to go to another member: commit and close.
    fn on_revoked(&mut self, partitions: &[TopicPartition], consumer: &dyn SourceConsumer);
    /// Partitions were taken without a handshake (session lost): close
    /// without committing, another member may already own them.
    fn on_lost(&mut self, partitions: &[TopicPartition]);
    /// A fatal client error (e.g. fenced by another instance with the same
    /// `group.instance.id`).
    fn on_fatal(&mut self, error: String);
}

/// What task code may do with the group consumer.
pub trait SourceConsumer {
    /// Commits `next offset to read` per partition, synchronously.
    fn commit_offsets(&self, offsets: &[(TopicPartition, i64)]) -> Result<(), KafkaError>;
    fn group_metadata(&self) -> Option<ConsumerGroupMetadata>;
    fn pause(&self, partitions: &[TopicPartition]) -> Result<(), KafkaError>;
    fn resume(&self, partitions: &[TopicPartition]) -> Result<(), KafkaError>;
}

pub(crate) fn partition_list(partitions: &[TopicPartition]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in partitions {
        tpl.add_partition(topic, *partition);
    }
    tpl
}

pub(crate) fn offset_list(
    offsets: &[(TopicPartition, i64)],
) -> Result<TopicPartitionList, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    Ok(tpl)
}

impl<C: ConsumerContext> SourceConsumer for BaseConsumer<C> {
    fn commit_offsets(&self, offsets: &[(TopicPartition, i64)]) -> Result<(), KafkaError> {
        if offsets.is_empty() {
            return Ok(());
        }
        self.commit(&offset_list(offsets)?, CommitMode::Sync)
    }

    fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        Consumer::group_metadata(self)
    }

    fn pause(&self, partitions: &[TopicPartition]) -> Result<(), KafkaError> {
        if partitions.is_empty() {
            return Ok(());
        }
        Consumer::pause(self, &partition_list(partitions))
    }

    fn resume(&self, partitions: &[TopicPartition]) -> Result<(), KafkaError> {
        if partitions.is_empty() {
            return Ok(());
        }
        Consumer::resume(self, &partition_list(partitions))
    }
}

/// The consumer context that forwards rebalances to a listener.
pub struct GroupContext<L> {
    listener: Arc<Mutex<L>>,
}

impl<L> GroupContext<L> {
    pub fn new(listener: Arc<Mutex<L>>) -> Self {
        GroupContext { listener }
    }

    fn listener(&self) -> std::sync::MutexGuard<'_, L> {
        self.listener.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl<L: RebalanceListener + 'static> ClientContext for GroupContext<L> {
    fn error(&self, error: KafkaError, reason: &str) {
        let fatal = matches!(
            error.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::Fatal)
        ) || reason.contains("fenced");
        if fatal {
            self.listener().on_fatal(format!("{error}: {reason}"));
        } else {
            tracing::warn!(%error, reason, "kafka client error");
        }
    }
}

impl<L: RebalanceListener + 'static> ConsumerContext for GroupContext<L> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let parts = partitions(tpl);
                if consumer.assignment_lost() {
                    tracing::warn!(partitions = ?parts, "partitions lost");
                    self.listener().on_lost(&parts);
                } else {
                    tracing::info!(partitions = ?parts, "partitions revoked");
                    self.listener().on_revoked(&parts, consumer);
                }
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts = partitions(tpl);
            tracing::info!(partitions = ?parts, "partitions assigned");
            self.listener().on_assigned(&parts, consumer);
        }
    }
}
