//! What the task manager does with a failure, by its [`TaskRecovery`]
//! class: a recoverable commit failure restarts the thread's tasks from the
//! last commit ([`TaskManager::restart_from_last_commit`]); a task failed by
//! its processor (`processing.exception.handler = fail`, Kafka Streams'
//! LogAndFail: a trap, a returned error, a broken memory cap or CPU
//! deadline) or by its store fails that task, not the process; a task whose
//! local state is corrupt is wiped and failed, so its retry restores it.
//!
//! The failed task is closed without committing (under exactly-once the
//! thread's open transaction is aborted, so its other tasks start again from
//! the last commit too), its partitions are no longer fetched, and it is
//! retried from the last commit after a growing backoff, up to
//! `MAX_ATTEMPTS` times; a new version retries it at once. Meanwhile it is
//! listed as FAILED with its error, counted, and the pod is not ready (but
//! alive). Only a fatal error (a client that cannot be created, the state
//! directory gone, a commit failure no restart cures) fails the thread and
//! ends the process. Must never skip a failure silently.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::{MAX_RESETS, RESETS_FOR, TaskManager};
use crate::task::state;
use crate::task::{TaskError, TaskRecovery, TaskStatus};
use crate::topology::TaskId;

/// Failures of one task (without a commit of it in between) before it is
/// left failed until a new version or another owner.
pub(super) const MAX_ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A task its processor failed.
#[derive(Debug, Clone)]
pub(super) struct FailedTask {
    pub error: String,
    /// When to start it again; `None`: not before a new version.
    pub retry_at: Option<Instant>,
}

impl TaskManager {
    /// Routes an error by its recovery class.
    pub(super) fn handle(&mut self, error: TaskError) {
        match error.recovery() {
            TaskRecovery::FailTask(id) => self.fail_task(id, error),
            TaskRecovery::RestoreTask(id) => self.restore_task(id, error),
            TaskRecovery::RestartFromLastCommit => self.restart_from_last_commit(error),
            TaskRecovery::Fatal => self.fail(error),
        }
    }

    /// Task `id`'s local state is corrupt (Kafka Streams'
    /// `TaskCorruptedException`): close it without committing, delete the
    /// corrupt store's copy (every persistent store of the task if the
    /// error does not say which) and fail the task; its retry, after the
    /// usual backoff, restores the store from its changelog.
    fn restore_task(&mut self, id: TaskId, error: TaskError) {
        // Queries must let go of the old database before it is deleted.
        self.forget(id);
        if let Some(task) = self.tasks.remove(&id) {
            self.reader.unregister(id);
            task.close_dirty();
        }
        if let Err(source) = state::wipe(id, &self.setup, error.store()) {
            return self.fail(TaskError::Store { task: id, source });
        }
        tracing::warn!(task_id = %id, store = error.store().unwrap_or("*"),
            "local state is corrupt: deleted it; the task's retry restores it from the changelog");
        self.fail_task(id, error);
    }

    /// Starts the thread's tasks again from the last commit (a fenced or
    /// timed-out transaction, a failed flush, a commit refused by the
    /// group, a consumer that could not pause or resume): abort, close
    /// every task dirty (under exactly-once one transaction spans them all;
    /// under at-least-once their unflushed changelog records are lost),
    /// replace a transactional producer, and leave the tasks for the
    /// thread to start again. After `MAX_RESETS` without a commit in
    /// between, over at least `RESETS_FOR`, fails the thread.
    pub(super) fn restart_from_last_commit(&mut self, error: TaskError) {
        let since = *self.first_reset.get_or_insert_with(Instant::now);
        if self.resets_since_commit >= MAX_RESETS && since.elapsed() >= RESETS_FOR {
            return self.fail(error);
        }
        self.resets_since_commit += 1;
        tracing::warn!(%error, tasks = self.tasks.len(),
            "closing the thread's tasks without committing and starting them again from the last commit");
        self.collector.abort_transaction();
        if self.protocol.replaces_producer_on_reset() {
            // A fenced producer cannot be used again; a new one fences any
            // zombie with our transactional id in turn. While the broker is
            // away `init_transactions` times out: try again.
            match self.replace_collector() {
                Ok(collector) => self.collector = collector,
                Err(e) => return self.fail(e.into()),
            }
        }
        for (id, task) in std::mem::take(&mut self.tasks) {
            self.reader.unregister(id);
            self.forget(id);
            task.close_dirty();
            self.reset.push(id);
        }
        self.report_status();
    }

