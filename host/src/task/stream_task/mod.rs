//! One active task: its processor instance (which owns the task's stores),
//! the source offsets it has processed, and the fetched records waiting to
//! be processed (while it restores, and in timestamp order across its
//! inputs: `partition_group.rs`). Processes batches, forwards outputs to
//! the collector, fires punctuations, and takes part in the commit cycle
//! (`commit.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::commit::{Outgoing, RecordSink};
use crate::group::TopicPartition;
use crate::metrics::{Metrics, add};
use crate::runtime::bindings::{IncomingRecord, PunctuationType, TaskInfo};
use crate::runtime::{Clock, GuestError, LoadedComponent, ProcessorInstance, TaskContext};
#[cfg(feature = "server")]
use crate::store::RocksResources;
use crate::store::{StateDirectory, StateStore, Write};
use crate::topics::TopicPlan;
use crate::topology::TaskId;

mod commit;
mod partition_group;
mod skip;

use partition_group::PartitionGroup;

use super::state::{self, ChangelogStart, Guards};
use super::{TaskError, TaskRegistry, TaskStatus};

/// What every task of a stream thread is built from.
#[derive(Clone)]
pub struct TaskSetup {
    pub application_id: String,
    /// The deployment version of `component` (0 when not deployed).
    pub version: u32,
    pub component: Arc<LoadedComponent>,
    pub plan: Arc<TopicPlan>,
    /// Where persistent stores live; `None` keeps every store in memory
    /// (the offline test driver).
    pub disk: Option<DiskStores>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<TaskRegistry>,
    /// Where interactive queries find this process's stores.
    pub queries: Arc<crate::query::QueryableStores>,
    /// What a processor error does to its task.
    pub errors: ProcessingErrors,
    /// `max.task.idle.ms` (`None`: -1).
    pub max_task_idle: Option<std::time::Duration>,
    /// Whether the fetcher reports when it has read a partition to the end
    /// of its log (a polled batch with no records), so a task waits for a
    /// source still being read. The offline driver's inputs are always
    /// read to their end.
    pub fetch_reports_ends: bool,
    /// Each task's share of the thread's `statestore.cache.max.bytes` for
    /// its processor's record cache; the thread's task manager keeps it
    /// current (so a manager needs its own, not a clone of another's).
    pub record_cache: Arc<std::sync::atomic::AtomicUsize>,
}

/// `processing.exception.handler` and the dead-letter queue.
#[derive(Debug, Clone, Default)]
pub struct ProcessingErrors {
    /// `continue`: the failing record is skipped (its batch re-run without
    /// it), logged and counted, instead of failing the task.
    pub skip_failing_records: bool,
    /// `errors.dead.letter.queue.topic.name`: where skipped records go.
    pub dead_letter_queue: Option<String>,
}

/// The state directory and RocksDB budget persistent stores use (without
/// the `server` feature there is no RocksDB: every store is in memory).
#[derive(Clone)]
pub struct DiskStores {
    pub dirs: Arc<StateDirectory>,
    #[cfg(feature = "server")]
    pub rocks: Arc<RocksResources>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Restoring,
    Running,
}

pub struct StreamTask {
    id: TaskId,
    // Declared before `guards`: stores close before their directories are
    // released.
    instance: ProcessorInstance,
    /// Directory claims of persistent stores, by store name.
    guards: Guards,
    setup: TaskSetup,
    state: TaskState,
    /// Logged stores not yet caught up with their changelog.
    restoring: BTreeSet<usize>,
    /// Fetched records not processed yet.
    inputs: PartitionGroup,
    /// Next offset to commit, per source topic.
    consumed: BTreeMap<String, i64>,
    uncommitted: bool,
    span: tracing::Span,
}

/// Where in `records` (of `topic`, this task's `partition`) a call failed.
fn failure_site(topic: &str, partition: i32, records: &[IncomingRecord], e: &GuestError) -> String {
    let (first, last) = (
        records.first().map_or(-1, |r| r.offset),
        records.last().map_or(-1, |r| r.offset),
    );
    match e.batch_index().and_then(|i| records.get(i as usize)) {
        Some(r) => format!(
            "processing topic `{topic}` partition {partition} offset {}",
            r.offset
        ),
        None if first == last => {
            format!("processing topic `{topic}` partition {partition} offset {first}")
        }
        None => format!(
            "processing topic `{topic}` partition {partition} (batch of offsets {first}..={last})"
        ),
    }
}

