//! The changelog reader over [`MemoryChangelog`]: where a restore starts,
//! what it hands over (never an aborted record), standby tailing, and
//! letting go of a revoked task. No broker.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::commit::{Collector, MemoryCollector, MemoryLog};
use crate::config::ProcessingGuarantee;

const TOPIC: &str = "app-counts-changelog";

fn reader(log: &MemoryLog) -> ChangelogReader {
    let log = log.clone();
    ChangelogReader::new(Arc::new(move |topic: &str| {
        Ok(Box::new(MemoryChangelog::new(log.clone(), topic)) as Box<dyn ChangelogConsumer>)
    }))
}

fn at(partition: i32) -> StorePosition<'static> {
    StorePosition {
        task: TaskId::for_partition(partition),
        store: 0,
        store_name: "counts",
        topic: TOPIC,
        partition,
    }
}

/// Writes `keys` to partition `partition` of the changelog; under
/// exactly-once, `commit` says whether their transaction commits.
fn write(log: &MemoryLog, partition: i32, keys: &[&str], exactly_once: bool, commit: bool) {
    let guarantee = if exactly_once {
        ProcessingGuarantee::ExactlyOnceV2
    } else {
        ProcessingGuarantee::AtLeastOnce
    };
    let mut collector = MemoryCollector::into_log(guarantee, log.clone());
    for key in keys {
        collector
            .send_changelog(TOPIC, partition, key.as_bytes(), Some(b"v"))
            .unwrap();
    }
    collector.flush().unwrap();
    if exactly_once {
        if commit {
            collector.commit_transaction(&[], None).unwrap();
        } else {
            collector.abort_transaction();
        }
    }
}

/// Polls until nothing more comes; returns the keys handed over and
/// whether `Done` / `CaughtUp` were seen, with the last next offset.
fn drain(reader: &mut ChangelogReader) -> (Vec<String>, bool, bool, i64) {
    let (mut keys, mut done, mut caught_up, mut next) = (Vec::new(), false, false, -1);
    for _ in 0..20 {
        for event in reader.poll(1_000, Duration::ZERO).unwrap() {
            match event {
                RestoreEvent::Records {
                    records,
                    next_offset,
                    ..
                } => {
                    keys.extend(
                        records
                            .into_iter()
                            .map(|(k, _)| String::from_utf8(k).unwrap()),
                    );
                    next = next_offset;
                }
                RestoreEvent::Done { .. } => done = true,
                RestoreEvent::CaughtUp { .. } => caught_up = true,
            }
        }
    }
    (keys, done, caught_up, next)
}

#[test]
fn a_restore_reads_committed_records_only_and_ends_past_aborted_ones() {
    let log = MemoryLog::default();
    write(&log, 0, &["a", "b"], true, true);
    write(&log, 0, &["lost"], true, false);
    let mut reader = reader(&log);
    assert_eq!(
        reader.register(at(0), None).unwrap(),
        RestoreStart::Restoring { from: 0, end: 3 }
    );
    let (keys, done, _, next) = drain(&mut reader);
    assert_eq!(keys, vec!["a", "b"]);
    assert!(done);
    // The store records an offset past the aborted record: a later restore
    // from it has nothing left to wait for.
    assert_eq!(next, 3);
    assert!(reader.is_idle());
    assert_eq!(
        reader.register(at(0), Some(3)).unwrap(),
        RestoreStart::UpToDate
    );
}

#[test]
fn a_recorded_offset_outside_the_changelog_means_the_local_copy_is_corrupt() {
    let log = MemoryLog::default();
    write(&log, 1, &["a"], false, true);
    let mut reader = reader(&log);
    assert_eq!(
        reader.register(at(1), Some(9)).unwrap(),
        RestoreStart::Corrupted {
            recorded: 9,
            low: 0,
            high: 1
        }
    );
    assert!(reader.is_idle());
}

#[test]
fn a_restore_from_a_recorded_offset_reads_only_the_tail() {
    let log = MemoryLog::default();
    write(&log, 0, &["a", "b", "c"], false, true);
    let mut reader = reader(&log);
    reader.register(at(0), Some(2)).unwrap();
    assert_eq!(reader.remaining(), 1);
    let (keys, done, _, _) = drain(&mut reader);
    assert_eq!(keys, vec!["c"]);
    assert!(done);
}

#[test]
fn a_standby_tails_its_changelog_and_reports_each_catch_up() {
    let log = MemoryLog::default();
    write(&log, 0, &["a"], false, true);
    let mut reader = reader(&log);
    reader.register_tail(at(0), None).unwrap();
    let (keys, done, caught_up, _) = drain(&mut reader);
    assert_eq!(
        (keys, done, caught_up),
        (vec!["a".to_string()], false, true)
    );
    assert!(!reader.is_behind());
    assert_eq!(reader.lag(TaskId::for_partition(0)), 0);

    write(&log, 0, &["b"], false, true);
    let (keys, _, caught_up, _) = drain(&mut reader);
    assert_eq!((keys, caught_up), (vec!["b".to_string()], true));
    assert!(!reader.is_idle(), "a tailed partition stays registered");
}

#[test]
fn an_unregistered_task_gets_nothing_more() {
    let log = MemoryLog::default();
    write(&log, 0, &["a"], false, true);
    write(&log, 1, &["b"], false, true);
    let mut reader = reader(&log);
    reader.register(at(0), None).unwrap();
    reader.register(at(1), None).unwrap();
    reader.unregister(TaskId::for_partition(0));
    let (keys, _, _, _) = drain(&mut reader);
    assert_eq!(keys, vec!["b"]);
}

