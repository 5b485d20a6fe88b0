//! Automatic rollback of a bad version (`deploy.auto.rollback`). After an
//! instance swaps a topology to a new version, it watches that version's
//! first `deploy.canary.records` records here. If every task of the version
//! on this instance fails before that many are processed, the version is
//! judged bad and the topology is rolled back to the version before it.
//!
//! Pure judgement: [`Canary::check`] reads task statuses and a processed
//! count, and says what to do; the rollout writes the rollback, as a
//! compare-and-set on the record the version went live with, so of several
//! instances judging at once one rollback is written, and a version
//! deployed meanwhile is never undone. Must never judge a version that has
//! passed its canary, nor a task state other than `FAILED` as a failure.

use std::collections::BTreeSet;

use crate::task::TaskStatus;

/// The watch over one version's first records on this instance.
#[derive(Debug)]
pub struct Canary {
    pub name: String,
    pub version: u32,
    /// The version that ran here before: what a rollback goes back to.
    pub previous: u32,
    /// The topology record's revision when the version went live: the
    /// rollback is written only if nothing changed since.
    pub revision: u64,
    processed_at_start: u64,
    /// Tasks of the version seen failed at least once (a failed task is
    /// retried, so it is not always `FAILED` when looked at).
    failed: BTreeSet<String>,
    /// Tasks that were `FAILED` when the watch began: failures of the
    /// previous version, listed under the new one until they are retried.
    /// Ignored until seen in another state.
    inherited: BTreeSet<String>,
    first_error: Option<String>,
}

/// What [`Canary::check`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Too early to say.
    Watching,
    /// The version processed its canary records here: trusted.
    Passed,
    /// Every task of the version here failed: roll back, for this reason.
    RollBack(String),
}

impl Canary {
    pub fn new(
        name: &str,
        (previous, version): (u32, u32),
        revision: u64,
        processed_at_start: u64,
        tasks: &[TaskStatus],
    ) -> Self {
        Canary {
            name: name.to_string(),
            version,
            previous,
            revision,
            processed_at_start,
            failed: BTreeSet::new(),
            inherited: tasks
                .iter()
                .filter(|t| t.state == "FAILED")
                .map(|t| t.task_id.clone())
                .collect(),
            first_error: None,
        }
    }

    /// Judges the version from this instance's `tasks` and the process's
    /// count of records processed (`processed`), against `canary_records`.
    pub fn check(&mut self, tasks: &[TaskStatus], processed: u64, canary_records: u64) -> Verdict {
        let done = processed.saturating_sub(self.processed_at_start);
        if done >= canary_records {
            return Verdict::Passed;
        }
        let active: Vec<&TaskStatus> = tasks
            .iter()
            .filter(|t| t.topology == self.name && t.version == self.version)
            .filter(|t| t.state != "STANDBY")
            .collect();
        self.inherited.retain(|id| {
            active
                .iter()
                .any(|t| &t.task_id == id && t.state == "FAILED")
        });
        for task in &active {
            if task.state == "FAILED" && !self.inherited.contains(&task.task_id) {
                self.failed.insert(task.task_id.clone());
                if self.first_error.is_none() {
                    self.first_error = task.error.clone();
                }
            }
        }
        if active.is_empty() || !active.iter().all(|t| self.failed.contains(&t.task_id)) {
            return Verdict::Watching;
        }
        Verdict::RollBack(format!(
            "version {} failed on every one of its {} task(s) on this instance within its first \
             {canary_records} records (deploy.canary.records; {done} processed): {}",
            self.version,
            active.len(),
            self.first_error.as_deref().unwrap_or("no error recorded")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, version: u32, state: &'static str) -> TaskStatus {
        TaskStatus {
            task_id: id.into(),
            thread: 1,
            topology: "wc".into(),
            version,
            component: "wc@sha256:0".into(),
            state: state.into(),
            lag: None,
            error: (state == "FAILED").then(|| format!("task {id}: trapped")),
        }
    }

    #[test]
    fn rolls_back_only_when_every_task_failed_before_the_canary_passed() {
        let mut canary = Canary::new("wc", (1, 2), 7, 100, &[]);
        assert_eq!(canary.check(&[], 100, 10), Verdict::Watching);
        // One of two failed: not yet.
        let tasks = [task("0_0", 2, "FAILED"), task("0_1", 2, "RUNNING")];
        assert_eq!(canary.check(&tasks, 101, 10), Verdict::Watching);
        // The first is being retried, the second failed now: both have
        // failed, so the version is bad. Standbys and other versions do
        // not count.
        let tasks = [
            task("0_0", 2, "RESTORING"),
            task("0_1", 2, "FAILED"),
            task("0_2", 2, "STANDBY"),
            task("0_3", 1, "RUNNING"),
        ];
        match canary.check(&tasks, 102, 10) {
            Verdict::RollBack(reason) => {
                assert!(reason.contains("version 2"), "{reason}");
                assert!(reason.contains("2 task(s)"), "{reason}");
                assert!(reason.contains("task 0_0: trapped"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failures_left_over_from_the_previous_version_do_not_count() {
        // Failed under version 1, listed under version 2 after the swap.
        let before = [task("0_0", 2, "FAILED")];
        let mut canary = Canary::new("wc", (1, 2), 7, 100, &before);
        assert_eq!(canary.check(&before, 100, 10), Verdict::Watching);
        // Retried under version 2, then failing: now it counts.
        assert_eq!(
            canary.check(&[task("0_0", 2, "RUNNING")], 100, 10),
            Verdict::Watching
        );
        assert!(matches!(
            canary.check(&[task("0_0", 2, "FAILED")], 100, 10),
            Verdict::RollBack(_)
        ));
    }

    #[test]
    fn a_version_that_processed_its_canary_records_is_trusted() {
        let mut canary = Canary::new("wc", (1, 2), 7, 100, &[]);
        let tasks = [task("0_0", 2, "FAILED")];
        assert_eq!(canary.check(&tasks, 110, 10), Verdict::Passed);
    }
}
