//! A stream thread and its poll loop. Each pass applies the thread's
//! share of a new group assignment (revoked tasks committed and closed,
//! gained ones created and their partitions fetched from the committed
//! offsets), polls a batch of records, then lets the task manager restore,
//! process, punctuate and maybe commit. On shutdown it closes its tasks
//! (committing unless something failed) and then its fetcher.
//!
//! The loop reaches Kafka through two seams: a [`Fetcher`] (the source
//! consumer: [`kafka::KafkaFetcher`] in production) and a [`ThreadGroup`]
//! (its share of the group's assignment: [`StreamsGroup`]), so it is unit
//! tested without a broker (`tests.rs`).
//!
//! Blocking work (Wasm calls, RocksDB) happens here, on a dedicated OS
//! thread, never on an async reactor; group heartbeats run on the
//! membership's own thread, so a long call never costs the membership.

mod kafka;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::group::{RebalanceListener, SourceConsumer, StreamsGroup, ThreadUpdate, TopicPartition};
use crate::lifecycle::{Lifecycle, ThreadStatus};
use crate::release::Target;
use crate::runtime::bindings::IncomingRecord;
use crate::task::{TaskError, TaskManager, TaskManagerSetup, TaskSetup};
use crate::topics::TopicPlan;
use crate::topology::TaskId;

const IDLE_POLL: Duration = Duration::from_millis(100);
/// How long a restore step waits for changelog records when the loop has
/// nothing else to do.
const RESTORE_POLL: Duration = Duration::from_millis(10);

/// Polled records by partition: `(topic, partition, records in offset
/// order)`. An entry with no records says the consumer has read the
/// partition to the end of its log after the entries before it (the last
/// stable offset under `read_committed`): a task's other inputs need not
/// wait for more of it.
pub(crate) type Batches = Vec<(String, i32, Vec<IncomingRecord>)>;

/// Where a stream thread's records come from: a consumer that fetches the
/// partitions it is given (starting at the group's committed offsets) and
/// is the [`SourceConsumer`] its task manager commits through.
pub(crate) trait Fetcher: SourceConsumer + Send {
    /// Starts fetching `partitions` from the group's committed offsets
    /// (`auto.offset.reset` where none is committed).
    fn add(&mut self, partitions: &[TopicPartition]) -> Result<(), String>;
    /// Stops fetching `partitions`.
    fn remove(&mut self, partitions: &[TopicPartition]) -> Result<(), String>;
    /// Up to `max` records, waiting up to `wait` for the first one.
    fn poll(&mut self, wait: Duration, max: usize, plan: &TopicPlan) -> Batches;
    /// Once per pass: a chance to check that fetching has not stalled
    /// (`restoring`: partitions are paused, quiet is expected).
    fn watch(&mut self, _restoring: bool) {}
    /// The thread is done with it.
    fn close(self: Box<Self>) {}
}

/// The group as one stream thread sees it: its share of each assignment,
/// and what it reports back.
pub(crate) trait ThreadGroup: Send + Sync {
    /// Thread `thread`'s target if it changed since epoch `seen`.
    fn update_for(&self, thread: usize, seen: u64) -> Option<ThreadUpdate>;
    /// Thread `thread` now runs `owned`, as of `epoch`.
    fn applied(&self, thread: usize, epoch: u64, owned: BTreeSet<TaskId>);
    /// Thread `thread` keeps these standbys, at these changelog offset sums.
    fn report_standbys(&self, thread: usize, offset_sums: BTreeMap<TaskId, i64>);
    /// Thread `thread` stopped: it owns nothing.
    fn thread_stopped(&self, thread: usize);
}

impl ThreadGroup for StreamsGroup {
    fn update_for(&self, thread: usize, seen: u64) -> Option<ThreadUpdate> {
        StreamsGroup::update_for(self, thread, seen)
    }

    fn applied(&self, thread: usize, epoch: u64, owned: BTreeSet<TaskId>) {
        StreamsGroup::applied(self, thread, epoch, owned)
    }

