//! The task manager without a broker: a native counting processor, memory
//! stores, [`MemoryCollector`]/[`MemoryChangelog`] over one [`MemoryLog`]
//! and a [`MemoryGroup`]. Covers what the thread relies on: state moving
//! with its task through the changelog, a rebalance in the middle of a
//! commit interval, a failed flush, and what a failing task costs its
//! neighbours under each guarantee.

use std::ops::Bound::Unbounded;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::TaskManager;
use super::fixtures::{CHANGELOG, committed, config, counter, manager, outputs, plan};
use crate::commit::{CommitError, Faults, MemoryLog};
use crate::group::{MemoryGroup, RebalanceListener, TopicPartition};
use crate::runtime::bindings::IncomingRecord;
use crate::topology::TaskId;

/// One "process": a task manager and the cluster it shares with others.
struct Instance {
    manager: TaskManager,
    faults: Faults,
}

fn instance(log: &MemoryLog, guarantee: &str) -> Instance {
    let faults = Faults::default();
    Instance {
        manager: manager(log, &config(guarantee, &[]), &faults),
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

fn flush_failure() -> CommitError {
    CommitError::Flush(KafkaError::Flush(RDKafkaErrorCode::MessageTimedOut).into())
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
fn a_task_whose_partitions_cannot_be_resumed_starts_again_with_the_others() {
    let (log, group) = (MemoryLog::default(), MemoryGroup::joined("app"));
    let mut a = instance(&log, "exactly_once_v2");
    a.assign(&[0], &group);
    group.refuse_next_resume();
    a.assign(&[0, 1], &group);
    assert!(!a.manager.has_failed(), "recoverable: the thread goes on");
    let mut reset = a.manager.take_reset();
    reset.sort();
    assert_eq!(
        reset,
        vec![TaskId::for_partition(0), TaskId::for_partition(1)],
        "the task that failed to start is restarted with the one the restart closed"
    );
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

/// More changelog than one read (`RESTORE_BATCH`), for two tasks: each
/// batch is written while the next is read, each task on its own thread,
/// and every record arrives.
#[test]
fn a_restore_of_many_batches_for_several_tasks_keeps_every_record() {
    let (log, group) = (MemoryLog::default(), MemoryGroup::joined("app"));
    let mut a = instance(&log, "at_least_once");
    a.assign(&[0, 1], &group);
    let keys = |p: i32, n: usize| -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("k{p}-{i}"), "v".to_string()))
            .collect()
    };
    let sizes = [
        (0, super::RESTORE_BATCH * 2 + 17),
        (1, super::RESTORE_BATCH + 5),
    ];
    for (p, n) in sizes {
        let records = keys(p, n);
        let borrowed: Vec<(&str, &str)> = records
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        a.process(p, 0, &borrowed);
        // Twice for the first key: a count of 2 must survive the restore.
        a.process(p, n as i64, &borrowed[..1]);
    }
    a.manager.commit_all(&group).unwrap();
    a.manager.on_revoked(&partitions(&[0, 1]), &group);

    let mut b = instance(&log, "at_least_once");
    b.assign(&[0, 1], &group);
    for (p, n) in sizes {
        assert_eq!(b.count(p, &format!("k{p}-0")), Some(2));
        let restored = (1..n)
            .filter(|i| b.count(p, &format!("k{p}-{i}")) == Some(1))
            .count();
        assert_eq!(restored, n - 1, "partition {p}");
    }
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

fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap()
}

/// Keeps each record of `in` in store `table` as it is (a table).
struct Table;

impl crate::runtime::NativeProcessor for Table {
    fn process(
        &mut self,
        ctx: &mut crate::runtime::TaskContext,
        batch: &[IncomingRecord],
    ) -> Result<(), String> {
        for r in batch {
            let Some(key) = r.key.clone() else { continue };
            match r.value.clone() {
                Some(value) => ctx.stores[0].put(key, value),
                None => ctx.stores[0].delete(key),
            }
        }
        Ok(())
    }
}

/// A task manager running [`Table`], whose store `table` is restored from
/// its source `in`, over `log` (which holds `in`).
fn table_instance(log: &MemoryLog) -> Instance {
    use std::sync::Arc;

    use crate::runtime::LoadedComponent;
    use crate::topics::TopicPlan;
    use crate::topology::{StoreSpec, Topology};

    let config = config("at_least_once", &[("commit.interval.ms", "0")]);
    let mut setup = super::fixtures::setup(&config);
    let topology = Topology {
        name: "table".into(),
        sources: vec!["in".into()],
        sinks: Vec::new(),
        stores: vec![StoreSpec {
            source_changelog: Some("in".into()),
            ..StoreSpec::key_value("table", false)
        }],
        repartitions: Vec::new(),
    };
    setup.tasks.component = LoadedComponent::native(topology, Arc::new(|| Box::new(Table)));
    setup.tasks.plan = Arc::new(TopicPlan {
        sinks: Vec::new(),
        changelogs: vec![("table".into(), "in".into())],
        source_changelogs: vec!["table".into()],
        ..(*plan()).clone()
    });
    let faults = Faults::default();
    let clients = super::Clients::memory(log, config.processing_guarantee, 1, faults.clone());
    Instance {
        manager: TaskManager::with_clients(setup, clients).unwrap(),
        faults,
    }
}

#[test]
fn a_table_restores_from_its_source_up_to_the_committed_offset_and_so_do_its_standbys() {
    let log = MemoryLog::default();
    let group = MemoryGroup::joined_on(&log, "app");
    let rows = [("a", "1"), ("b", "2"), ("c", "3"), ("a", "4")];
    for (k, v) in rows {
        log.append(crate::commit::SentRecord {
            topic: "in".into(),
            partition: 0,
            offset: 0,
            key: Some(k.into()),
            value: Some(v.into()),
            headers: Vec::new(),
            timestamp: Some(1),
            task: TaskId::for_partition(0),
            seq: 0,
        });
    }
    let get = |i: &Instance, key: &str| {
        let task = i.manager.tasks.get(&TaskId::for_partition(0)).unwrap();
        let value = task.store("table").unwrap().get(key.as_bytes()).unwrap();
        value.map(utf8)
    };

    let mut a = table_instance(&log);
    a.assign(&[0], &group);
    a.process(0, 0, &rows[..2]);
    a.manager.commit_all(&group).unwrap();
    assert_eq!(committed(&group, 0), Some(2));
    assert!(
        log.records("app-table-changelog").is_empty(),
        "no changelog topic"
    );
    assert_eq!(log.records("in").len(), 4, "nothing written to the source");

    // A standby reads `in` only as far as the committed offset.
    let mut standby = table_instance(&log);
    standby
        .manager
        .set_standby_target([TaskId::for_partition(0)].into());
    standby.manager.apply_standbys();
    // Its keys (memory stores record no offset), after a few passes.
    let tail = |s: &mut Instance| {
        for _ in 0..10 {
            s.manager.refresh_standby_limits(&group);
            s.manager.standby_step();
        }
        let standby = &s.manager.standbys[&TaskId::for_partition(0)];
        let (_, table) = standby.readers().pop().unwrap();
        let entries = table.scan(Unbounded, Unbounded, 10).unwrap();
        (entries.into_iter())
            .map(|(k, v)| format!("{}={}", utf8(k), utf8(v)))
            .collect::<Vec<_>>()
    };
    assert_eq!(tail(&mut standby), ["a=1", "b=2"]);

    // A new owner restores `a` and `b`, not what follows the commit.
    a.manager.on_revoked(&partitions(&[0]), &group);
    let mut b = table_instance(&log);
    b.assign(&[0], &group);
    assert_eq!(get(&b, "a").as_deref(), Some("1"));
    assert_eq!(get(&b, "c"), None, "past the committed offset");
    b.process(0, 2, &rows[2..]);
    b.manager.commit_all(&group).unwrap();
    assert_eq!(get(&b, "a").as_deref(), Some("4"));
    assert_eq!(
        tail(&mut standby),
        ["a=4", "b=2", "c=3"],
        "the standby follows the commit"
    );
}
