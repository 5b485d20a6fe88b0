//! The task manager without a broker: a native counting processor, memory
//! stores, [`MemoryCollector`]/[`MemoryChangelog`] over one [`MemoryLog`]
//! and a [`MemoryGroup`]. Covers what the thread relies on: state moving
//! with its task through the changelog, a rebalance in the middle of a
//! commit interval, a failed flush, and what a failing task costs its
//! neighbours under each guarantee.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::{Clients, TaskManager, TaskManagerSetup};
use crate::changelog::{ChangelogConsumer, MemoryChangelog};
use crate::commit::{Collector, CommitError, Faults, MemoryCollector, MemoryLog};
use crate::config::Config;
use crate::group::{MemoryGroup, RebalanceListener, TopicPartition};
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::runtime::bindings::{IncomingRecord, OutgoingRecord};
use crate::runtime::{LoadedComponent, NativeProcessor, SystemClock, TaskContext};
use crate::task::{ProcessingErrors, TaskRegistry, TaskSetup};
use crate::topics::TopicPlan;
use crate::topology::{SinkSpec, StoreKind, StoreSpec, TaskId, Topology};

const CHANGELOG: &str = "app-counts-changelog";

/// Counts records per key in store `counts` and forwards the count, after
/// `prefix`, to `out`; a record whose value is `boom` fails the task.
struct Counter {
    prefix: &'static str,
}

impl NativeProcessor for Counter {
    fn process(&mut self, ctx: &mut TaskContext, batch: &[IncomingRecord]) -> Result<(), String> {
        for r in batch {
            if r.value.as_deref() == Some(b"boom") {
                return Err(format!("boom at offset {}", r.offset));
            }
            let key = r.key.clone().unwrap_or_default();
            let store = &mut ctx.stores[0];
            let count = store
                .get(&key)
                .map_err(|e| e.to_string())?
                .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .map_or(0, u64::from_be_bytes)
                + 1;
            store.put(key.clone(), count.to_be_bytes().to_vec());
            let out = OutgoingRecord {
                key: Some(key),
                value: Some(format!("{}{count}", self.prefix).into_bytes()),
                headers: Vec::new(),
                timestamp: Some(r.timestamp),
            };
            ctx.forward("out", out)?;
        }
        Ok(())
    }
}

