//! A [`SourceConsumer`] without a broker: the group's committed offsets in
//! a [`MemoryLog`] (where a [`crate::commit::MemoryCollector`]'s committed
//! transactions put them too), a fixed membership, and commit refusals
//! injected one at a time (as a coordinator does mid-rebalance). For unit
//! tests of the commit cycle and for offline drivers; it never fetches
//! anything.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::client::ClientError;

use super::{GroupMetadata, SourceConsumer, TopicPartition};
use crate::commit::MemoryLog;
use crate::member::{MembershipError, OffsetAndMetadata};

#[derive(Default)]
pub struct MemoryGroup {
    metadata: Option<GroupMetadata>,
    /// Holds the committed offsets, under the group id.
    log: MemoryLog,
    refuse_next: Mutex<Option<MembershipError>>,
    /// Whether the next resume of partitions fails.
    refuse_resume: std::sync::atomic::AtomicBool,
}

impl MemoryGroup {
    /// A group this process has joined as its only member, committing
    /// into a log of its own.
    pub fn joined(group_id: &str) -> Self {
        Self::joined_on(&MemoryLog::default(), group_id)
    }

    /// As [`MemoryGroup::joined`], with its offsets in `log`: what
    /// transactions committed through collectors on `log` are seen here.
    pub fn joined_on(log: &MemoryLog, group_id: &str) -> Self {
        MemoryGroup {
            metadata: Some(GroupMetadata {
                group_id: group_id.to_string(),
                generation: 1,
                member_id: format!("{group_id}-member-1"),
                group_instance_id: None,
            }),
            log: log.clone(),
            refuse_next: Mutex::default(),
            refuse_resume: Default::default(),
        }
    }

    fn group_id(&self) -> &str {
        self.metadata.as_ref().map_or("", |m| m.group_id.as_str())
    }

    /// The next offset commit is refused with `error`.
    #[cfg(test)]
    pub fn refuse_next_commit(&self, error: MembershipError) {
        *self.refuse_next.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
    }

    /// The next resume of partitions fails (as a consumer's can).
    #[cfg(test)]
    pub fn refuse_next_resume(&self) {
        (self.refuse_resume).store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every offset committed so far, the latest per partition.
    pub fn committed_offsets(&self) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        self.log.group_offsets(self.group_id())
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
        self.log.commit_offsets(self.group_id(), offsets);
        Ok(())
    }

    fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>, MembershipError> {
        let committed = self.committed_offsets();
        Ok(partitions
            .iter()
            .map(|tp| (tp.clone(), committed.get(tp).cloned()))
            .collect())
    }

    fn group_metadata(&self) -> Option<GroupMetadata> {
        self.metadata.clone()
    }

    fn pause(&self, _: &[TopicPartition]) -> Result<(), ClientError> {
        Ok(())
    }

    fn resume(&self, _: &[TopicPartition]) -> Result<(), ClientError> {
        if (self.refuse_resume).swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(ClientError::new("resume refused (test)"));
        }
        Ok(())
    }
}
