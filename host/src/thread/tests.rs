//! The stream thread's loop without a broker: a [`MemoryFetcher`] reading
//! source partitions from a [`MemoryLog`] (from the group's committed
//! offsets, as the Kafka fetcher does), an [`Assignments`] group handing
//! out tasks, and the task manager over the same log. Each test drives the
//! loop one pass at a time and checks what Kafka would then hold: outputs a
//! `read_committed` reader sees, committed offsets, fetched partitions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::{Batches, BatchesBuilder, Fetcher, StreamThread, ThreadGroup};
use crate::commit::{
    Collector, CommitError, Faults, MemoryCollector, MemoryLog, Outgoing, RecordSink,
};
use crate::config::ProcessingGuarantee;
use crate::group::{GroupMetadata, MemoryGroup, SourceConsumer, ThreadUpdate, TopicPartition};
use crate::lifecycle::Lifecycle;
use crate::member::{MembershipError, OffsetAndMetadata};
use crate::release::{Release, Target};
use crate::runtime::bindings::IncomingRecord;
use crate::task::fixtures::{committed, config, counter, lenient_counter, manager, outputs, plan};
use crate::topics::TopicPlan;
use crate::topology::TaskId;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the fetcher does, shared with the test.
#[derive(Default)]
struct Fetching {
    /// Partitions fetched and the offset read next.
    positions: BTreeMap<TopicPartition, i64>,
    paused: BTreeSet<TopicPartition>,
    /// Every partition ever added, in order.
    added: Vec<TopicPartition>,
    closed: bool,
}

/// A source consumer over a [`MemoryLog`], committing to a [`MemoryGroup`].
struct MemoryFetcher {
    log: MemoryLog,
    group: Arc<MemoryGroup>,
    state: Arc<Mutex<Fetching>>,
}

impl SourceConsumer for MemoryFetcher {
    fn commit_offsets(
        &self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<(), MembershipError> {
        self.group.commit_offsets(offsets)
    }

    fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>, MembershipError> {
        self.group.committed(partitions)
    }

    fn group_metadata(&self) -> Option<GroupMetadata> {
        self.group.group_metadata()
    }

    fn pause(&self, partitions: &[TopicPartition]) -> Result<(), crate::client::ClientError> {
        lock(&self.state).paused.extend(partitions.iter().cloned());
        Ok(())
    }

    fn resume(&self, partitions: &[TopicPartition]) -> Result<(), crate::client::ClientError> {
        let mut state = lock(&self.state);
        for tp in partitions {
            state.paused.remove(tp);
        }
        Ok(())
    }
}

impl Fetcher for MemoryFetcher {
    fn add(&mut self, partitions: &[TopicPartition]) -> Result<(), String> {
        let committed = self
            .group
            .committed(partitions)
            .map_err(|e| e.to_string())?;
        let mut state = lock(&self.state);
        for tp in partitions {
            let from = committed.get(tp).cloned().flatten().map_or(0, |o| o.offset);
            state.positions.insert(tp.clone(), from);
            state.added.push(tp.clone());
        }
        Ok(())
    }

    fn remove(&mut self, partitions: &[TopicPartition]) -> Result<(), String> {
        let mut state = lock(&self.state);
        for tp in partitions {
            state.positions.remove(tp);
            state.paused.remove(tp);
        }
        Ok(())
    }

    fn poll(&mut self, _wait: Duration, max: usize, plan: &TopicPlan) -> Batches {
        let mut batches = BatchesBuilder::new(plan);
        let mut state = lock(&self.state);
        let fetching: Vec<TopicPartition> = state
            .positions
            .keys()
            .filter(|tp| !state.paused.contains(*tp))
            .cloned()
            .collect();
        for (topic, partition) in fetching {
            let position = state
                .positions
                .get_mut(&(topic.clone(), partition))
                .unwrap();
            while batches.count() < max {
                let Some(r) = self.log.next_record(&topic, partition, *position) else {
                    break;
                };
                *position = r.offset + 1;
                batches.push(&topic, partition, |source| IncomingRecord {
                    source: source.to_string(),
                    key: r.key.clone(),
                    value: r.value.clone(),
                    headers: Vec::new(),
                    timestamp: r.timestamp.unwrap_or(0),
                    topic: topic.clone(),
                    partition,
                    offset: r.offset,
                });
            }
        }
        batches.finish()
    }

