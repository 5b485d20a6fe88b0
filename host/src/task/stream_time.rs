//! A task's stream time across owners. It is committed as the metadata of
//! the task's source offsets and read back when the task starts again
//! (after a restart, a rebalance, a failover), so stream-time punctuations
//! and window closing go on from where they were instead of from -1.
//! Kafka Streams commits partition time the same way.
//!
//! Must never fail a task: metadata it cannot read (written by another
//! tool, or by a future format) counts as none.

use std::collections::BTreeMap;

use crate::group::TopicPartition;
use crate::member::OffsetAndMetadata;
use crate::topology::TaskId;

const PREFIX: &str = "weir1:st=";

/// The metadata committed with a task's offsets.
pub(crate) fn encode(stream_time: i64) -> String {
    format!("{PREFIX}{stream_time}")
}

/// The stream time in `metadata`, if it is Weir's and not "none yet".
pub(crate) fn decode(metadata: &str) -> Option<i64> {
    metadata
        .strip_prefix(PREFIX)?
        .parse()
        .ok()
        .filter(|t: &i64| *t >= 0)
}

/// The stream time each task resumes from: the newest committed for any
/// of its partitions.
pub(crate) fn per_task(
    offsets: &BTreeMap<TopicPartition, Option<OffsetAndMetadata>>,
) -> BTreeMap<TaskId, i64> {
    let mut out: BTreeMap<TaskId, i64> = BTreeMap::new();
    for ((_, partition), committed) in offsets {
        if let Some(time) = committed.as_ref().and_then(|c| decode(&c.metadata)) {
            let resumed = out.entry(TaskId::for_partition(*partition)).or_insert(time);
            *resumed = (*resumed).max(time);
        }
    }
    out
}

/// The stream time one task resumes from, given its partitions' offsets.
#[cfg(test)]
fn committed(offsets: &BTreeMap<TopicPartition, Option<OffsetAndMetadata>>) -> Option<i64> {
    per_task(offsets).into_values().max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_ignores_what_it_cannot_read() {
        assert_eq!(decode(&encode(1_700_000_000_123)), Some(1_700_000_000_123));
        assert_eq!(decode(&encode(-1)), None, "no stream time yet");
        for foreign in ["", "AQAAAY", "weir1:st=", "weir1:st=x", "weir9:st=5"] {
            assert_eq!(decode(foreign), None, "{foreign:?}");
        }
    }

    #[test]
    fn a_task_resumes_from_the_newest_stream_time_of_its_partitions() {
        let at = |metadata: &str| {
            Some(OffsetAndMetadata {
                offset: 10,
                metadata: metadata.into(),
            })
        };
        let mut offsets = BTreeMap::new();
        offsets.insert(("a".to_string(), 0), at(&encode(500)));
        offsets.insert(("b".to_string(), 0), at(&encode(900)));
        offsets.insert(("c".to_string(), 0), at("not ours"));
        offsets.insert(("d".to_string(), 0), None);
        assert_eq!(committed(&offsets), Some(900));
        offsets.insert(("a".to_string(), 1), at(&encode(100)));
        let tasks = per_task(&offsets);
        assert_eq!(tasks.get(&TaskId::for_partition(0)), Some(&900));
        assert_eq!(tasks.get(&TaskId::for_partition(1)), Some(&100));
        offsets.clear();
        offsets.insert(("d".to_string(), 0), None);
        assert_eq!(committed(&offsets), None);
    }
}