fn config(guarantee: &str) -> Arc<Config> {
    let raw: BTreeMap<String, String> = [
        ("application.id", "app"),
        ("bootstrap.servers", "unused:9092"),
        ("processing.guarantee", guarantee),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Arc::new(Config::from_map(raw, None).unwrap())
}

fn counter(prefix: &'static str) -> Arc<LoadedComponent> {
    let topology = Topology {
        name: "count".into(),
        sources: vec!["in".into()],
        sinks: vec![SinkSpec {
            name: "out".into(),
            topic: "out".into(),
        }],
        stores: vec![StoreSpec {
            name: "counts".into(),
            kind: StoreKind::KeyValue,
            logged: true,
            persistent: false,
            key_format: Default::default(),
            value_format: Default::default(),
            window: None,
        }],
        repartitions: Vec::new(),
    };
    LoadedComponent::native(topology, Arc::new(move || Box::new(Counter { prefix })))
}

fn plan() -> Arc<TopicPlan> {
    Arc::new(TopicPlan {
        partitions: 2,
        sources: vec!["in".into()],
        source_names: vec!["in".into()],
        sinks: vec!["out".into()],
        changelogs: vec![("counts".into(), CHANGELOG.into())],
    })
}

fn setup(config: &Arc<Config>) -> TaskManagerSetup {
    TaskManagerSetup {
        config: config.clone(),
        thread: 0,
        tasks: TaskSetup {
            application_id: "app".into(),
            version: 1,
            component: counter(""),
            plan: plan(),
            disk: None,
            clock: Arc::new(SystemClock),
            metrics: Arc::new(Metrics::default()),
            registry: Arc::new(TaskRegistry::default()),
            queries: Arc::default(),
            errors: ProcessingErrors::default(),
            max_task_idle: Some(Duration::ZERO),
        },
        lifecycle: Arc::new(Lifecycle::new(1, Duration::from_secs(60))),
    }
}

/// One "process": a task manager and the cluster it shares with others.
struct Instance {
    manager: TaskManager,
    faults: Faults,
}

fn instance(log: &MemoryLog, guarantee: &str) -> Instance {
    let config = config(guarantee);
    let faults = Faults::default();
    let (collector_log, changelog_log, collector_faults) =
        (log.clone(), log.clone(), faults.clone());
    let guarantee = config.processing_guarantee;
    let clients = Clients {
        collectors: Box::new(move || {
            Ok(Box::new(
                MemoryCollector::into_log(guarantee, collector_log.clone())
                    .with_faults(collector_faults.clone()),
            ) as Box<dyn Collector>)
        }),
        changelogs: Arc::new(move |topic: &str| {
            Ok(Box::new(MemoryChangelog::new(changelog_log.clone(), topic))
                as Box<dyn ChangelogConsumer>)
        }),
    };
    Instance {
        manager: TaskManager::with_clients(setup(&config), clients).unwrap(),
        faults,
    }
}

fn partitions(ps: &[i32]) -> Vec<TopicPartition> {
    ps.iter().map(|p| ("in".to_string(), *p)).collect()
}

impl Instance {
    fn assign(&mut self, ps: &[i32], group: &MemoryGroup) {
        self.manager.on_assigned(&partitions(ps), group);
        for _ in 0..100 {
            if !self.manager.is_restoring() {
                break;
            }
            self.manager.restore_step(group, Duration::ZERO);
        }
        assert!(!self.manager.is_restoring(), "restore did not finish");
    }

    /// Records `(key, value)` of input partition `partition` from `offset`.
    fn process(&mut self, partition: i32, offset: i64, records: &[(&str, &str)]) {
        let batch = records
            .iter()
            .enumerate()
            .map(|(i, (k, v))| IncomingRecord {
                source: "in".into(),
                key: Some(k.as_bytes().to_vec()),
                value: Some(v.as_bytes().to_vec()),
                headers: Vec::new(),
                timestamp: 1_000 + offset + i as i64,
                topic: "in".into(),
                partition,
                offset: offset + i as i64,
            })
            .collect();
        self.manager
            .process(vec![("in".to_string(), partition, batch)]);
    }

    fn count(&self, partition: i32, key: &str) -> Option<u64> {
        let task = self.manager.tasks.get(&TaskId::for_partition(partition))?;
        let value = task.store("counts")?.get(key.as_bytes()).unwrap()?;
        Some(u64::from_be_bytes(value.try_into().unwrap()))
    }
}

/// The latest count per key in `out`, as a `read_committed` reader sees it.
fn outputs(log: &MemoryLog) -> BTreeMap<String, String> {
    log.records("out")
        .into_iter()
        .map(|r| {
            let text = |b: Option<Vec<u8>>| String::from_utf8(b.unwrap()).unwrap();
            (text(r.key), text(r.value))
        })
        .collect()
}

fn committed(group: &MemoryGroup, partition: i32) -> Option<i64> {
    group
        .committed_offsets()
        .get(&("in".to_string(), partition))
        .map(|o| o.offset)
}

fn flush_failure() -> CommitError {
    CommitError::Flush(KafkaError::Flush(RDKafkaErrorCode::MessageTimedOut))
}

#[test]
fn state_moves_with_its_task_through_the_changelog() {
    for guarantee in ["at_least_once", "exactly_once_v2"] {
        let (log, group) = (MemoryLog::default(), MemoryGroup::joined("app"));
        let mut a = instance(&log, guarantee);
        a.assign(&[0], &group);
        a.process(0, 0, &[("x", "1"), ("x", "2"), ("y", "3")]);
        a.manager.commit_all(&group).unwrap();
        assert_eq!(outputs(&log)["x"], "2", "{guarantee}");
        a.manager.on_revoked(&partitions(&[0]), &group);
        assert!(a.manager.tasks.is_empty());

        let mut b = instance(&log, guarantee);
        b.assign(&[0], &group);
        assert_eq!(b.count(0, "x"), Some(2), "{guarantee}: restored");
        b.process(0, 3, &[("x", "4")]);
        b.manager.commit_all(&group).unwrap();
        assert_eq!(outputs(&log)["x"], "3", "{guarantee}");
        if guarantee == "at_least_once" {
            assert_eq!(committed(&group, 0), Some(4));
        }
    }
}

#[test]
fn a_rebalance_in_the_middle_of_a_commit_interval_commits_before_the_task_goes() {
    let (log, group) = (MemoryLog::default(), MemoryGroup::joined("app"));
    let mut a = instance(&log, "at_least_once");
    a.assign(&[0, 1], &group);
    a.process(0, 0, &[("x", "1")]);
    a.process(1, 0, &[("z", "1"), ("z", "2")]);
    assert_eq!(committed(&group, 1), None);
    a.manager.on_revoked(&partitions(&[1]), &group);
    // Everything processed was committed, the kept task's work included.
    assert_eq!(committed(&group, 0), Some(1));
    assert_eq!(committed(&group, 1), Some(2));
    assert_eq!(outputs(&log)["z"], "2");
    assert_eq!(a.count(0, "x"), Some(1), "the kept task keeps running");
    assert_eq!(a.count(1, "z"), None, "the revoked task is closed");
}

#[test]
fn a_failed_flush_starts_the_thread_s_tasks_again_from_the_last_commit() {
    let (log, group) = (MemoryLog::default(), MemoryGroup::joined("app"));
    let mut a = instance(&log, "at_least_once");
    a.assign(&[0], &group);
    a.process(0, 0, &[("x", "1")]);
    a.manager.commit_all(&group).unwrap();
    a.process(0, 1, &[("x", "2"), ("x", "3")]);
    a.faults.fail_next_flush(flush_failure());
    let error = a.manager.commit_all(&group).unwrap_err();
    a.manager.handle(error);
    assert!(!a.manager.has_failed(), "recoverable: the thread goes on");
    assert_eq!(a.manager.take_reset(), vec![TaskId::for_partition(0)]);
    assert_eq!(
        committed(&group, 0),
        Some(1),
        "nothing past the last commit"
    );
    // The thread re-fetches from the committed offset and assigns again:
    // the store comes back from the changelog as of the last commit.
    a.assign(&[0], &group);
    assert_eq!(a.count(0, "x"), Some(1));
    a.process(0, 1, &[("x", "2"), ("x", "3")]);
    a.manager.commit_all(&group).unwrap();
    assert_eq!(outputs(&log)["x"], "3");
    assert_eq!(committed(&group, 0), Some(3));
}

#[test]
fn a_failing_task_costs_only_itself_under_at_least_once_and_the_whole_thread_under_exactly_once() {
    for (guarantee, neighbour_reset) in [("at_least_once", false), ("exactly_once_v2", true)] {
        let (log, group) = (MemoryLog::default(), MemoryGroup::joined("app"));
        let mut a = instance(&log, guarantee);
        a.assign(&[0, 1], &group);
        a.process(1, 0, &[("z", "1")]);
        a.process(0, 0, &[("x", "boom")]);
        assert!(!a.manager.has_failed(), "{guarantee}: the process stays up");
        assert!(a.manager.is_failed(TaskId::for_partition(0)), "{guarantee}");
        let reset = a.manager.take_reset();
        assert_eq!(
            reset.contains(&TaskId::for_partition(1)),
            neighbour_reset,
            "{guarantee}: {reset:?}"
        );
        a.manager.commit_all(&group).unwrap();
        // Under exactly-once the neighbour's uncommitted output was in the
        // aborted transaction: a read_committed reader never sees it.
        assert_eq!(
            outputs(&log).contains_key("z"),
            !neighbour_reset,
            "{guarantee}"
        );
    }
}

#[test]
fn aborted_changelog_records_are_not_restored() {
    let (log, group) = (MemoryLog::default(), MemoryGroup::joined("app"));
    let mut a = instance(&log, "exactly_once_v2");
    a.assign(&[0], &group);
    a.process(0, 0, &[("x", "1")]);
    a.manager.commit_all(&group).unwrap();
    a.process(0, 1, &[("x", "2")]);
    // Sent and acknowledged inside the transaction, then aborted.
    a.faults.fail_next_commit(CommitError::Produce {
        topic: CHANGELOG.into(),
        reason: "fenced".into(),
    });
    let error = a.manager.commit_all(&group).unwrap_err();
    a.manager.handle(error);
    assert_eq!(a.manager.take_reset(), vec![TaskId::for_partition(0)]);

    let mut b = instance(&log, "exactly_once_v2");
    b.assign(&[0], &group);
    assert_eq!(b.count(0, "x"), Some(1));
    assert_eq!(outputs(&log)["x"], "1");
}

#[test]
fn a_swap_while_a_task_restores_restores_it_on_the_new_version() {
    let (log, group) = (MemoryLog::default(), MemoryGroup::joined("app"));
    let mut a = instance(&log, "at_least_once");
    a.assign(&[0], &group);
    a.process(0, 0, &[("x", "1"), ("x", "2")]);
    a.manager.on_revoked(&partitions(&[0]), &group);

    let mut b = instance(&log, "at_least_once");
    b.manager.on_assigned(&partitions(&[0]), &group);
    assert!(b.manager.is_restoring(), "no restore step yet");
    b.manager.swap_to(2, counter("v2:"), plan(), &group);
    assert!(!b.manager.has_failed());
    b.assign(&[0], &group);
    assert_eq!(b.count(0, "x"), Some(2), "restored under the new version");
    b.process(0, 2, &[("x", "3")]);
    b.manager.commit_all(&group).unwrap();
    assert_eq!(outputs(&log)["x"], "v2:3");
    assert_eq!(committed(&group, 0), Some(3));
}

#[test]
fn repeated_commit_failures_during_an_outage_do_not_fail_the_thread_at_once() {
    let (log, group) = (MemoryLog::default(), MemoryGroup::joined("app"));
    let mut a = instance(&log, "exactly_once_v2");
    for attempt in 0..super::MAX_RESETS + 2 {
        a.assign(&[0], &group);
        a.process(0, 0, &[("x", "1")]);
        a.faults.fail_next_flush(flush_failure());
        let error = a.manager.commit_all(&group).unwrap_err();
        a.manager.handle(error);
        assert!(!a.manager.has_failed(), "attempt {attempt}");
        assert_eq!(a.manager.take_reset(), vec![TaskId::for_partition(0)]);
    }
    // The broker is back: the work goes through once.
    a.assign(&[0], &group);
    a.process(0, 0, &[("x", "1")]);
    a.manager.commit_all(&group).unwrap();
    assert_eq!(outputs(&log)["x"], "1");
}