#[test]
fn a_restore_until_an_offset_stops_there_and_records_it() {
    let log = MemoryLog::default();
    write(&log, 0, &["a", "b", "c", "d", "e", "f"], false, false);
    let mut r = reader(&log);
    assert_eq!(
        r.register_until(at(0), None, 4).unwrap(),
        RestoreStart::Restoring { from: 0, end: 4 }
    );
    let (keys, done, _, next) = drain(&mut r);
    assert_eq!(keys, ["a", "b", "c", "d"], "nothing at or past offset 4");
    assert!(done);
    assert_eq!(next, 4);
    assert!(r.is_idle());

    // From a recorded offset, up to the limit; at or past it: up to date.
    let mut r = reader(&log);
    r.register_until(at(0), Some(2), 5).unwrap();
    assert_eq!(drain(&mut r).0, ["c", "d", "e"]);
    let mut r = reader(&log);
    for recorded in [4, 6] {
        assert_eq!(
            r.register_until(at(0), Some(recorded), 4).unwrap(),
            RestoreStart::UpToDate
        );
    }
    // Nothing committed yet: nothing to restore.
    assert_eq!(
        r.register_until(at(0), None, 0).unwrap(),
        RestoreStart::UpToDate
    );
}

#[test]
fn a_standby_held_at_a_limit_reads_on_only_when_it_moves() {
    let log = MemoryLog::default();
    write(&log, 0, &["a", "b", "c", "d", "e"], false, false);
    let mut r = reader(&log);
    r.register_tail_until(at(0), None, 2).unwrap();
    let (keys, done, caught_up, next) = drain(&mut r);
    assert_eq!(keys, ["a", "b"]);
    assert!(caught_up && !done, "held at the limit, still registered");
    assert_eq!(next, 2);
    assert!(!r.is_behind());
    assert_eq!(r.lag(TaskId::for_partition(0)), 0);

    r.set_until(TaskId::for_partition(0), 0, 1);
    assert!(drain(&mut r).0.is_empty(), "a limit never moves back");
    r.set_until(TaskId::for_partition(0), 0, 4);
    let (keys, _, caught_up, next) = drain(&mut r);
    assert_eq!(keys, ["c", "d"]);
    assert!(caught_up);
    assert_eq!(next, 4);

    // Registered at its limit: held from the start, nothing read.
    let mut r = reader(&log);
    r.register_tail_until(at(0), Some(3), 3).unwrap();
    assert!(!r.is_behind());
    assert!(drain(&mut r).0.is_empty());
    r.set_until(TaskId::for_partition(0), 0, 10);
    assert_eq!(drain(&mut r).0, ["d", "e"]);
}

#[test]
fn one_read_stops_at_its_byte_budget_and_the_next_goes_on() {
    let log = MemoryLog::default();
    let mut collector = MemoryCollector::into_log(ProcessingGuarantee::AtLeastOnce, log.clone());
    let value = vec![7u8; 1 << 20];
    for i in 0..40 {
        let key = format!("k{i:02}");
        collector
            .send_changelog(TOPIC, 0, key.as_bytes(), Some(&value))
            .unwrap();
    }
    collector.flush().unwrap();
    let mut reader = reader(&log);
    reader.register(at(0), None).unwrap();
    let first: usize = (reader.poll(1_000, Duration::ZERO).unwrap().into_iter())
        .map(|event| match event {
            RestoreEvent::Records { records, .. } => records.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(
        first, 16,
        "16 MiB of 1 MiB values, though 1,000 records were allowed"
    );
    let (keys, done, _, next) = drain(&mut reader);
    assert_eq!(keys.len(), 24);
    assert_eq!(keys.first().map(String::as_str), Some("k16"));
    assert!(done);
    assert_eq!(next, 40);
}

#[test]
fn kept_events_come_back_first_less_those_of_a_task_let_go() {
    let log = MemoryLog::default();
    write(&log, 0, &["a", "b"], false, true);
    write(&log, 1, &["c"], false, true);
    // A reader of both partitions, everything read once.
    let read_both = || {
        let mut r = reader(&log);
        r.register(at(0), None).unwrap();
        r.register(at(1), None).unwrap();
        let read = r.poll(1_000, Duration::ZERO).unwrap();
        (r, read)
    };
    let (mut reader, read) = read_both();
    let tasks = |events: &[RestoreEvent]| -> BTreeSet<TaskId> {
        events.iter().map(RestoreEvent::task).collect()
    };
    assert_eq!(
        tasks(&read),
        BTreeSet::from([TaskId::for_partition(0), TaskId::for_partition(1)])
    );
    // Both partitions were read to their ends: only what was kept is left.
    let count = read.len();
    reader.keep(read);
    assert!(!reader.is_idle(), "kept events still to hand out");
    assert_eq!(reader.poll(1_000, Duration::ZERO).unwrap().len(), count);

    let (mut reader, read) = read_both();
    reader.keep(read);
    reader.unregister(TaskId::for_partition(1));
    let back = reader.poll(1_000, Duration::ZERO).unwrap();
    assert_eq!(tasks(&back), BTreeSet::from([TaskId::for_partition(0)]));
    assert!(reader.is_idle());
}
