//! A [`SourceConsumer`] without a broker: the group's committed offsets in
//! memory, a fixed membership, and commit refusals injected one at a time
//! (as a coordinator does mid-rebalance). For unit tests of the commit
//! cycle and for offline drivers; it never fetches anything.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rdkafka::error::KafkaError;

use super::{GroupMetadata, SourceConsumer, TopicPartition};
use crate::member::{MembershipError, OffsetAndMetadata};

#[derive(Default)]
pub struct MemoryGroup {
    metadata: Option<GroupMetadata>,
    committed: Mutex<BTreeMap<TopicPartition, OffsetAndMetadata>>,
    refuse_next: Mutex<Option<MembershipError>>,
}

impl MemoryGroup {
    /// A group this process has joined as its only member.
    pub fn joined(group_id: &str) -> Self {
        MemoryGroup {
            metadata: Some(GroupMetadata {
                group_id: group_id.to_string(),
                generation: 1,
                member_id: format!("{group_id}-member-1"),
                group_instance_id: None,
            }),
            ..MemoryGroup::default()
        }
    }

    /// The next offset commit is refused with `error`.
    #[cfg(test)]
    pub fn refuse_next_commit(&self, error: MembershipError) {
        *self.refuse_next.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
    }

    /// Every offset committed so far, the latest per partition.
    pub fn committed_offsets(&self) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        self.committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl SourceConsumer for MemoryGroup {
    fn commit_offsets(
        &self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<(), MembershipError> {
        if let Some(error) = self
            .refuse_next
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            return Err(error);
        }
        let mut committed = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        for (tp, offset) in offsets {
            committed.insert(tp.clone(), offset.clone());
        }
        Ok(())
    }

    fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>, MembershipError> {
        let committed = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        Ok(partitions
            .iter()
            .map(|tp| (tp.clone(), committed.get(tp).cloned()))
            .collect())
    }

    fn group_metadata(&self) -> Option<GroupMetadata> {
        self.metadata.clone()
    }

    fn pause(&self, _: &[TopicPartition]) -> Result<(), KafkaError> {
        Ok(())
    }

    fn resume(&self, _: &[TopicPartition]) -> Result<(), KafkaError> {
        Ok(())
    }
}
