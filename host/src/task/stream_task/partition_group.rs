//! The order a task with several inputs processes their records in (Kafka
//! Streams' `PartitionGroup`): the record with the lowest timestamp across
//! the task's input partitions goes first, so a join does not depend on
//! which topic a fetch happened to return first. While a source has nothing
//! buffered the others wait for it as Kafka Streams does: while its
//! consumer has not yet read it to the end of its log (records are known
//! to be coming; at most [`UNFETCHED_WAIT`] at a time, so a partition that
//! cannot be fetched delays the others but never stops them), then
//! `max.task.idle.ms` more (0: not at all; -1: never wait, at all).
//!
//! Holds fetched, unprocessed records only: nothing here is committed, so
//! dropping it (a revoked or failed task) loses nothing the next owner does
//! not fetch again.

use std::collections::VecDeque;
use std::time::Duration;

use crate::runtime::bindings::IncomingRecord;

/// The longest the others wait at a time for an empty source that its
/// consumer has not read to the end yet. Normally one fetch brings either
/// its records or its end well within this; the bound only matters when a
/// partition cannot be fetched (its leader is away, say).
pub(crate) const UNFETCHED_WAIT: Duration = Duration::from_secs(1);

/// One input partition of the task: its topic and what was fetched of it.
struct Input {
    topic: String,
    /// Whether the others wait for it when it is empty: a source does; a
    /// repartition does not (it fills only once the task's sources have
    /// been processed, so waiting for it would only add latency).
    waited_for: bool,
    queue: VecDeque<IncomingRecord>,
    /// Whether its consumer had read it to the end of its log when it
    /// handed over what is queued: nothing more is known to be coming.
    at_end: bool,
    /// Since when (task clock, ms) it has been empty while another input
    /// had records.
    empty_since: Option<i64>,
}

pub(super) struct PartitionGroup {
    inputs: Vec<Input>,
    /// `max.task.idle.ms`; `None`: -1.
    max_idle: Option<i64>,
    /// Whether the fetcher reports partition ends ([`PartitionGroup::add`]
    /// with no records). The offline driver does not: everything piped has
    /// been fetched, so its inputs are always at their end.
    ends_reported: bool,
}

impl PartitionGroup {
    /// A group over `topics` (the task's sources, waited for, and its
    /// repartition topics, not waited for).
    pub fn new(topics: &[(String, bool)], max_idle: Option<Duration>, ends_reported: bool) -> Self {
        PartitionGroup {
            inputs: Self::inputs(topics, ends_reported),
            max_idle: max_idle.map(|d| d.as_millis() as i64),
            ends_reported,
        }
    }

    fn inputs(topics: &[(String, bool)], ends_reported: bool) -> Vec<Input> {
        topics
            .iter()
            .map(|(topic, waited_for)| Input {
                topic: topic.clone(),
                waited_for: *waited_for,
                queue: VecDeque::new(),
                at_end: !ends_reported,
                empty_since: None,
            })
            .collect()
    }

    /// The inputs of a new version (a swap), keeping what is buffered and
    /// which inputs were read to their end.
    pub fn retarget(&mut self, topics: &[(String, bool)]) {
        let new = Self::inputs(topics, self.ends_reported);
        let old = std::mem::replace(&mut self.inputs, new);
        for input in old {
            let at_end = input.at_end;
            self.add(&input.topic, input.queue.into());
            if at_end {
                self.add(&input.topic, Vec::new());
            }
        }
    }

