//! The task manager of one stream thread: reacts to assigned, revoked and
//! lost partitions, drives restoration, routes records to tasks, fires
//! wall-clock punctuations, and runs the commit cycle.
//!
//! It owns the thread's producer (a [`Collector`]) and changelog readers
//! (one restoring actives, one tailing for standbys), and receives the
//! consumer only as a [`SourceConsumer`], per call. Standby tasks are kept
//! beside the actives; an active whose task stays here as a standby hands
//! its open stores over, and a standby that becomes active hands them back. After a
//! failure it stops doing work and keeps the error for the thread to report.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{StandbyTask, StreamTask, TaskError, TaskSetup, TaskState, stream_time};
use crate::changelog::ChangelogReader;
use crate::commit::{Collector, CommitParticipant, CommitProtocol};
use crate::config::Config;
use crate::group::{SourceConsumer, TopicPartition};
use crate::lifecycle::{Lifecycle, ThreadStatus};
use crate::query::Role;
use crate::runtime::LoadedComponent;
use crate::runtime::bindings::IncomingRecord;
use crate::topics::TopicPlan;
use crate::topology::TaskId;

mod clients;
mod failures;
#[cfg(test)]
pub(crate) mod fixtures;
mod rebalance;
mod registration;
mod restore;
mod standbys;
#[cfg(test)]
mod tests;

pub use clients::{Clients, CollectorFactory};
use failures::FailedTask;

/// Resets without a successful commit in between before a commit failure
/// fails the thread after all, once they have also gone on for
/// `RESETS_FOR`: a broker restart can cost several resets in a row, a
/// record the broker always refuses costs them forever.
pub(super) const MAX_RESETS: u32 = 5;
pub(super) const RESETS_FOR: Duration = Duration::from_secs(300);

/// Store-buffer bytes below which no commit is forced before
/// `commit.interval.ms`, whatever `statestore.cache.max.bytes` says.
const MIN_FORCED_COMMIT_BYTES: usize = 1 << 20;
/// Changelog records read per batch of a restore (two per step): large
/// batches cost RocksDB less per record (a restore of 2M records ran at
/// 567-689k records/s with 10,000, four per step, and 897-912k with
/// 40,000, two per step), and a step takes about 100 ms on 2 cores.
/// `changelog::read` also stops a batch at a byte budget, so large values
/// do not make it large.
pub(super) const RESTORE_BATCH: usize = 40_000;
/// Changelog records read per standby step: standbys are applied between
/// rounds of active processing, so their steps stay short.
pub(super) const STANDBY_BATCH: usize = 10_000;
/// How often restore and standby progress reach status and metrics.
pub(super) const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// The least time between two reads of the committed offsets standbys of
/// stores restored from their source read up to.
const STANDBY_LIMITS_EVERY: Duration = Duration::from_secs(1);

/// What a task manager is built from.
#[derive(Clone)]
pub struct TaskManagerSetup {
    pub config: Arc<Config>,
    pub thread: usize,
    pub tasks: TaskSetup,
    pub lifecycle: Arc<Lifecycle>,
}

