//! A stream thread: one source consumer (librdkafka in `assign()` mode)
//! and its poll loop. Each pass applies the thread's share of a new group
//! assignment (revoked tasks committed and closed, gained ones created and
//! their partitions fetched from the committed offsets), polls a batch of
//! records, then lets the task manager restore, process, punctuate and
//! maybe commit. On shutdown it closes its tasks (committing unless
//! something failed) and then the consumer.
//!
//! Blocking work (Wasm calls, RocksDB) happens here, on a dedicated OS
//! thread, never on an async reactor; group heartbeats run on the
//! membership's own thread, so a long call never costs the membership.

use std::collections::BTreeSet;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::config::Config;
use crate::group::{
    FetchWatch, GroupSource, QuietPartition, RebalanceListener, STALL_AFTER, SourceContext,
    StreamsGroup, TopicPartition, stalled,
};
use crate::lifecycle::{Lifecycle, ThreadStatus};
use crate::metrics::Metrics;
use crate::release::Target;
use crate::runtime::bindings::{Header, IncomingRecord};
use crate::task::{TaskError, TaskManager, TaskManagerSetup, TaskSetup};
use crate::topics::TopicPlan;
use crate::topology::TaskId;

const IDLE_POLL: Duration = Duration::from_millis(100);
/// Bounds each broker round trip made to judge a quiet partition.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

type Batches = Vec<(String, i32, Vec<IncomingRecord>)>;