    /// Queues fetched `records` of `topic`; none: its consumer has read
    /// it to the end of its log (`enable.partition.eof`).
    pub fn add(&mut self, topic: &str, records: Vec<IncomingRecord>) {
        let at_end = records.is_empty() || !self.ends_reported;
        match self.inputs.iter_mut().find(|i| i.topic == topic) {
            // An end reported again: its idle time goes on.
            Some(input) if records.is_empty() && input.at_end => {}
            Some(input) => {
                input.queue.extend(records);
                input.at_end = at_end;
                input.empty_since = None;
            }
            None if at_end => {}
            // Not an input this group knows (a topology that changed
            // under it): keep it, at the end of the order.
            None => self.inputs.push(Input {
                topic: topic.to_string(),
                waited_for: false,
                queue: records.into(),
                at_end: false,
                empty_since: None,
            }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.inputs.iter().all(|i| i.queue.is_empty())
    }

    /// Takes what may be processed at `now` (the task's clock, ms), in
    /// processing order, as runs of consecutive records of one topic.
    pub fn next_batches(&mut self, now: i64) -> Vec<(String, Vec<IncomingRecord>)> {
        let mut runs: Vec<(usize, Vec<IncomingRecord>)> = Vec::new();
        if let [only] = self.inputs.as_mut_slice() {
            // One input: nothing to order.
            if !only.queue.is_empty() {
                runs.push((0, Vec::from(std::mem::take(&mut only.queue))));
            }
        } else {
            while let Some(next) = self.pick(now) {
                let record = self.inputs[next]
                    .queue
                    .pop_front()
                    .expect("picked a non-empty input");
                match runs.last_mut() {
                    Some((i, run)) if *i == next => run.push(record),
                    _ => runs.push((next, vec![record])),
                }
            }
        }
        if self.is_empty() {
            // Idle time counts only while another input has records.
            for input in &mut self.inputs {
                input.empty_since = None;
            }
        }
        runs.into_iter()
            .map(|(i, run)| (self.inputs[i].topic.clone(), run))
            .collect()
    }

    /// The input whose head record goes next, if any may go now. While a
    /// source waits for an empty source, repartition records still go.
    fn pick(&mut self, now: i64) -> Option<usize> {
        if self.is_empty() {
            // Idle time counts only while another input has records.
            return None;
        }
        let mut sources_wait = false;
        let unfetched_wait = UNFETCHED_WAIT.as_millis() as i64;
        for input in &mut self.inputs {
            if input.waited_for && input.queue.is_empty() {
                let since = *input.empty_since.get_or_insert(now);
                // An end already reported counts as reached when the wait
                // began; one not reported yet means records may be coming.
                let wait = self.max_idle.map(|max| match input.at_end {
                    true => max,
                    false => max.max(unfetched_wait),
                });
                if wait.is_some_and(|wait| now - since < wait) {
                    sources_wait = true;
                }
            }
        }
        self.inputs
            .iter()
            .enumerate()
            .filter(|(_, input)| !(sources_wait && input.waited_for))
            .filter_map(|(i, input)| input.queue.front().map(|r| (r.timestamp, i)))
            .min()
            .map(|(_, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(topic: &str, timestamps: &[i64]) -> Vec<IncomingRecord> {
        timestamps
            .iter()
            .enumerate()
            .map(|(i, ts)| IncomingRecord {
                source: topic.into(),
                key: None,
                value: Some(format!("{topic}@{ts}").into_bytes()),
                headers: Vec::new(),
                timestamp: *ts,
                topic: topic.into(),
                partition: 0,
                offset: i as i64,
            })
            .collect()
    }

    fn order(batches: &[(String, Vec<IncomingRecord>)]) -> Vec<String> {
        batches
            .iter()
            .flat_map(|(_, run)| run.iter())
            .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
            .collect()
    }

    fn topics() -> Vec<(String, bool)> {
        vec![("orders".into(), true), ("customers".into(), true)]
    }

    #[test]
    fn records_of_several_inputs_go_by_timestamp() {
        let mut group = PartitionGroup::new(&topics(), Some(Duration::ZERO), false);
        group.add("orders", records("orders", &[5, 20]));
        group.add("customers", records("customers", &[1, 10, 30]));
        let batches = group.next_batches(0);
        assert_eq!(
            order(&batches),
            [
                "customers@1",
                "orders@5",
                "customers@10",
                "orders@20",
                "customers@30"
            ]
        );
        // Runs of one topic stay together as one batch.
        assert_eq!(batches.len(), 5);
        assert!(group.is_empty());
    }

    #[test]
    fn an_empty_input_is_waited_for_up_to_max_task_idle() {
        let mut group = PartitionGroup::new(&topics(), Some(Duration::from_millis(100)), false);
        let start = 1_000;
        group.add("orders", records("orders", &[5, 6]));
        assert!(group.next_batches(start).is_empty(), "waits for customers");
        assert!(!group.is_empty());
        // Customers arrive in time: their older record goes first.
        group.add("customers", records("customers", &[1]));
        let batches = group.next_batches(start + 50);
        assert_eq!(order(&batches), ["customers@1"]);
        // Customers are empty again from then on: the orders wait until the
        // idle time has passed since, then go.
        let emptied = start + 50;
        assert!(group.next_batches(emptied + 99).is_empty());
        let batches = group.next_batches(emptied + 100);
        assert_eq!(order(&batches), ["orders@5", "orders@6"]);
    }

    #[test]
    fn minus_one_never_waits_and_a_single_input_is_handed_over_whole() {
        let mut group = PartitionGroup::new(&topics(), None, false);
        group.add("orders", records("orders", &[5]));
        assert_eq!(order(&group.next_batches(0)), ["orders@5"]);

        let mut single =
            PartitionGroup::new(&[("lines".to_string(), true)], Some(Duration::ZERO), false);
        single.add("lines", records("lines", &[3, 1, 2]));
        let batches = single.next_batches(0);
        assert_eq!(batches.len(), 1);
        assert_eq!(order(&batches), ["lines@3", "lines@1", "lines@2"]);
    }

    #[test]
    fn a_repartition_is_not_waited_for_and_a_swap_keeps_what_is_buffered() {
        let inputs = [("lines".to_string(), true), ("words".to_string(), false)];
        let mut group = PartitionGroup::new(&inputs, Some(Duration::from_secs(60)), false);
        group.add("lines", records("lines", &[1, 2]));
        assert_eq!(order(&group.next_batches(0)), ["lines@1", "lines@2"]);
        // Nor do a repartition's records wait for an empty source.
        group.add("words", records("words", &[1]));
        assert_eq!(order(&group.next_batches(0)), ["words@1"]);
        let sources = [
            ("orders".to_string(), true),
            ("customers".to_string(), true),
            ("by-tier".to_string(), false),
        ];
        let mut group = PartitionGroup::new(&sources, Some(Duration::from_secs(60)), false);
        group.add("orders", records("orders", &[5]));
        group.add("by-tier", records("by-tier", &[9]));
        assert_eq!(order(&group.next_batches(0)), ["by-tier@9"], "orders wait");

        let mut group = PartitionGroup::new(&topics(), Some(Duration::from_secs(60)), false);
        group.add("orders", records("orders", &[5]));
        assert!(group.next_batches(0).is_empty());
        group.retarget(&[("orders".to_string(), true)]);
        assert_eq!(order(&group.next_batches(0)), ["orders@5"]);
    }

    #[test]
    fn a_source_not_yet_read_to_its_end_is_waited_for_then_max_task_idle_after_its_end() {
        // Kafka: the fetcher reports each partition's end.
        let mut group = PartitionGroup::new(&topics(), Some(Duration::ZERO), true);
        group.add("orders", records("orders", &[50]));
        assert!(
            group.next_batches(0).is_empty(),
            "customers are still being fetched"
        );
        group.add("customers", records("customers", &[1, 2]));
        assert_eq!(
            order(&group.next_batches(10)),
            ["customers@1", "customers@2"]
        );
        // Drained but not at its end: the orders wait for the next fetch ...
        assert!(group.next_batches(20).is_empty());
        // ... which reports the end: with max.task.idle.ms 0 they go.
        group.add("customers", Vec::new());
        assert_eq!(order(&group.next_batches(30)), ["orders@50"]);

        // An end reported before the wait began counts: no wait at all.
        group.add("orders", records("orders", &[60]));
        assert_eq!(order(&group.next_batches(40)), ["orders@60"]);

        // A partition that never reports its end delays the others by at
        // most UNFETCHED_WAIT at a time, never stops them.
        let mut group = PartitionGroup::new(&topics(), Some(Duration::ZERO), true);
        let wait = UNFETCHED_WAIT.as_millis() as i64;
        group.add("orders", records("orders", &[5]));
        assert!(group.next_batches(1_000).is_empty());
        assert!(group.next_batches(1_000 + wait - 1).is_empty());
        assert_eq!(order(&group.next_batches(1_000 + wait)), ["orders@5"]);

        // At its end, max.task.idle.ms still applies from when it was reached.
        let mut group = PartitionGroup::new(&topics(), Some(Duration::from_secs(5)), true);
        group.add("customers", Vec::new());
        group.add("orders", records("orders", &[7]));
        assert!(group.next_batches(0).is_empty());
        assert!(group.next_batches(4_999).is_empty());
        assert_eq!(order(&group.next_batches(5_000)), ["orders@7"]);

        // -1 never waits, whatever is known of the ends.
        let mut group = PartitionGroup::new(&topics(), None, true);
        group.add("orders", records("orders", &[8]));
        assert_eq!(order(&group.next_batches(0)), ["orders@8"]);
    }

    #[test]
    fn a_swap_keeps_which_inputs_were_read_to_their_end() {
        let mut group = PartitionGroup::new(&topics(), Some(Duration::ZERO), true);
        group.add("customers", Vec::new());
        group.retarget(&topics());
        group.add("orders", records("orders", &[5]));
        assert_eq!(order(&group.next_batches(0)), ["orders@5"]);
    }
}
