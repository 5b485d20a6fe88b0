//! The commit protocols over [`MemoryCollector`] and a scripted group: the
//! order of flush, store apply and offset commit, and what each failure
//! leaves behind. No broker.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::*;
use crate::group::MemoryGroup;
use crate::member::MembershipError;
use crate::topology::TaskId;

const CHANGELOG: &str = "app-counts-changelog";
const OUTPUT: &str = "out";

/// A task with buffered store writes and a consumed input offset.
struct Task {
    partition: i32,
    writes: Vec<(&'static str, Option<&'static str>)>,
    consumed: i64,
    /// What `apply_store_writes` was handed: the changelog offset reached.
    applied: Option<Option<i64>>,
    offsets_committed: bool,
}

impl Task {
    fn new(partition: i32, writes: Vec<(&'static str, Option<&'static str>)>) -> Self {
        Task {
            partition,
            writes,
            consumed: 10 + i64::from(partition),
            applied: None,
            offsets_committed: false,
        }
    }
}

impl CommitParticipant for Task {
    fn send_changelog(&mut self, collector: &mut dyn Collector) -> Result<u64, CommitError> {
        for (key, value) in &self.writes {
            collector.send_changelog(
                CHANGELOG,
                self.partition,
                key.as_bytes(),
                value.map(str::as_bytes),
            )?;
        }
        Ok(self.writes.len() as u64)
    }

    fn consumed_offsets(&self) -> Vec<(TopicPartition, OffsetAndMetadata)> {
        vec![(
            ("in".to_string(), self.partition),
            OffsetAndMetadata {
                offset: self.consumed,
                metadata: String::new(),
            },
        )]
    }

    fn apply_store_writes(&mut self, collector: &mut dyn Collector) -> Result<(), CommitError> {
        self.applied = Some(collector.take_changelog_offset(CHANGELOG, self.partition));
        Ok(())
    }

    fn offsets_committed(&mut self) {
        self.offsets_committed = true;
    }
}

fn refused(code: i16) -> MembershipError {
    MembershipError::Broker {
        group: "app".into(),
        coordinator: "b-1".into(),
        api: "OffsetCommit",
        code,
        name: "test".into(),
        message: None,
    }
}

fn commit(
    protocol: CommitProtocol,
    tasks: &mut [Task],
    collector: &mut MemoryCollector,
    group: &MemoryGroup,
) -> Result<CommitStats, CommitError> {
    let mut participants: Vec<&mut dyn CommitParticipant> = tasks
        .iter_mut()
        .map(|t| t as &mut dyn CommitParticipant)
        .collect();
    protocol.commit(&mut participants, collector, group)
}

fn output(collector: &mut MemoryCollector, value: &str) {
    collector
        .send(Outgoing {
            topic: OUTPUT,
            partition: Some(0),
            key: Some(b"k"),
            value: Some(value.as_bytes()),
            headers: Vec::new(),
            timestamp: Some(1),
            task: TaskId::for_partition(0),
        })
        .unwrap();
}

fn flush_failure() -> CommitError {
    CommitError::Flush(KafkaError::Flush(RDKafkaErrorCode::MessageTimedOut).into())
}

#[test]
fn at_least_once_applies_stores_at_the_acknowledged_changelog_offset_then_commits_offsets() {
    let mut collector = MemoryCollector::new(ProcessingGuarantee::AtLeastOnce);
    let group = MemoryGroup::joined("app");
    let mut tasks = vec![
        Task::new(0, vec![("a", Some("1")), ("b", Some("2"))]),
        Task::new(1, vec![]),
    ];
    output(&mut collector, "x");
    let stats = commit(
        CommitProtocol::AtLeastOnce,
        &mut tasks,
        &mut collector,
        &group,
    )
    .unwrap();
    assert_eq!(stats.changelog_records, 2);
    assert_eq!(tasks[0].applied, Some(Some(2)), "offset after the last ack");
    assert_eq!(tasks[1].applied, Some(None), "no changelog record sent");
    assert!(tasks.iter().all(|t| t.offsets_committed));
    let committed = group.committed_offsets();
    assert_eq!(
        committed
            .iter()
            .map(|(tp, o)| (tp.1, o.offset))
            .collect::<Vec<_>>(),
        vec![(0, 10), (1, 11)]
    );
    assert_eq!(collector.records(OUTPUT).len(), 1);
    assert_eq!(collector.records(CHANGELOG).len(), 2);
    assert_eq!(collector.pending(), 0);
}