    fn report_standbys(&self, thread: usize, offset_sums: BTreeMap<TaskId, i64>) {
        StreamsGroup::report_standbys(self, thread, offset_sums)
    }

    fn thread_stopped(&self, thread: usize) {
        StreamsGroup::thread_stopped(self, thread)
    }
}

/// Groups polled records by partition, in arrival (offset) order, and
/// names each batch's declared source once.
pub(crate) struct BatchesBuilder<'p> {
    plan: &'p TopicPlan,
    batches: Batches,
    /// The declared source of each batch, by batch index.
    sources: Vec<&'p str>,
    count: usize,
}

impl<'p> BatchesBuilder<'p> {
    pub(crate) fn new(plan: &'p TopicPlan) -> Self {
        BatchesBuilder {
            plan,
            batches: Vec::new(),
            sources: Vec::new(),
            count: 0,
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Adds the record `make` builds, given its declared source name (the
    /// topic's when the plan does not name it).
    pub(crate) fn push(
        &mut self,
        topic: &str,
        partition: i32,
        make: impl FnOnce(&str) -> IncomingRecord,
    ) {
        self.count += 1;
        // Few partitions per poll: a scan beats allocating a key.
        let slot = match self
            .batches
            .iter()
            .rposition(|(t, p, _)| *p == partition && t == topic)
        {
            Some(slot) => slot,
            None => {
                self.batches
                    .push((topic.to_string(), partition, Vec::new()));
                self.sources
                    .push(self.plan.source_name(topic).unwrap_or(""));
                self.batches.len() - 1
            }
        };
        let source = if self.sources[slot].is_empty() {
            topic
        } else {
            self.sources[slot]
        };
        self.batches[slot].2.push(make(source));
    }

    /// The consumer has read `topic`/`partition` to its end: an entry of
    /// its own, after the records polled before, which takes the records
    /// (if any) polled after.
    pub(crate) fn reached_end(&mut self, topic: &str, partition: i32) {
        self.batches
            .push((topic.to_string(), partition, Vec::new()));
        self.sources
            .push(self.plan.source_name(topic).unwrap_or(""));
    }

    pub(crate) fn finish(self) -> Batches {
        self.batches
    }
}

pub(crate) struct StreamThread {
    index: usize,
    config: Arc<Config>,
    tasks: TaskManager,
    fetcher: Box<dyn Fetcher>,
    group: Arc<dyn ThreadGroup>,
    lifecycle: Arc<Lifecycle>,
    plan: Arc<TopicPlan>,
    target: Arc<Target>,
    /// The release generation this thread runs.
    generation: u64,
    /// The group assignment epoch this thread has applied.
    epoch: u64,
    /// The active tasks this thread runs.
    owned: BTreeSet<TaskId>,
}

impl StreamThread {
    pub(crate) fn new(
        index: usize,
        config: Arc<Config>,
        setup: TaskSetup,
        lifecycle: Arc<Lifecycle>,
        target: Arc<Target>,
        group: Arc<StreamsGroup>,
    ) -> Result<Self, TaskError> {
        let fetcher =
            kafka::KafkaFetcher::new(index, config.clone(), group.clone(), setup.metrics.clone())?;
        let plan = setup.plan.clone();
        let tasks = TaskManager::new(TaskManagerSetup {
            config: config.clone(),
            thread: index,
            tasks: setup,
            lifecycle: lifecycle.clone(),
        })?;
        Ok(Self::with_parts(
            index,
            config,
            tasks,
            Box::new(fetcher),
            group,
            lifecycle,
            target,
            plan,
        ))
    }

    /// A thread over any fetcher and group (the unit tests' in-memory ones).
    #[allow(clippy::too_many_arguments)]
    fn with_parts(
        index: usize,
        config: Arc<Config>,
        tasks: TaskManager,
        fetcher: Box<dyn Fetcher>,
        group: Arc<dyn ThreadGroup>,
        lifecycle: Arc<Lifecycle>,
        target: Arc<Target>,
        plan: Arc<TopicPlan>,
    ) -> Self {
        StreamThread {
            index,
            config,
            tasks,
            fetcher,
            group,
            lifecycle,
            plan,
            target,
            generation: 0,
            epoch: 0,
            owned: BTreeSet::new(),
        }
    }

    /// Runs until shutdown is requested or a task fails.
    pub(crate) fn run(mut self) -> Result<(), TaskError> {
        let span = tracing::info_span!("stream_thread", thread = self.index + 1);
        let _entered = span.enter();
        self.lifecycle
            .thread_status(self.index, ThreadStatus::Rebalancing);
        tracing::info!(topics = ?self.plan.sources, group = %self.config.application_id, "stream thread started");
        while !self.lifecycle.shutdown_requested() && !self.target.stop_requested() {
            if !self.pass() {
                break;
            }
        }
        self.finish()
    }

    /// One pass of the loop; false once a failure ends the thread.
    fn pass(&mut self) -> bool {
        if let Some((generation, release)) = self.target.newer_than(self.generation) {
            self.tasks.swap_to(
                release.version,
                release.component.clone(),
                release.plan.clone(),
                &*self.fetcher,
            );
            self.plan = release.plan.clone();
            self.generation = generation;
            self.target.applied(self.index, Some(generation));
        }
        self.maybe_apply_assignment();
        let batches = self.poll_records();
        if self.tasks.has_failed() {
            return false;
        }
        // With nothing else to do, wait for the changelog rather than spin:
        // on a small machine a spinning loop takes the core the consumer's
        // fetcher (and a co-located broker) needs.
        let restore_wait = if batches.is_empty() {
            RESTORE_POLL
        } else {
            Duration::ZERO
        };
        self.tasks.restore_step(&*self.fetcher, restore_wait);
        if self.tasks.standby_step() {
            self.group
                .report_standbys(self.index, self.tasks.standby_offset_sums());
        }
        self.tasks.process(batches);
        self.tasks.punctuate_wall_clock();
        self.tasks.maybe_commit(&*self.fetcher);
        if self.tasks.has_failed() {
            return false;
        }
        self.restart_reset_tasks();
        self.follow_failed_tasks();
        self.fetcher.watch(self.tasks.is_restoring());
        true
    }

    /// Closes the tasks (the task manager decides what a failure still
    /// allows to commit), then the fetcher; returns the failure that ended
    /// the thread, if one did.
    fn finish(mut self) -> Result<(), TaskError> {
        let failed = self.tasks.has_failed();
        tracing::info!(
            failed,
            "stream thread shutting down: committing and closing tasks"
        );
        self.tasks.close_all(&*self.fetcher, true);
        let failure = self.tasks.take_failure();
        self.group.thread_stopped(self.index);
        self.fetcher.close();
        self.lifecycle.thread_status(self.index, ThreadStatus::Dead);
        self.target.applied(self.index, None);
        match failure {
            Some(e) => Err(e),
            None => {
                tracing::info!("stream thread stopped");
                Ok(())
            }
        }
    }

    /// Every source partition of `tasks`.
    fn partitions(&self, tasks: &BTreeSet<TaskId>) -> Vec<TopicPartition> {
        tasks
            .iter()
            .flat_map(|t| self.plan.sources.iter().map(|s| (s.clone(), t.partition)))
            .collect()
    }

    /// Applies this thread's share of a new group assignment, if there is
    /// one: tasks that stay are not touched; lost ones are closed without
    /// committing, revoked ones after a commit; gained ones are created.
    fn maybe_apply_assignment(&mut self) {
        let Some(update) = self.group.update_for(self.index, self.epoch) else {
            return;
        };
        let warn = |what: &str, r: Result<(), String>| {
            if let Err(e) = r {
                tracing::warn!(error = %e, "{what} failed");
            }
        };
        if update.lost && !self.owned.is_empty() {
            let parts = self.partitions(&self.owned);
            tracing::warn!(tasks = ?self.owned.iter().map(ToString::to_string).collect::<Vec<_>>(), "tasks lost");
            self.tasks.on_lost(&parts);
            warn("unassigning lost partitions", self.fetcher.remove(&parts));
            self.owned.clear();
        }
        // Before the active changes: a revoked task that stays here as a
        // standby keeps its stores open.
        self.tasks.set_standby_target(update.standby.clone());
        let revoked: BTreeSet<TaskId> = self.owned.difference(&update.active).copied().collect();
        let gained: BTreeSet<TaskId> = update.active.difference(&self.owned).copied().collect();
        if !revoked.is_empty() {
            let parts = self.partitions(&revoked);
            tracing::info!(tasks = ?revoked.iter().map(ToString::to_string).collect::<Vec<_>>(), "tasks revoked");
            self.tasks.on_revoked(&parts, &*self.fetcher);
            warn(
                "unassigning revoked partitions",
                self.fetcher.remove(&parts),
            );
        }
        if !gained.is_empty() {
            let parts = self.partitions(&gained);
            tracing::info!(tasks = ?gained.iter().map(ToString::to_string).collect::<Vec<_>>(), "tasks assigned");
            warn("assigning partitions", self.fetcher.add(&parts));
            self.tasks.on_assigned(&parts, &*self.fetcher);
        }
        self.tasks.apply_standbys();
        self.group
            .report_standbys(self.index, self.tasks.standby_offset_sums());
        self.owned = update.active;
        self.epoch = update.epoch;
        self.restart_reset_tasks();
        self.follow_failed_tasks();
        self.group
            .applied(self.index, update.epoch, self.owned.clone());
    }

    /// Starts again, from the committed offsets, the tasks the task manager
    /// closed after a recoverable commit failure (those still ours).
    fn restart_reset_tasks(&mut self) {
        let reset = self.tasks.take_reset();
        // Unassigned first: what was fetched past the commit is dropped.
        self.fetch_again(reset, true, "tasks restarted from the last commit");
    }

    /// Stops fetching the partitions of tasks their processor just failed,
    /// and fetches again (from the committed offsets) those whose retry is
    /// due and that are still ours.
    fn follow_failed_tasks(&mut self) {
        let failed: BTreeSet<TaskId> = self.tasks.take_newly_failed().into_iter().collect();
        if !failed.is_empty()
            && let Err(e) = self.fetcher.remove(&self.partitions(&failed))
        {
            tracing::warn!(error = %e, "unassigning failed tasks' partitions failed");
        }
        let due = self.tasks.take_due_retries();
        self.fetch_again(due, false, "failed tasks retried from the last commit");
    }

    /// Fetches the partitions of `tasks` that are still ours from the
    /// committed offsets (unassigning them first if `unassign`) and has the
    /// task manager start those tasks.
    fn fetch_again(&mut self, tasks: Vec<TaskId>, unassign: bool, what: &str) {
        let tasks: BTreeSet<TaskId> = tasks
            .into_iter()
            .filter(|t| self.owned.contains(t))
            .collect();
        if tasks.is_empty() {
            return;
        }
        let parts = self.partitions(&tasks);
        if unassign && let Err(e) = self.fetcher.remove(&parts) {
            tracing::warn!(error = %e, "unassigning partitions to fetch them again failed");
        }
        if let Err(e) = self.fetcher.add(&parts) {
            tracing::warn!(error = %e, "assigning partitions to fetch them again failed");
        }
        tracing::info!(tasks = ?tasks.iter().map(ToString::to_string).collect::<Vec<_>>(), "{what}");
        self.tasks.on_assigned(&parts, &*self.fetcher);
    }

    /// Polls up to `max.poll.records` records, grouped by partition in
    /// arrival (offset) order. Waits only if nothing is restoring and no
    /// standby is catching up.
    fn poll_records(&mut self) -> Batches {
        let restoring = self.tasks.is_restoring() || self.tasks.standbys_behind();
        let wait = if restoring { Duration::ZERO } else { IDLE_POLL };
        self.fetcher
            .poll(wait, self.config.max_poll_records, &self.plan)
    }
}