pub struct TaskManager {
    config: Arc<Config>,
    thread: usize,
    setup: TaskSetup,
    lifecycle: Arc<Lifecycle>,
    tasks: BTreeMap<TaskId, StreamTask>,
    collector: Box<dyn Collector>,
    /// Makes `collector`, and its replacement after a reset that leaves a
    /// producer unusable.
    new_collector: CollectorFactory,
    protocol: CommitProtocol,
    reader: ChangelogReader,
    standbys: BTreeMap<TaskId, StandbyTask>,
    /// Tails the standbys' changelogs; never blocks the actives' restore.
    standby_reader: ChangelogReader,
    /// The standbys the last assignment gave this thread.
    standby_target: BTreeSet<TaskId>,
    /// When standby progress was last published.
    standbys_published: Instant,
    /// When the standbys' limits on their source topics were last read
    /// from the group's committed offsets.
    standby_limits_read: Instant,
    /// When restore progress was last published.
    restore_published: Instant,
    last_commit: Instant,
    failure: Option<TaskError>,
    /// Tasks closed dirty after a recoverable commit failure, for the
    /// thread to start again from the last commit.
    reset: Vec<TaskId>,
    /// Tasks failed by their processor, kept out of processing.
    failed: BTreeMap<TaskId, FailedTask>,
    /// Failures per task since its last commit.
    failed_attempts: BTreeMap<TaskId, u32>,
    /// Failed since the thread last looked: their partitions to unassign.
    newly_failed: Vec<TaskId>,
    /// Resets since the last successful commit: a failure that comes back
    /// every time (a record the broker always refuses) must not loop.
    resets_since_commit: u32,
    /// When the first of those resets happened.
    first_reset: Option<Instant>,
}

impl TaskManager {
    /// A task manager on the Kafka cluster of its configuration.
    #[cfg(feature = "server")]
    pub fn new(setup: TaskManagerSetup) -> Result<Self, TaskError> {
        let clients = Clients::kafka(&setup.config, setup.thread);
        Self::with_clients(setup, clients)
    }

    pub fn with_clients(setup: TaskManagerSetup, clients: Clients) -> Result<Self, TaskError> {
        let Clients {
            collectors: mut new_collector,
            changelogs,
        } = clients;
        let collector = new_collector()?;
        // The collector's guarantee decides (a transactional producer or
        // not); the configuration made it.
        let protocol = CommitProtocol::of(collector.guarantee());
        Ok(TaskManager {
            new_collector,
            protocol,
            reader: ChangelogReader::new(changelogs.clone()),
            standbys: BTreeMap::new(),
            standby_reader: ChangelogReader::new(changelogs),
            standby_target: BTreeSet::new(),
            standbys_published: Instant::now(),
            standby_limits_read: Instant::now(),
            restore_published: Instant::now(),
            config: setup.config,
            thread: setup.thread,
            setup: TaskSetup {
                // This thread's tasks share this thread's budget.
                record_cache: Arc::default(),
                ..setup.tasks
            },
            lifecycle: setup.lifecycle,
            tasks: BTreeMap::new(),
            collector,
            last_commit: Instant::now(),
            failure: None,
            reset: Vec::new(),
            failed: BTreeMap::new(),
            failed_attempts: BTreeMap::new(),
            newly_failed: Vec::new(),
            resets_since_commit: 0,
            first_reset: None,
        })
    }

    /// Active task `id`, if this manager runs it.
    pub fn task(&self, id: TaskId) -> Option<&StreamTask> {
        self.tasks.get(&id)
    }

    /// The first error this manager hit; once set, it does no more work.
    pub fn take_failure(&mut self) -> Option<TaskError> {
        self.failure.take()
    }

    pub fn has_failed(&self) -> bool {
        self.failure.is_some()
    }

    fn fail(&mut self, error: TaskError) {
        if self.failure.is_none() {
            self.failure = Some(error);
        }
    }

    /// Whether changelog restoration has work to do (the loop must not
    /// block in `poll` then).
    pub fn is_restoring(&self) -> bool {
        !self.reader.is_idle()
    }

    /// Task `id` left this thread: no longer listed, no longer queryable.
    pub(super) fn forget(&self, id: TaskId) {
        self.setup.registry.remove(id);
        self.setup.queries.remove_task(id);
    }

    /// Gives each task of the thread its share of `statestore.cache.max.bytes`
    /// for its processor's record cache (read by the guest every call). At
    /// most a quarter of the call cap: a `flush` writes and forwards all a
    /// task's caches hold in one call. None under `continue`: an instance
    /// replaced after a trap would take the updates it held since the last
    /// commit with it.
    fn share_record_cache(&self) {
        let share = if self.setup.errors.skip_failing_records {
            0
        } else {
            (self.config.statestore_cache_max_bytes / self.tasks.len().max(1))
                .min(self.config.wasm_max_call_bytes / 4)
        };
        self.setup
            .record_cache
            .store(share, std::sync::atomic::Ordering::Relaxed);
    }