#[test]
fn a_failed_flush_applies_no_store_and_commits_no_offset() {
    for protocol in [CommitProtocol::AtLeastOnce, CommitProtocol::ExactlyOnce] {
        let guarantee = match protocol {
            CommitProtocol::AtLeastOnce => ProcessingGuarantee::AtLeastOnce,
            CommitProtocol::ExactlyOnce => ProcessingGuarantee::ExactlyOnceV2,
        };
        let mut collector = MemoryCollector::new(guarantee);
        let group = MemoryGroup::joined("app");
        let mut tasks = vec![Task::new(0, vec![("a", Some("1"))])];
        collector.faults().fail_next_flush(flush_failure());
        let error = commit(protocol, &mut tasks, &mut collector, &group).unwrap_err();
        assert!(
            matches!(error, CommitError::Flush(_)),
            "{protocol:?}: {error}"
        );
        assert_eq!(tasks[0].applied, None, "{protocol:?}");
        assert!(!tasks[0].offsets_committed, "{protocol:?}");
        assert!(group.committed_offsets().is_empty(), "{protocol:?}");
        assert!(collector.transaction_offsets().is_empty(), "{protocol:?}");
        assert!(collector.records(CHANGELOG).is_empty(), "{protocol:?}");
    }
}

#[test]
fn a_commit_refused_by_a_rebalance_keeps_offsets_pending_under_at_least_once() {
    let mut collector = MemoryCollector::new(ProcessingGuarantee::AtLeastOnce);
    let group = MemoryGroup::joined("app");
    group.refuse_next_commit(refused(27)); // REBALANCE_IN_PROGRESS
    let mut tasks = vec![Task::new(0, vec![("a", Some("1"))])];
    commit(
        CommitProtocol::AtLeastOnce,
        &mut tasks,
        &mut collector,
        &group,
    )
    .unwrap();
    // State may run ahead of the committed offsets under at-least-once;
    // the offsets go with the next commit.
    assert_eq!(tasks[0].applied, Some(Some(1)));
    assert!(!tasks[0].offsets_committed);

    let mut tasks = vec![Task::new(0, vec![])];
    commit(
        CommitProtocol::AtLeastOnce,
        &mut tasks,
        &mut collector,
        &group,
    )
    .unwrap();
    assert!(tasks[0].offsets_committed);
    assert_eq!(group.committed_offsets().len(), 1);
}

#[test]
fn a_commit_refused_for_good_is_an_error() {
    let mut collector = MemoryCollector::new(ProcessingGuarantee::AtLeastOnce);
    let group = MemoryGroup::joined("app");
    group.refuse_next_commit(refused(30)); // GROUP_AUTHORIZATION_FAILED
    let mut tasks = vec![Task::new(0, vec![])];
    let error = commit(
        CommitProtocol::AtLeastOnce,
        &mut tasks,
        &mut collector,
        &group,
    )
    .unwrap_err();
    assert!(matches!(error, CommitError::Offsets(_)), "{error}");
    assert!(!tasks[0].offsets_committed);
}

