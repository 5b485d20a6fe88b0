//! Group membership as the stream threads see it. Weir places its own
//! tasks: one [`member::Membership`](crate::member::Membership) per
//! process joins the classic group, the leader runs Weir's assignor
//! ([`crate::assign`]), and each stream thread is handed the set of tasks it
//! should run ([`streams::StreamsGroup`]). Threads fetch with librdkafka in
//! `assign()` mode and never subscribe.
//!
//! This facade holds the narrow views task code gets: [`SourceConsumer`]
//! (commit, pause, resume, the group metadata a transaction needs) and the
//! [`RebalanceListener`] the task manager implements, and [`MemoryGroup`],
//! the in-memory consumer for offline drivers and tests. Nothing here decides
//! about tasks: the assignor decides where they run, the task manager how
//! they start and stop.

mod memory;
#[cfg(feature = "server")]
mod source;
#[cfg(feature = "server")]
mod stall;
#[cfg(feature = "server")]
mod streams;
#[cfg(feature = "server")]
mod subscription;

pub use memory::MemoryGroup;
#[cfg(feature = "server")]
pub(crate) use source::reset_offsets;
#[cfg(feature = "server")]
pub use source::{GroupSource, SourceContext};
#[cfg(feature = "server")]
pub use stall::{FetchWatch, QuietPartition, STALL_AFTER, stalled};
#[cfg(feature = "server")]
pub use streams::{StreamsGroup, StreamsGroupSetup, ThreadUpdate};

#[cfg(feature = "server")]
use rdkafka::error::KafkaError;
#[cfg(feature = "server")]
use rdkafka::{Offset, TopicPartitionList};

use crate::client::ClientError;

use std::collections::BTreeMap;

use crate::member::{MembershipError, OffsetAndMetadata};

/// A topic and partition.
pub type TopicPartition = (String, i32);

/// What the task manager hears about its thread's share of the assignment.
/// (The offline driver only assigns.)
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub trait RebalanceListener: Send {
    /// Partitions are now this thread's (their fetch has been assigned).
    fn on_assigned(&mut self, partitions: &[TopicPartition], consumer: &dyn SourceConsumer);
    /// Partitions go to another thread or member: commit and close.
    fn on_revoked(&mut self, partitions: &[TopicPartition], consumer: &dyn SourceConsumer);
    /// This process's membership ended without a handshake (session lost,
    /// generation missed): close without committing, another member may
    /// already own the partitions.
    fn on_lost(&mut self, partitions: &[TopicPartition]);
}

/// The group identity a transactional offset commit carries, so that the
/// coordinator fences a zombie of an older generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadata {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// What task code may do with its thread's source consumer.
pub trait SourceConsumer {
    /// Commits `next offset to read` (and its metadata) per partition with
    /// the current generation, synchronously.
    fn commit_offsets(
        &self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<(), MembershipError>;
    /// What the group has committed for `partitions` (`None`: nothing).
    fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>, MembershipError>;
    /// `None` until the process has joined the group.
    fn group_metadata(&self) -> Option<GroupMetadata>;
    fn pause(&self, partitions: &[TopicPartition]) -> Result<(), ClientError>;
    fn resume(&self, partitions: &[TopicPartition]) -> Result<(), ClientError>;
}

#[cfg(feature = "server")]
pub(crate) fn partition_list(partitions: &[TopicPartition]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in partitions {
        tpl.add_partition(topic, *partition);
    }
    tpl
}

#[cfg(feature = "server")]
pub(crate) fn offset_list(
    offsets: &[(TopicPartition, OffsetAndMetadata)],
) -> Result<TopicPartitionList, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), committed) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(committed.offset))?;
        if let Some(mut element) = tpl.find_partition(topic, *partition) {
            element.set_metadata(committed.metadata.as_str());
        }
    }
    Ok(tpl)
}