    /// Publishes task states to metrics, the registry, interactive queries
    /// and the lifecycle. Runs after every change to the task set, so it
    /// also reshares the record cache.
    pub(crate) fn report_status(&self) {
        self.share_record_cache();
        let restoring = self
            .tasks
            .values()
            .filter(|t| t.state() == TaskState::Restoring)
            .count() as i64;
        let running = self.tasks.len() as i64 - restoring;
        let m = &self.setup.metrics;
        // Per-thread gauges would need labels; with one thread these are exact.
        m.tasks_restoring
            .store(restoring, std::sync::atomic::Ordering::Relaxed);
        m.tasks_running
            .store(running, std::sync::atomic::Ordering::Relaxed);
        m.restore_remaining.store(
            self.reader.remaining(),
            std::sync::atomic::Ordering::Relaxed,
        );
        m.tasks_standby.store(
            self.standbys.len() as i64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let mut standby_lag = 0;
        for task in self.tasks.values() {
            self.setup.registry.set(task.id(), task.status(self.thread));
            let role = match task.state() {
                TaskState::Running => Role::Active,
                TaskState::Restoring => Role::Restoring,
            };
            self.setup.queries.set_task(task.id(), role, task.readers());
        }
        for standby in self.standbys.values() {
            let lag = self.standby_reader.lag(standby.id());
            standby_lag += lag;
            self.setup
                .registry
                .set(standby.id(), standby.status(self.thread, lag));
            self.setup
                .queries
                .set_task(standby.id(), Role::Standby { lag }, standby.readers());
        }
        m.standby_lag
            .store(standby_lag, std::sync::atomic::Ordering::Relaxed);
        self.report_failed();
        let status = if restoring == 0 {
            ThreadStatus::Running
        } else {
            ThreadStatus::Rebalancing
        };
        self.lifecycle.thread_status(self.thread, status);
    }

    /// A new active task: on a standby's open stores if this thread keeps
    /// one (only the changelog tail since its last applied offset is
    /// restored), on freshly opened ones otherwise.
    /// `stream_time`: what a previous owner committed (see
    /// `task::stream_time`).
    fn create_task(
        &mut self,
        id: TaskId,
        stream_time: Option<i64>,
        consumer: &dyn SourceConsumer,
    ) -> Result<(), TaskError> {
        let mut task = match self.standbys.remove(&id) {
            Some(standby) => {
                self.standby_reader.unregister(id);
                let (stores, guards) = standby.into_stores();
                StreamTask::on_stores(id, &self.setup, stores, guards)?
            }
            None => StreamTask::new(id, &self.setup)?,
        };
        if let Some(committed) = stream_time {
            task.resume_stream_time(committed);
        }
        self.restore_or_start(&mut task, None, consumer)?;
        self.tasks.insert(id, task);
        Ok(())
    }

    /// The stream time committed with the offsets of `partitions`, per
    /// task, read in one request. A broker that cannot tell costs the
    /// resumed stream time, never the tasks.
    fn committed_stream_times(
        partitions: &[TopicPartition],
        consumer: &dyn SourceConsumer,
    ) -> BTreeMap<TaskId, i64> {
        match consumer.committed(partitions) {
            Ok(committed) => stream_time::per_task(&committed),
            Err(e) => {
                tracing::warn!(error = %e,
                    "cannot read the stream time committed with the tasks' offsets; they start from their records");
                BTreeMap::new()
            }
        }
    }

    /// Switches every task to a new release at this commit boundary: commit,
    /// swap each task's processor on its stores, restore stores the new
    /// version added, start. Logs and records the processing pause.
    pub fn swap_to(
        &mut self,
        version: u32,
        component: Arc<LoadedComponent>,
        plan: Arc<TopicPlan>,
        consumer: &dyn SourceConsumer,
    ) {
        if self.failure.is_some() {
            return;
        }
        let setup = TaskSetup {
            version,
            component,
            plan,
            ..self.setup.clone()
        };
        let started = Instant::now();
        let from = self.setup.component.label();
        if let Err(e) = self.commit_all(consumer) {
            self.fail(e);
            return;
        }
        let committed = started.elapsed();
        self.setup = setup;
        // Standbys reopen on the new version's store list.
        self.close_standbys(|_| true);
        self.retry_failed_now();
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            // A failure under exactly-once closes every task of the thread.
            let Some(mut task) = self.tasks.remove(&id) else {
                continue;
            };
            let was_restoring = task.state() == TaskState::Restoring;
            self.reader.unregister(id);
            // A task still restoring restarts its restore on the new stores
            // list; a running one restores only the stores that are new.
            let result = task.swap(&self.setup).and_then(|added| {
                let only = (!was_restoring).then_some(added.as_slice());
                self.restore_or_start(&mut task, only, consumer)
            });
            self.tasks.insert(id, task);
            if let Err(e) = result {
                self.handle(e);
                if self.failure.is_some() {
                    return;
                }
            }
        }
        self.apply_standbys();
        let pause = started.elapsed();
        self.setup.metrics.record_swap(pause.as_micros() as u64);
        tracing::info!(
            from = %from, to = %self.setup.component.label(), version = self.setup.version,
            tasks = self.tasks.len(), pause_ms = pause.as_millis() as u64,
            commit_ms = committed.as_secs_f64() * 1000.0,
            "swapped processor version (processing paused {:.1} ms)", pause.as_secs_f64() * 1000.0
        );
        self.report_status();
    }