    fn close(self: Box<Self>) {
        lock(&self.state).closed = true;
    }
}

/// The group's targets for thread 0, set by the test, and what the thread
/// reported back.
#[derive(Default)]
struct Assignments {
    state: Mutex<AssignmentState>,
}

#[derive(Default)]
struct AssignmentState {
    epoch: u64,
    lost_epoch: u64,
    active: BTreeSet<TaskId>,
    applied: Option<(u64, BTreeSet<TaskId>)>,
    stopped: bool,
}

fn tasks(ps: &[i32]) -> BTreeSet<TaskId> {
    ps.iter().map(|p| TaskId::for_partition(*p)).collect()
}

impl Assignments {
    fn assign(&self, ps: &[i32]) {
        let mut state = lock(&self.state);
        state.epoch += 1;
        state.active = tasks(ps);
    }

    /// Membership lost: nothing is this thread's any more.
    fn lose(&self) {
        let mut state = lock(&self.state);
        state.epoch += 1;
        state.lost_epoch = state.epoch;
        state.active.clear();
    }

    fn applied(&self) -> Option<(u64, BTreeSet<TaskId>)> {
        lock(&self.state).applied.clone()
    }
}

impl ThreadGroup for Assignments {
    fn update_for(&self, _thread: usize, seen: u64) -> Option<ThreadUpdate> {
        let state = lock(&self.state);
        (state.epoch > seen).then(|| ThreadUpdate {
            epoch: state.epoch,
            active: state.active.clone(),
            standby: BTreeSet::new(),
            lost: state.lost_epoch > seen,
        })
    }

    fn applied(&self, _thread: usize, epoch: u64, owned: BTreeSet<TaskId>) {
        lock(&self.state).applied = Some((epoch, owned));
    }

    fn report_standbys(&self, _thread: usize, _offset_sums: BTreeMap<TaskId, i64>) {}

    fn thread_stopped(&self, _thread: usize) {
        lock(&self.state).stopped = true;
    }
}

/// One stream thread and the cluster around it.
struct Harness {
    thread: StreamThread,
    log: MemoryLog,
    group: Arc<MemoryGroup>,
    fetching: Arc<Mutex<Fetching>>,
    assignments: Arc<Assignments>,
    target: Arc<Target>,
    lifecycle: Arc<Lifecycle>,
    faults: Faults,
}

fn harness(guarantee: &str, commit_interval_ms: &str) -> Harness {
    let log = MemoryLog::default();
    let group = Arc::new(MemoryGroup::joined_on(&log, "app"));
    let config = config(guarantee, &[("commit.interval.ms", commit_interval_ms)]);
    let faults = Faults::default();
    let tasks = manager(&log, &config, &faults);
    let fetching = Arc::new(Mutex::new(Fetching::default()));
    let fetcher = MemoryFetcher {
        log: log.clone(),
        group: group.clone(),
        state: fetching.clone(),
    };
    let assignments = Arc::new(Assignments::default());
    let release = Arc::new(Release {
        version: 1,
        component: counter(""),
        plan: plan(),
    });
    let target = Arc::new(Target::new(release, 1));
    let lifecycle = Arc::new(Lifecycle::new(1, Duration::from_secs(60)));
    let thread = StreamThread::with_parts(
        0,
        config,
        tasks,
        Box::new(fetcher),
        assignments.clone(),
        lifecycle.clone(),
        target.clone(),
        plan(),
    );
    Harness {
        thread,
        log,
        group,
        fetching,
        assignments,
        target,
        lifecycle,
        faults,
    }
}

impl Harness {
    /// Writes `key`/`value` to partition `partition` of `in`.
    fn produce(&self, partition: i32, key: &str, value: &str) {
        let mut producer =
            MemoryCollector::into_log(ProcessingGuarantee::AtLeastOnce, self.log.clone());
        producer
            .send(Outgoing {
                topic: "in",
                partition: Some(partition),
                key: Some(key.as_bytes()),
                value: Some(value.as_bytes()),
                headers: Vec::new(),
                timestamp: Some(1_000),
                task: TaskId::for_partition(partition),
            })
            .unwrap();
        producer.flush().unwrap();
    }