/// The task's input topics, and whether each is waited for when empty
/// (sources are; repartitions are not).
fn inputs(setup: &TaskSetup) -> Vec<(String, bool)> {
    let repartitions = &setup.component.topology().repartitions;
    setup
        .plan
        .sources
        .iter()
        .map(|topic| {
            let name = setup.plan.source_name(topic).unwrap_or(topic);
            (topic.clone(), !repartitions.iter().any(|r| r == name))
        })
        .collect()
}

/// A processor instance of `setup`'s component for task `id`, on `stores`.
impl StreamTask {
    /// Goes on from the stream time a previous owner committed (see
    /// `task::stream_time`); never moves it back.
    pub fn resume_stream_time(&mut self, committed: i64) {
        let task = self.instance.task_mut();
        if committed > task.stream_time {
            task.stream_time = committed;
            task.window_time = committed;
        }
    }

    /// A new instance of `setup`'s component on `stores`, in place of the
    /// current one (a new version, or a fresh one after a trap). Stream
    /// time belongs to the task, not the instance: the new one goes on
    /// from it, so closed windows stay closed.
    fn replace_instance(
        &mut self,
        setup: &TaskSetup,
        stores: Vec<StateStore>,
        at: &str,
    ) -> Result<(), TaskError> {
        let (stream_time, window_time) = {
            let task = self.instance.task();
            (task.stream_time, task.window_time)
        };
        self.instance = instantiate(self.id, setup, stores, at)?;
        let task = self.instance.task_mut();
        (task.stream_time, task.window_time) = (stream_time, window_time);
        Ok(())
    }
}

fn instantiate(
    id: TaskId,
    setup: &TaskSetup,
    stores: Vec<StateStore>,
    at: &str,
) -> Result<ProcessorInstance, TaskError> {
    let mut ctx = TaskContext::new(
        id,
        &setup.application_id,
        &setup.component.label(),
        setup.component.topology().clone(),
        stores,
        setup.clock.clone(),
    );
    ctx.record_cache = setup.record_cache.clone();
    ProcessorInstance::new(&setup.component, ctx).map_err(|source| TaskError::Guest {
        task: id,
        at: at.into(),
        source: Box::new(source),
    })
}

impl StreamTask {
    /// Opens the task's stores (RocksDB replays its WAL here) and
    /// instantiates its processor; `init` waits until restoration is done.
    pub fn new(id: TaskId, setup: &TaskSetup) -> Result<Self, TaskError> {
        let (stores, guards) = state::open_all(id, setup)?;
        Self::on_stores(id, setup, stores, guards)
    }

    /// An active task on stores already open (a promoted standby's):
    /// only their changelogs' tails remain to restore.
    pub fn on_stores(
        id: TaskId,
        setup: &TaskSetup,
        stores: Vec<StateStore>,
        guards: Guards,
    ) -> Result<Self, TaskError> {
        let topology = setup.component.topology().clone();
        let span = tracing::info_span!("task", task_id = %id, topology = %topology.name);
        let instance = instantiate(id, setup, stores, "at instantiation")?;
        Ok(StreamTask {
            id,
            instance,
            guards,
            setup: setup.clone(),
            state: TaskState::Restoring,
            restoring: BTreeSet::new(),
            inputs: PartitionGroup::new(
                &inputs(setup),
                setup.max_task_idle,
                setup.fetch_reports_ends,
            ),
            consumed: BTreeMap::new(),
            uncommitted: false,
            span,
        })
    }

    pub fn id(&self) -> TaskId {
        self.id
    }

    pub fn state(&self) -> TaskState {
        self.state
    }

    /// The source partitions this task reads.
    pub fn partitions(&self) -> Vec<TopicPartition> {
        self.setup
            .plan
            .sources
            .iter()
            .map(|t| (t.clone(), self.id.partition))
            .collect()
    }

    /// Where each logged store's restore starts.
    pub fn changelog_starts(&self) -> Result<Vec<ChangelogStart>, TaskError> {
        state::changelog_starts(self.id, &self.instance.task().stores, &self.setup.plan)
    }

    fn changelog(&self, store: usize) -> Option<&str> {
        state::changelog_of(&self.setup.plan, self.instance.task().stores[store].name())
    }