    /// Hands polled records, grouped by partition in offset order, to their
    /// tasks. Records of partitions no longer owned are dropped: their new
    /// owner reads them from the committed offset.
    pub fn process(&mut self, batches: Vec<(String, i32, Vec<IncomingRecord>)>) {
        for (topic, partition, records) in batches {
            if self.failure.is_some() {
                return;
            }
            let id = TaskId::for_partition(partition);
            let Some(task) = self.tasks.get_mut(&id) else {
                continue;
            };
            if let Err(e) = task.process(&topic, records, self.collector.as_mut()) {
                self.handle(e);
            }
        }
        // Records waiting for an empty input (`max.task.idle.ms`) go once
        // it has waited long enough, new records or not.
        let waiting: Vec<TaskId> = self
            .tasks
            .values()
            .filter(|t| t.has_waiting_records())
            .map(StreamTask::id)
            .collect();
        for id in waiting {
            if self.failure.is_some() {
                return;
            }
            let Some(task) = self.tasks.get_mut(&id) else {
                continue;
            };
            if let Err(e) = task.process_ready(self.collector.as_mut()) {
                self.handle(e);
            }
        }
        if let Err(e) = self.collector.poll() {
            self.handle(e.into());
        }
    }

    pub fn punctuate_wall_clock(&mut self) {
        let mut error = None;
        for task in self.tasks.values_mut() {
            if let Err(e) = task.punctuate_wall_clock(self.collector.as_mut()) {
                error = Some(e);
                break;
            }
        }
        if let Some(e) = error {
            self.handle(e);
        }
    }