pub(crate) struct StreamThread {
    index: usize,
    config: Arc<Config>,
    tasks: TaskManager,
    consumer: BaseConsumer<SourceContext>,
    group: Arc<StreamsGroup>,
    lifecycle: Arc<Lifecycle>,
    plan: Arc<TopicPlan>,
    target: Arc<Target>,
    /// The release generation this thread runs.
    generation: u64,
    /// The group assignment epoch this thread has applied.
    epoch: u64,
    /// The active tasks this thread runs.
    owned: BTreeSet<TaskId>,
    /// When each fetched partition last delivered (see `watch_fetching`).
    watch: FetchWatch,
    metrics: Arc<Metrics>,
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
        let plan = setup.plan.clone();
        let metrics = setup.metrics.clone();
        let tasks = TaskManager::new(TaskManagerSetup {
            config: config.clone(),
            thread: index,
            tasks: setup,
            lifecycle: lifecycle.clone(),
        })?;
        let consumer = new_source_consumer(&config, index)?;
        Ok(StreamThread {
            index,
            config,
            tasks,
            consumer,
            group,
            lifecycle,
            plan,
            target,
            generation: 0,
            epoch: 0,
            owned: BTreeSet::new(),
            watch: FetchWatch::new(Instant::now()),
            metrics,
        })
    }

    /// Runs until shutdown is requested or a task fails.
    pub(crate) fn run(mut self) -> Result<(), TaskError> {
        let span = tracing::info_span!("stream_thread", thread = self.index + 1);
        let _entered = span.enter();
        self.lifecycle
            .thread_status(self.index, ThreadStatus::Rebalancing);
        tracing::info!(topics = ?self.plan.sources, group = %self.config.application_id, "stream thread started");

        while !self.lifecycle.shutdown_requested() && !self.target.stop_requested() {
            if let Some((generation, release)) = self.target.newer_than(self.generation) {
                let source = GroupSource {
                    consumer: &self.consumer,
                    group: &self.group,
                };
                self.tasks.swap_to(
                    release.version,
                    release.component.clone(),
                    release.plan.clone(),
                    &source,
                );
                self.plan = release.plan.clone();
                self.generation = generation;
                self.target.applied(self.index, Some(generation));
            }
            self.maybe_apply_assignment();
            let batches = self.poll_records();
            if self.tasks.has_failed() {
                break;
            }
            let now = Instant::now();
            for (topic, partition, _) in &batches {
                self.watch.received(topic, *partition, now);
            }
            let source = GroupSource {
                consumer: &self.consumer,
                group: &self.group,
            };
            self.tasks.restore_step(&source, Duration::ZERO);
            if self.tasks.standby_step() {
                self.group
                    .report_standbys(self.index, self.tasks.standby_offset_sums());
            }
            self.tasks.process(batches);
            self.tasks.punctuate_wall_clock();
            self.tasks.maybe_commit(&source);
            if self.tasks.has_failed() {
                break;
            }
            self.restart_reset_tasks();
            self.follow_failed_tasks();
            self.watch_fetching();
        }

        let failed = self.tasks.has_failed();
        tracing::info!(
            failed,
            "stream thread shutting down: committing and closing tasks"
        );
        // The task manager decides what a failure still allows to commit.
        let source = GroupSource {
            consumer: &self.consumer,
            group: &self.group,
        };
        self.tasks.close_all(&source, true);
        let failure = self.tasks.take_failure();
        self.group.thread_stopped(self.index);
        close_in_background(self.consumer, self.index);
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
        let source = GroupSource {
            consumer: &self.consumer,
            group: &self.group,
        };
        let warn = |what: &str, r: Result<(), rdkafka::error::KafkaError>| {
            if let Err(e) = r {
                tracing::warn!(error = %e, "{what} failed");
            }
        };
        if update.lost && !self.owned.is_empty() {
            let parts = self.partitions(&self.owned);
            tracing::warn!(tasks = ?self.owned.iter().map(ToString::to_string).collect::<Vec<_>>(), "tasks lost");
            self.tasks.on_lost(&parts);
            warn("unassigning lost partitions", source.remove(&parts));
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
            self.tasks.on_revoked(&parts, &source);
            warn("unassigning revoked partitions", source.remove(&parts));
        }
        if !gained.is_empty() {
            let parts = self.partitions(&gained);
            tracing::info!(tasks = ?gained.iter().map(ToString::to_string).collect::<Vec<_>>(), "tasks assigned");
            warn("assigning partitions", source.add(&parts));
            self.tasks.on_assigned(&parts, &source);
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
        let reset: BTreeSet<TaskId> = self
            .tasks
            .take_reset()
            .into_iter()
            .filter(|t| self.owned.contains(t))
            .collect();
        if reset.is_empty() {
            return;
        }
        let parts = self.partitions(&reset);
        let source = GroupSource {
            consumer: &self.consumer,
            group: &self.group,
        };
        // Unassign, then assign from the committed offsets: what was
        // fetched past them is dropped and read again.
        for (what, result) in [
            ("unassigning reset partitions", source.remove(&parts)),
            ("assigning reset partitions", source.add(&parts)),
        ] {
            if let Err(e) = result {
                tracing::warn!(error = %e, "{what} failed");
            }
        }
        tracing::info!(tasks = ?reset.iter().map(ToString::to_string).collect::<Vec<_>>(), "tasks restarted from the last commit");
        self.tasks.on_assigned(&parts, &source);
    }

    /// Stops fetching the partitions of tasks their processor just failed,
    /// and fetches again (from the committed offsets) those whose retry is
    /// due and that are still ours.
    fn follow_failed_tasks(&mut self) {
        let source = GroupSource {
            consumer: &self.consumer,
            group: &self.group,
        };
        let failed: BTreeSet<TaskId> = self.tasks.take_newly_failed().into_iter().collect();
        if !failed.is_empty()
            && let Err(e) = source.remove(&self.partitions(&failed))
        {
            tracing::warn!(error = %e, "unassigning failed tasks' partitions failed");
        }
        let due: BTreeSet<TaskId> = self
            .tasks
            .take_due_retries()
            .into_iter()
            .filter(|t| self.owned.contains(t))
            .collect();
        if due.is_empty() {
            return;
        }
        let parts = self.partitions(&due);
        if let Err(e) = source.add(&parts) {
            tracing::warn!(error = %e, "assigning retried tasks' partitions failed");
        }
        self.tasks.on_assigned(&parts, &source);
    }

    /// Replaces the source consumer when librdkafka has stopped fetching
    /// partitions whose log has records for them (a known librdkafka fault
    /// after a broker restart, see `group::stall`): the new consumer starts
    /// every partition at the offset its task reads next.
    fn watch_fetching(&mut self) {
        let now = Instant::now();
        if self.tasks.is_restoring() {
            // Partitions are paused while their task restores.
            self.watch.restart_clocks(now);
            return;
        }
        if !self.watch.due(now) {
            return;
        }
        let positions = match self.consumer.position() {
            Ok(positions) => positions,
            Err(e) => {
                tracing::warn!(error = %e, "reading the source consumer's positions failed");
                return;
            }
        };
        let assigned: Vec<TopicPartition> = positions
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let quiet = self.watch.quiet(&assigned, now);
        if quiet.is_empty() {
            return;
        }
        let quiet = match self.locate(&quiet, &positions) {
            Ok(quiet) => quiet,
            Err(e) => {
                tracing::warn!(error = %e, "checking quiet source partitions failed; checking again later");
                return;
            }
        };
        let stalled = stalled(&quiet);
        if stalled.is_empty() {
            return;
        }
        let named: Vec<String> = stalled
            .iter()
            .map(|q| {
                format!(
                    "{}-{} at {} (stable end {})",
                    q.partition.0, q.partition.1, q.next, q.stable_end
                )
            })
            .collect();
        tracing::warn!(partitions = ?named,
            "the source consumer delivered nothing for {}s from partitions that have records: replacing it",
            STALL_AFTER.as_secs());
        match self.replace_consumer(&quiet, &positions) {
            Ok(()) => {
                crate::metrics::add(&self.metrics.source_consumer_restarts, 1);
                self.watch.restart_clocks(Instant::now());
            }
            Err(e) => {
                tracing::warn!(error = %e, "replacing the source consumer failed; trying again later")
            }
        }
    }

    /// Where each quiet partition stands: the offset its task reads next
    /// (the consumer's position; before the first record, the committed
    /// offset or where `auto.offset.reset` starts) and the log's last
    /// stable offset.
    fn locate(
        &self,
        quiet: &[TopicPartition],
        positions: &TopicPartitionList,
    ) -> Result<Vec<QuietPartition>, String> {
        let position = |(topic, partition): &TopicPartition| match positions
            .find_partition(topic, *partition)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(offset)) => Some(offset),
            _ => None,
        };
        let mut ask = TopicPartitionList::new();
        for (topic, partition) in quiet {
            ask.add_partition_offset(topic, *partition, Offset::End)
                .map_err(|e| e.to_string())?;
        }
        let ends = self
            .consumer
            .offsets_for_times(ask, LOOKUP_TIMEOUT)
            .map_err(|e| format!("listing the last stable offsets: {e}"))?;
        let unstarted: Vec<TopicPartition> = quiet
            .iter()
            .filter(|tp| position(tp).is_none())
            .cloned()
            .collect();
        let committed = if unstarted.is_empty() {
            Default::default()
        } else {
            self.group
                .membership()
                .fetch_offsets(&unstarted)
                .map_err(|e| e.to_string())?
        };
        let from_latest = self
            .config
            .kafka
            .get("auto.offset.reset")
            .is_some_and(|v| matches!(v.as_str(), "latest" | "largest" | "end"));
        let mut located = Vec::new();
        for tp in quiet {
            let Some(Offset::Offset(stable_end)) =
                ends.find_partition(&tp.0, tp.1).map(|e| e.offset())
            else {
                continue;
            };
            let next = match (position(tp), committed.get(tp).copied().flatten()) {
                (Some(next), _) | (None, Some(next)) => next,
                (None, None) => {
                    let (low, high) = self
                        .consumer
                        .fetch_watermarks(&tp.0, tp.1, LOOKUP_TIMEOUT)
                        .map_err(|e| format!("watermarks of {}-{}: {e}", tp.0, tp.1))?;
                    if from_latest { high } else { low }
                }
            };
            located.push(QuietPartition {
                partition: tp.clone(),
                next,
                stable_end,
            });
        }
        Ok(located)
    }

    /// A new source consumer in place of the current one, fetching the
    /// same partitions: each from the offset its task reads next.
    fn replace_consumer(
        &mut self,
        located: &[QuietPartition],
        positions: &TopicPartitionList,
    ) -> Result<(), String> {
        let mut assignment = TopicPartitionList::new();
        for e in positions.elements() {
            let offset = match e.offset() {
                Offset::Offset(offset) => Offset::Offset(offset),
                _ => located
                    .iter()
                    .find(|q| q.partition.0 == e.topic() && q.partition.1 == e.partition())
                    .map_or(Offset::Stored, |q| Offset::Offset(q.next)),
            };
            assignment
                .add_partition_offset(e.topic(), e.partition(), offset)
                .map_err(|e| e.to_string())?;
        }
        let fresh = new_source_consumer(&self.config, self.index).map_err(|e| e.to_string())?;
        fresh
            .assign(&assignment)
            .map_err(|e| format!("assigning {} partition(s): {e}", assignment.count()))?;
        let stalled = std::mem::replace(&mut self.consumer, fresh);
        close_in_background(stalled, self.index);
        Ok(())
    }

    /// Polls up to `max.poll.records` records, grouped by partition in
    /// arrival (offset) order. Waits only if nothing is restoring and no
    /// standby is catching up.
    fn poll_records(&self) -> Batches {
        let restoring = self.tasks.is_restoring() || self.tasks.standbys_behind();
        let mut wait = if restoring { Duration::ZERO } else { IDLE_POLL };
        let mut batches: Batches = Vec::new();
        // The declared source of each batch, by batch index.
        let mut sources: Vec<&str> = Vec::new();
        let mut count = 0;
        while count < self.config.max_poll_records {
            let Some(result) = self.consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            match result {
                Ok(message) => {
                    count += 1;
                    let (topic, partition) = (message.topic(), message.partition());
                    // Few partitions per poll: a scan beats allocating a key.
                    let slot = match batches
                        .iter()
                        .rposition(|(t, p, _)| *p == partition && t == topic)
                    {
                        Some(slot) => slot,
                        None => {
                            batches.push((topic.to_string(), partition, Vec::new()));
                            sources.push(self.plan.source_name(topic).unwrap_or(""));
                            batches.len() - 1
                        }
                    };
                    let source = if sources[slot].is_empty() {
                        topic
                    } else {
                        sources[slot]
                    };
                    batches[slot].2.push(incoming(&message, source));
                }
                Err(e) => tracing::warn!(error = %e, "consumer error"),
            }
        }
        batches
    }
}

/// Destroys a source consumer off the stream thread: destroying one that
/// librdkafka stopped fetching for can wait forever on its broker threads
/// (seen after a broker restart). If no thread can be had, it is leaked.
fn close_in_background(consumer: BaseConsumer<SourceContext>, thread: usize) {
    let consumer = ManuallyDrop::new(consumer);
    let closer = std::thread::Builder::new()
        .name(format!("weir-close-{}", thread + 1))
        .spawn(move || drop(ManuallyDrop::into_inner(consumer)));
    if let Err(e) = closer {
        tracing::warn!(error = %e, "cannot start a thread to close the source consumer; leaking it");
    }
}

fn new_source_consumer(
    config: &Config,
    thread: usize,
) -> Result<BaseConsumer<SourceContext>, TaskError> {
    crate::kafka::source_consumer(config, thread)
        .create_with_context(SourceContext)
        .map_err(|e| TaskError::Consumer(format!("cannot create the source consumer: {e}")))
}

fn incoming(m: &BorrowedMessage<'_>, source: &str) -> IncomingRecord {
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header {
                    key: h.key.to_string(),
                    value: h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    IncomingRecord {
        source: source.to_string(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers,
        timestamp: m.timestamp().to_millis().unwrap_or(-1),
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
    }
}