    /// The changelog `store` writes to: none for a store restored from its
    /// source (the input is its log).
    fn written_changelog(&self, store: usize) -> Option<&str> {
        let name = self.instance.task().stores[store].name();
        if self.setup.plan.source_changelogs.iter().any(|s| s == name) {
            return None;
        }
        self.changelog(store)
    }

    pub fn begin_restore(&mut self, store: usize) {
        self.restoring.insert(store);
    }

    /// Drops the local copy of `store` so it restores from scratch.
    pub fn wipe_store(&mut self, store: usize) -> Result<(), TaskError> {
        let stores = &mut self.instance.task_mut().stores;
        state::wipe_store(self.id, stores, &self.guards, &self.setup, store)
    }

    /// Writes changelog records into `store`, holding the last write of
    /// each key up to `hold_bytes` while that saves writes (see
    /// `StateStore::restore`; what is held is written at the
    /// latest by [`StreamTask::store_restored`]).
    pub fn restore(
        &mut self,
        store: usize,
        records: Vec<Write>,
        next_offset: i64,
        hold_bytes: usize,
    ) -> Result<(), TaskError> {
        add(&self.setup.metrics.restored_records, records.len() as u64);
        let stores = &mut self.instance.task_mut().stores;
        state::apply_changelog(self.id, stores, store, records, next_offset, hold_bytes)
    }

    /// Stores still restoring.
    pub fn restoring_stores(&self) -> usize {
        self.restoring.len()
    }