    /// Commits when `commit.interval.ms` has passed or the store buffers
    /// exceed `statestore.cache.max.bytes` (at least `MIN_FORCED_COMMIT_BYTES`:
    /// 0 turns the record cache off, not into a commit every pass).
    pub fn maybe_commit(&mut self, consumer: &dyn SourceConsumer) {
        if self.failure.is_some() {
            return;
        }
        let due = self.last_commit.elapsed() >= self.config.commit_interval;
        // Committed offsets move at the actives' commits: read them as
        // often, but not more than once a second.
        let limits_every = self.config.commit_interval.max(STANDBY_LIMITS_EVERY);
        if self.standby_limits_read.elapsed() >= limits_every {
            self.standby_limits_read = Instant::now();
            self.refresh_standby_limits(consumer);
        }
        let full = || {
            self.tasks
                .values()
                .map(StreamTask::dirty_bytes)
                .sum::<usize>()
                > self
                    .config
                    .statestore_cache_max_bytes
                    .max(MIN_FORCED_COMMIT_BYTES)
        };
        if (due || full())
            && let Err(e) = self.commit_all(consumer)
        {
            self.handle(e);
        }
    }

    /// Commits every task that has something to commit.
    pub fn commit_all(&mut self, consumer: &dyn SourceConsumer) -> Result<(), TaskError> {
        self.last_commit = Instant::now();
        for task in self.tasks.values_mut().filter(|t| t.needs_commit()) {
            task.flush(self.collector.as_mut())?;
        }
        let committing: Vec<TaskId> = self
            .tasks
            .values()
            .filter(|t| t.needs_commit())
            .map(StreamTask::id)
            .collect();
        let mut participants: Vec<&mut dyn CommitParticipant> = self
            .tasks
            .values_mut()
            .filter(|t| t.needs_commit())
            .map(|t| t as &mut dyn CommitParticipant)
            .collect();
        if participants.is_empty() && self.collector.pending() == 0 {
            return Ok(());
        }
        self.lifecycle.commit_started(self.thread);
        let result = self
            .protocol
            .commit(&mut participants, self.collector.as_mut(), consumer);
        self.lifecycle.commit_finished(self.thread);
        let stats = result?;
        self.resets_since_commit = 0;
        self.first_reset = None;
        // Progress committed: a later failure starts its count again.
        for id in committing {
            self.failed_attempts.remove(&id);
        }
        self.setup
            .metrics
            .record_commit(stats.elapsed.as_micros() as u64, stats.changelog_records);
        tracing::debug!(
            tasks = stats.tasks,
            changelog_records = stats.changelog_records,
            elapsed_ms = stats.elapsed.as_secs_f64() * 1000.0,
            flush_ms = stats.flush.as_secs_f64() * 1000.0,
            "committed"
        );
        Ok(())
    }

    /// Ordered close of every task: commit, then close clean. After a
    /// failure of one task (a guest trap or error, a store failure) under
    /// at-least-once, only that task is closed dirty (nothing of it
    /// committed) and the others are committed and closed clean; any other
    /// failure, or a failure under exactly-once (one transaction spans every
    /// task of the thread), closes every task dirty and aborts.
    pub fn close_all(&mut self, consumer: &dyn SourceConsumer, clean: bool) {
        let failed_task = self.failure.as_ref().and_then(TaskError::task);
        let isolate = failed_task.is_some() && !self.protocol.binds_thread();
        if let (true, Some(id)) = (isolate, failed_task)
            && let Some(task) = self.tasks.remove(&id)
        {
            self.reader.unregister(id);
            self.forget(id);
            task.close_dirty();
        }
        let mut clean = clean && (self.failure.is_none() || isolate);
        if clean && let Err(e) = self.commit_all(consumer) {
            tracing::error!(error = %e, "final commit failed; closing tasks dirty");
            self.fail(e);
            clean = false;
        }
        if !clean {
            self.collector.abort_transaction();
        }
        for (id, task) in std::mem::take(&mut self.tasks) {
            self.reader.unregister(id);
            self.forget(id);
            if clean {
                task.close_clean();
            } else {
                task.close_dirty();
            }
        }
        // Standbys hold only what the changelogs committed: always clean.
        self.close_standbys(|_| true);
        self.report_status();
    }
}
