//! A task's part in its thread's commit: the changelog records of its
//! stores' pending writes, the source offsets (with the stream time) it
//! consumed, and applying the writes to its stores once the commit is
//! durable. Must never apply a store write before its changelog record is
//! acknowledged.

use crate::commit::{Collector, CommitError, CommitParticipant};
use crate::group::TopicPartition;
use crate::member::OffsetAndMetadata;

use super::StreamTask;
use crate::task::stream_time;

impl CommitParticipant for StreamTask {
    fn send_changelog(&mut self, collector: &mut dyn Collector) -> Result<u64, CommitError> {
        let mut sent = 0;
        let partition = self.id.partition;
        for (i, store) in self.instance.task().stores.iter().enumerate() {
            let Some(topic) = self.written_changelog(i) else {
                continue;
            };
            for (key, value) in store.pending_writes() {
                collector.send_changelog(topic, partition, key, value)?;
                sent += 1;
            }
        }
        Ok(sent)
    }

    fn consumed_offsets(&self) -> Vec<(TopicPartition, OffsetAndMetadata)> {
        if !self.uncommitted {
            return Vec::new();
        }
        let metadata = stream_time::encode(self.instance.task().stream_time);
        self.consumed
            .iter()
            .map(|(topic, offset)| {
                let committed = OffsetAndMetadata {
                    offset: *offset,
                    metadata: metadata.clone(),
                };
                ((topic.clone(), self.id.partition), committed)
            })
            .collect()
    }

    fn apply_store_writes(&mut self, collector: &mut dyn Collector) -> Result<(), CommitError> {
        let partition = self.id.partition;
        for i in 0..self.instance.task().stores.len() {
            let offset = match (self.written_changelog(i), self.changelog(i)) {
                // Restored from its source: it holds what was consumed.
                (None, Some(source)) => self.consumed.get(source).copied(),
                (Some(topic), _) => {
                    let offset = collector.take_changelog_offset(topic, partition);
                    if offset.is_none() && self.instance.task().stores[i].has_pending_writes() {
                        return Err(CommitError::MissingChangelogOffset {
                            topic: topic.to_string(),
                            partition,
                        });
                    }
                    offset
                }
                (None, None) => None,
            };
            self.instance.task_mut().stores[i].commit(offset)?;
        }
        Ok(())
    }

    fn offsets_committed(&mut self) {
        self.uncommitted = false;
    }
}