    /// A new producer, retried with backoff for up to `RESETS_FOR` (a
    /// broker restarting, its transaction coordinator loading).
    fn replace_collector(
        &mut self,
    ) -> Result<Box<dyn crate::commit::Collector>, crate::commit::CommitError> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(200);
        loop {
            match (self.new_collector)() {
                Ok(collector) => return Ok(collector),
                Err(e) if started.elapsed() >= RESETS_FOR => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                        "cannot create the thread's new producer; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Tasks closed by [`TaskManager::restart_from_last_commit`] since the
    /// last call:
    /// the thread re-fetches their partitions from the committed offsets
    /// and assigns them again.
    pub fn take_reset(&mut self) -> Vec<TaskId> {
        std::mem::take(&mut self.reset)
    }

    fn fail_task(&mut self, id: TaskId, error: TaskError) {
        let attempts = {
            let n = self.failed_attempts.entry(id).or_insert(0);
            *n += 1;
            *n
        };
        let retry_at = (attempts < MAX_ATTEMPTS).then(|| {
            let backoff = FIRST_BACKOFF * 2u32.pow(attempts - 1);
            Instant::now() + backoff.min(MAX_BACKOFF)
        });
        tracing::error!(
            task_id = %id, attempts, retry_in_ms = retry_at.map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64),
            "task failed: {error}"
        );
        let close: Vec<TaskId> = if self.protocol.binds_thread() {
            // One transaction spans every task of the thread.
            self.collector.abort_transaction();
            self.tasks.keys().copied().collect()
        } else {
            vec![id]
        };
        for tid in close {
            self.reader.unregister(tid);
            self.forget(tid);
            if let Some(task) = self.tasks.remove(&tid) {
                task.close_dirty();
            }
            if tid != id {
                self.reset.push(tid);
            }
        }
        self.failed.insert(
            id,
            FailedTask {
                error: error.to_string(),
                retry_at,
            },
        );
        self.newly_failed.push(id);
        self.report_status();
    }

    /// Tasks failed since the last call: the thread stops fetching their
    /// partitions.
    pub fn take_newly_failed(&mut self) -> Vec<TaskId> {
        std::mem::take(&mut self.newly_failed)
    }

    /// Failed tasks whose backoff has passed: the thread fetches their
    /// partitions again from the committed offsets and assigns them.
    pub fn take_due_retries(&mut self) -> Vec<TaskId> {
        let now = Instant::now();
        let due: Vec<TaskId> = self
            .failed
            .iter()
            .filter(|(_, f)| f.retry_at.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in &due {
            self.failed.remove(id);
            self.setup.registry.remove(*id);
            tracing::info!(task_id = %id, "retrying the failed task from its last commit");
        }
        due
    }

    /// A new version may not fail where the old one did: retry at once.
    pub(super) fn retry_failed_now(&mut self) {
        let now = Instant::now();
        self.failed_attempts.clear();
        for failed in self.failed.values_mut() {
            failed.retry_at = Some(now);
        }
    }

    /// The tasks in `ids` are no longer this thread's: forget their failures.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(super) fn drop_failed(&mut self, ids: &BTreeSet<TaskId>) {
        for id in ids {
            if self.failed.remove(id).is_some() {
                self.setup.registry.remove(*id);
            }
            self.failed_attempts.remove(id);
        }
    }

    /// Whether `id` is failed here (not running, partitions not fetched).
    pub fn is_failed(&self, id: TaskId) -> bool {
        self.failed.contains_key(&id)
    }

    /// Failed tasks to the registry, metrics and readiness.
    pub(super) fn report_failed(&self) {
        for (id, failed) in &self.failed {
            self.setup.registry.set(
                *id,
                TaskStatus {
                    task_id: id.to_string(),
                    thread: self.thread + 1,
                    topology: self.setup.component.topology().name.clone(),
                    version: self.setup.version,
                    component: self.setup.component.label(),
                    state: "FAILED".into(),
                    lag: None,
                    error: Some(failed.error.clone()),
                },
            );
        }
        self.setup.metrics.tasks_failed.store(
            self.failed.len() as i64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.lifecycle.failed_tasks(self.thread, self.failed.len());
    }
}