#[test]
fn exactly_once_commits_offsets_in_the_transaction_and_applies_stores_after_it() {
    let mut collector = MemoryCollector::new(ProcessingGuarantee::ExactlyOnceV2);
    let group = MemoryGroup::joined("app");
    let mut tasks = vec![Task::new(2, vec![("a", Some("1"))])];
    output(&mut collector, "x");
    commit(
        CommitProtocol::ExactlyOnce,
        &mut tasks,
        &mut collector,
        &group,
    )
    .unwrap();
    assert!(
        group.committed_offsets().is_empty(),
        "not through the group"
    );
    let offsets = collector.transaction_offsets();
    assert_eq!(offsets[&("in".to_string(), 2)].offset, 12);
    assert_eq!(tasks[0].applied, Some(Some(1)));
    assert!(tasks[0].offsets_committed);
    assert!(!collector.in_transaction());
    assert_eq!(collector.records(OUTPUT).len(), 1);
}

#[test]
fn a_failed_transaction_commit_applies_no_store_and_an_abort_hides_its_records() {
    let mut collector = MemoryCollector::new(ProcessingGuarantee::ExactlyOnceV2);
    let group = MemoryGroup::joined("app");
    let mut tasks = vec![Task::new(0, vec![("a", Some("1"))])];
    output(&mut collector, "x");
    collector.faults().fail_next_commit(CommitError::Produce {
        topic: OUTPUT.into(),
        reason: "fenced".into(),
    });
    let error = commit(
        CommitProtocol::ExactlyOnce,
        &mut tasks,
        &mut collector,
        &group,
    )
    .unwrap_err();
    assert!(matches!(error, CommitError::Produce { .. }), "{error}");
    assert_eq!(tasks[0].applied, None);
    assert!(!tasks[0].offsets_committed);
    // The task manager aborts on the way to starting from the last commit.
    collector.abort_transaction();
    assert!(collector.records(OUTPUT).is_empty());
    assert!(collector.records(CHANGELOG).is_empty());
    assert!(collector.transaction_offsets().is_empty());
}

#[test]
fn exactly_once_before_joining_the_group_cannot_commit_offsets() {
    let mut collector = MemoryCollector::new(ProcessingGuarantee::ExactlyOnceV2);
    let mut tasks = vec![Task::new(0, vec![])];
    let error = commit(
        CommitProtocol::ExactlyOnce,
        &mut tasks,
        &mut collector,
        &MemoryGroup::default(),
    )
    .unwrap_err();
    assert!(matches!(error, CommitError::NoGroupMetadata), "{error}");
}

#[test]
fn only_exactly_once_binds_a_thread_s_tasks_together() {
    assert!(!CommitProtocol::AtLeastOnce.binds_thread());
    assert!(CommitProtocol::ExactlyOnce.binds_thread());
    assert!(CommitProtocol::ExactlyOnce.replaces_producer_on_reset());
    assert_eq!(
        CommitProtocol::of(ProcessingGuarantee::ExactlyOnceV2),
        CommitProtocol::ExactlyOnce
    );
}

#[test]
fn records_without_a_partition_are_spread_by_key_as_kafka_does() {
    let mut collector =
        MemoryCollector::new(ProcessingGuarantee::AtLeastOnce).with_partitions(OUTPUT, 4);
    for key in ["a", "b", "c", "d", "e"] {
        collector
            .send(Outgoing {
                topic: OUTPUT,
                partition: None,
                key: Some(key.as_bytes()),
                value: None,
                headers: vec![("h", b"v")],
                timestamp: None,
                task: TaskId::for_partition(0),
            })
            .unwrap();
    }
    collector.flush().unwrap();
    let records = collector.records(OUTPUT);
    let mut used: Vec<i32> = records.iter().map(|r| r.partition).collect();
    used.dedup();
    assert!(used.len() > 1, "all on one partition: {used:?}");
    for record in records {
        let key = record.key.as_deref().unwrap();
        assert_eq!(
            record.partition,
            crate::partitioner::partition_for_key(key, 4)
        );
        assert_eq!(record.headers, vec![("h".to_string(), b"v".to_vec())]);
    }
}