    /// Marks `store` restored (writing what its restore held); returns
    /// true when the task became RUNNING.
    pub fn store_restored(
        &mut self,
        store: usize,
        collector: &mut dyn RecordSink,
    ) -> Result<bool, TaskError> {
        let id = self.id;
        self.instance.task_mut().stores[store]
            .write_held()
            .map_err(|source| TaskError::Store { task: id, source })?;
        self.restoring.remove(&store);
        if self.restoring.is_empty() && self.state == TaskState::Restoring {
            self.start(collector)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Calls the processor's `init` and processes what was held.
    fn task_info(&self) -> TaskInfo {
        TaskInfo {
            application_id: self.setup.application_id.clone(),
            task_id: self.id.to_string(),
            partition: self.id.partition,
            topology: self.setup.component.topology().name.clone(),
        }
    }

    pub fn start(&mut self, collector: &mut dyn RecordSink) -> Result<(), TaskError> {
        let _span = self.span.clone().entered();
        let info = self.task_info();
        self.instance
            .init(&info)
            .map_err(|e| self.guest_error("in init", e))?;
        self.forward_outputs(collector)?;
        self.state = TaskState::Running;
        tracing::info!("task running");
        self.process_ready(collector)
    }

    /// Buffers fetched records of `topic` (this task's partition; none:
    /// its consumer has read it to the end of its log) and processes what
    /// may go now.
    pub fn process(
        &mut self,
        topic: &str,
        records: Vec<IncomingRecord>,
        collector: &mut dyn RecordSink,
    ) -> Result<(), TaskError> {
        self.inputs.add(topic, records);
        self.process_ready(collector)
    }

    /// Whether fetched records wait (restoring, or for an empty input).
    pub fn has_waiting_records(&self) -> bool {
        !self.inputs.is_empty()
    }

    /// Processes the buffered records that may go now, in timestamp order
    /// across the task's inputs; nothing while restoring.
    pub fn process_ready(&mut self, collector: &mut dyn RecordSink) -> Result<(), TaskError> {
        if self.state != TaskState::Running || self.inputs.is_empty() {
            return Ok(());
        }
        let now = self.setup.clock.now_ms();
        for (topic, batch) in self.inputs.next_batches(now) {
            self.process_batch(&topic, batch, collector)?;
        }
        Ok(())
    }

    fn guest_error(&self, at: impl Into<String>, source: GuestError) -> TaskError {
        add(&self.setup.metrics.task_failures, 1);
        match &source {
            GuestError::Deadline { .. } => add(&self.setup.metrics.wasm_deadline_interruptions, 1),
            GuestError::Memory { .. } => add(&self.setup.metrics.wasm_memory_cap_hits, 1),
            _ => {}
        }
        TaskError::Guest {
            task: self.id,
            at: at.into(),
            source: Box::new(source),
        }
    }

    /// Processes records of `topic` (this task's partition), in offset order.
    fn process_batch(
        &mut self,
        topic: &str,
        records: Vec<IncomingRecord>,
        collector: &mut dyn RecordSink,
    ) -> Result<(), TaskError> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        let last_offset = last.offset;
        let _span = self.span.clone().entered();
        let newest = records.iter().map(|r| r.timestamp).max().unwrap_or(-1);
        let ctx = self.instance.task_mut();
        ctx.window_time = ctx.stream_time;
        ctx.stream_time = ctx.stream_time.max(newest);
        if self.setup.errors.skip_failing_records {
            self.process_skipping_failures(topic, &records, collector)?;
        } else if let Err(e) = self.instance.process(&records) {
            let at = failure_site(topic, self.id.partition, &records, &e);
            return Err(self.guest_error(at, e));
        }
        add(&self.setup.metrics.records_processed, records.len() as u64);
        add(&self.setup.metrics.process_calls, 1);
        self.consumed.insert(topic.to_string(), last_offset + 1);
        self.uncommitted = true;
        self.forward_outputs(collector)?;
        let stream_time = self.instance.task().stream_time;
        self.punctuate(PunctuationType::StreamTime, stream_time, collector)
    }

    /// Fires wall-clock schedules that are due.
    pub fn punctuate_wall_clock(
        &mut self,
        collector: &mut dyn RecordSink,
    ) -> Result<(), TaskError> {
        if self.state != TaskState::Running || self.instance.task().schedules.is_empty() {
            return Ok(());
        }
        let now = self.setup.clock.now_ms();
        self.punctuate(PunctuationType::WallClock, now, collector)
    }

    fn punctuate(
        &mut self,
        kind: PunctuationType,
        time: i64,
        collector: &mut dyn RecordSink,
    ) -> Result<(), TaskError> {
        let due = self.instance.task_mut().schedules.due(kind, time);
        for id in due {
            let _span = self.span.clone().entered();
            self.instance.punctuate(id, kind, time).map_err(|e| {
                self.guest_error(format!("in punctuate (schedule {id}, time {time})"), e)
            })?;
            add(&self.setup.metrics.punctuations, 1);
            self.forward_outputs(collector)?;
        }
        Ok(())
    }

    /// The processor's `flush`, before a commit: what it held back (a
    /// record cache) goes out now, inside the commit.
    pub fn flush(&mut self, collector: &mut dyn RecordSink) -> Result<(), TaskError> {
        if self.state != TaskState::Running {
            return Ok(());
        }
        let _span = self.span.clone().entered();
        self.instance
            .flush()
            .map_err(|e| self.guest_error("in flush", e))?;
        self.forward_outputs(collector)
    }

    fn forward_outputs(&mut self, collector: &mut dyn RecordSink) -> Result<(), TaskError> {
        let dropped = std::mem::take(&mut self.instance.task_mut().dropped_records);
        add(&self.setup.metrics.dropped_records, dropped);
        let outputs = std::mem::take(&mut self.instance.task_mut().outputs);
        if outputs.is_empty() {
            return Ok(());
        }
        add(&self.setup.metrics.records_forwarded, outputs.len() as u64);
        // Outputs past the sinks are repartitions, whose partition count is
        // the plan's (checked when the topics were made): their keyed
        // records are placed here, by the same murmur2 librdkafka would
        // use, which spares librdkafka's partitioner (its topic lock and a
        // clock read) on every word of a word count.
        let first_repartition = self.setup.component.topology().sinks.len();
        let partitions = self.setup.plan.partitions as i32;
        for f in &outputs {
            let r = &f.record;
            let partition = match &r.key {
                Some(key) if f.sink >= first_repartition => {
                    Some(crate::partitioner::partition_for_key(key, partitions))
                }
                _ => None,
            };
            collector.send(Outgoing {
                topic: &self.setup.plan.sinks[f.sink],
                partition,
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                headers: r
                    .headers
                    .iter()
                    .map(|h| (h.key.as_str(), h.value.as_slice()))
                    .collect(),
                timestamp: r.timestamp,
                task: self.id,
            })?;
        }
        // Give the buffer back: it keeps its capacity for the next call.
        let mut outputs = outputs;
        outputs.clear();
        self.instance.task_mut().outputs = outputs;
        Ok(())
    }

    /// Replaces the processor with `setup`'s component on the same stores
    /// (call right after a commit). Stores the new version no longer
    /// declares are closed and their local directories deleted; new ones are
    /// opened. Returns the indices of the new stores; the task is left not
    /// started, for the manager to restore new stores and then start it.
    pub fn swap(&mut self, setup: &TaskSetup) -> Result<Vec<usize>, TaskError> {
        let _span = self.span.clone().entered();
        let id = self.id;
        let store_err = |source| TaskError::Store { task: id, source };
        if self.state == TaskState::Running
            && !self.instance.is_poisoned()
            && let Err(e) = self.instance.close()
        {
            tracing::warn!(error = %e, "processor close before the swap failed");
        }
        let topology = setup.component.topology().clone();
        let mut old: BTreeMap<String, StateStore> =
            std::mem::take(&mut self.instance.task_mut().stores)
                .into_iter()
                .map(|s| (s.name().to_string(), s))
                .collect();
        let mut stores = Vec::new();
        let mut added = Vec::new();
        for (i, spec) in topology.stores.iter().enumerate() {
            match old.remove(&spec.name) {
                Some(store) => stores.push(store),
                None => {
                    let (store, guard) = state::open_store(spec, id, setup).map_err(store_err)?;
                    if let Some(g) = guard {
                        self.guards.insert(spec.name.clone(), g);
                    }
                    stores.push(store);
                    added.push(i);
                }
            }
        }
        for (name, store) in old {
            drop(store);
            if let (Some(guard), Some(disk)) = (self.guards.remove(&name), &setup.disk) {
                disk.dirs.remove(guard).map_err(store_err)?;
            }
            tracing::info!(store = %name, "store dropped by the new version");
        }
        self.replace_instance(setup, stores, "at instantiation of the new version")?;
        self.setup = setup.clone();
        self.inputs.retarget(&inputs(setup));
        self.state = TaskState::Restoring;
        self.restoring.clear();
        Ok(added)
    }

    /// The store `name`, as the processor sees it.
    pub fn store(&self, name: &str) -> Option<&StateStore> {
        self.instance.task().store(name)
    }

    /// What the admin API shows for this task.
    pub fn status(&self, thread: usize) -> TaskStatus {
        TaskStatus {
            task_id: self.id.to_string(),
            thread: thread + 1,
            topology: self.setup.component.topology().name.clone(),
            version: self.setup.version,
            component: self.setup.component.label(),
            state: match self.state {
                TaskState::Restoring => "RESTORING",
                TaskState::Running => "RUNNING",
            }
            .into(),
            lag: None,
            error: None,
        }
    }

    /// Readers of the committed state, for interactive queries.
    pub fn readers(&self) -> Vec<(String, Arc<dyn crate::store::StoreReader>)> {
        state::readers(&self.instance.task().stores)
    }

    /// Bytes of store writes waiting for the next commit.
    pub fn dirty_bytes(&self) -> usize {
        self.instance
            .task()
            .stores
            .iter()
            .map(StateStore::dirty_bytes)
            .sum()
    }

    pub fn needs_commit(&self) -> bool {
        self.uncommitted
            || self
                .instance
                .task()
                .stores
                .iter()
                .any(StateStore::has_pending_writes)
    }

    /// Closes after a commit: the processor's `close`, then stores flushed.
    pub fn close_clean(mut self) {
        let _span = self.span.clone().entered();
        if self.state == TaskState::Running
            && !self.instance.is_poisoned()
            && let Err(e) = self.instance.close()
        {
            tracing::warn!(error = %e, "processor close failed");
        }
        state::flush_and_checkpoint(
            &mut self.instance.task_mut().stores,
            &self.guards,
            &self.setup,
        );
        tracing::info!("task closed");
    }

    /// Closes the processor after a commit and hands its open stores over
    /// (demotion to a standby): nothing is flushed or reopened.
    pub fn into_stores(mut self) -> (Vec<StateStore>, Guards) {
        let _span = self.span.clone().entered();
        if self.state == TaskState::Running
            && !self.instance.is_poisoned()
            && let Err(e) = self.instance.close()
        {
            tracing::warn!(error = %e, "processor close failed");
        }
        let stores = std::mem::take(&mut self.instance.task_mut().stores);
        tracing::info!("task handed its stores over to a standby");
        (stores, std::mem::take(&mut self.guards))
    }

    /// Closes without committing: uncommitted writes are discarded, the
    /// processor is not called.
    pub fn close_dirty(mut self) {
        let _span = self.span.clone().entered();
        for store in &mut self.instance.task_mut().stores {
            store.discard_uncommitted();
        }
        tracing::info!("task closed dirty (uncommitted work discarded)");
    }
}