    fn pass(&mut self) {
        assert!(self.thread.pass(), "the thread ended");
    }

    fn fetched(&self) -> Vec<i32> {
        lock(&self.fetching)
            .positions
            .keys()
            .map(|(_, p)| *p)
            .collect()
    }

    fn committed(&self, partition: i32) -> Option<i64> {
        committed(&self.group, partition)
    }
}

#[test]
fn a_pass_applies_the_assignment_then_fetches_processes_and_commits() {
    let mut h = harness("at_least_once", "0");
    h.produce(0, "x", "a");
    h.produce(0, "x", "b");
    h.produce(1, "y", "c");
    h.assignments.assign(&[0, 1]);
    h.pass();
    assert_eq!(h.fetched(), vec![0, 1]);
    assert_eq!(h.assignments.applied(), Some((1, tasks(&[0, 1]))));
    let out = outputs(&h.log);
    assert_eq!((out["x"].as_str(), out["y"].as_str()), ("2", "1"));
    assert_eq!((h.committed(0), h.committed(1)), (Some(2), Some(1)));
}

#[test]
fn a_revocation_mid_interval_commits_first_and_stops_fetching_the_revoked_partition() {
    let mut h = harness("at_least_once", "600000");
    h.produce(0, "x", "a");
    h.produce(1, "z", "b");
    h.assignments.assign(&[0, 1]);
    h.pass();
    assert_eq!(h.committed(1), None, "not due yet");
    h.assignments.assign(&[0]);
    h.pass();
    assert_eq!(h.fetched(), vec![0]);
    assert_eq!(h.assignments.applied(), Some((2, tasks(&[0]))));
    assert_eq!((h.committed(0), h.committed(1)), (Some(1), Some(1)));
    assert_eq!(outputs(&h.log)["z"], "1");
    assert!(h.thread.tasks.task(TaskId::for_partition(1)).is_none());
}

#[test]
fn lost_tasks_are_closed_without_committing_and_read_again_from_the_last_commit() {
    let mut h = harness("exactly_once_v2", "600000");
    h.produce(0, "x", "a");
    h.assignments.assign(&[0]);
    h.pass();
    h.assignments.lose();
    h.pass();
    assert!(h.fetched().is_empty());
    assert_eq!(h.committed(0), None, "a lost task commits nothing");
    assert!(h.thread.tasks.task(TaskId::for_partition(0)).is_none());

    h.assignments.assign(&[0]);
    h.pass();
    h.lifecycle.request_shutdown();
    h.thread.run().unwrap();
    // Processed once more from offset 0, on state as of the last commit.
    assert_eq!(outputs(&h.log)["x"], "1");
    assert_eq!(committed(&h.group, 0), Some(1));
}

#[test]
fn a_failed_commit_fetches_the_thread_s_partitions_again_from_the_last_commit() {
    let mut h = harness("exactly_once_v2", "0");
    h.produce(0, "x", "a");
    h.assignments.assign(&[0]);
    h.pass();
    assert_eq!(h.committed(0), Some(1));
    h.produce(0, "x", "b");
    h.faults.fail_next_flush(CommitError::Flush(
        KafkaError::Flush(RDKafkaErrorCode::MessageTimedOut).into(),
    ));
    h.pass();
    assert_eq!(h.committed(0), Some(1), "the failed commit left nothing");
    assert_eq!(h.fetched(), vec![0]);
    assert_eq!(lock(&h.fetching).added.len(), 2, "fetched again");
    h.pass();
    h.pass();
    assert_eq!(h.committed(0), Some(2));
    assert_eq!(
        outputs(&h.log)["x"],
        "2",
        "counted once: the store came back as of the last commit"
    );
}

#[test]
fn a_failing_task_is_no_longer_fetched_and_a_new_version_retries_it_at_once() {
    let mut h = harness("at_least_once", "0");
    h.produce(0, "x", "boom");
    h.produce(1, "y", "a");
    h.assignments.assign(&[0, 1]);
    h.pass();
    assert_eq!(
        h.fetched(),
        vec![1],
        "the failed task's partition is dropped"
    );
    assert!(h.thread.tasks.is_failed(TaskId::for_partition(0)));
    assert_eq!(outputs(&h.log)["y"], "1", "its neighbour goes on");
    assert!(h.lifecycle.error().is_none(), "the process stays up");

    let generation = h.target.set(Arc::new(Release {
        version: 2,
        component: lenient_counter("v2:"),
        plan: plan(),
    }));
    h.pass();
    assert_eq!(
        h.fetched(),
        vec![0, 1],
        "retried at once under the new version"
    );
    h.pass();
    assert_eq!(outputs(&h.log)["x"], "v2:1");
    assert_eq!(h.committed(0), Some(1));
    assert!(
        h.target
            .wait_applied(generation, std::time::Instant::now(), || true),
        "the thread reported the new generation"
    );
}

#[test]
fn shutdown_commits_closes_the_fetcher_and_reports_the_thread_stopped() {
    let mut h = harness("at_least_once", "600000");
    h.produce(0, "x", "a");
    h.assignments.assign(&[0]);
    h.pass();
    assert_eq!(h.committed(0), None);
    h.lifecycle.request_shutdown();
    h.thread.run().unwrap();
    assert_eq!(committed(&h.group, 0), Some(1));
    assert_eq!(outputs(&h.log)["x"], "1");
    assert!(lock(&h.fetching).closed);
    assert!(lock(&h.assignments.state).stopped);
}

/// A batch as `(topic, partition, [(source, offset)])`.
type Grouped = (String, i32, Vec<(String, i64)>);

#[test]
fn polled_records_are_grouped_by_partition_in_order_under_their_declared_source() {
    let plan = TopicPlan {
        partitions: 2,
        sources: vec!["app-orders".into(), "app-customers".into()],
        source_names: vec!["orders".into(), "customers".into()],
        sinks: Vec::new(),
        changelogs: Vec::new(),
        source_changelogs: Vec::new(),
    };
    let mut batches = BatchesBuilder::new(&plan);
    let record = |offset: i64| {
        move |source: &str| IncomingRecord {
            source: source.to_string(),
            key: None,
            value: None,
            headers: Vec::new(),
            timestamp: 0,
            topic: String::new(),
            partition: 0,
            offset,
        }
    };
    batches.push("app-orders", 0, record(5));
    batches.push("app-customers", 0, record(1));
    batches.push("app-orders", 1, record(7));
    batches.push("app-orders", 0, record(6));
    batches.push("undeclared", 0, record(0));
    assert_eq!(batches.count(), 5);
    let got: Vec<Grouped> = batches
        .finish()
        .into_iter()
        .map(|(t, p, rs)| (t, p, rs.into_iter().map(|r| (r.source, r.offset)).collect()))
        .collect();
    let want = |t: &str, p: i32, rs: &[(&str, i64)]| {
        (
            t.to_string(),
            p,
            rs.iter()
                .map(|(s, o)| (s.to_string(), *o))
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        got,
        vec![
            want("app-orders", 0, &[("orders", 5), ("orders", 6)]),
            want("app-customers", 0, &[("customers", 1)]),
            want("app-orders", 1, &[("orders", 7)]),
            want("undeclared", 0, &[("undeclared", 0)]),
        ]
    );
}
