//! The offline test driver (Kafka Streams' `TopologyTestDriver`): runs a
//! component in-process with in-memory stores and no broker. Records are
//! piped in with keys, timestamps, headers and partitions; wall-clock time
//! is advanced by hand; what each sink received and what each store holds
//! can be read back.
//!
//! It runs the production task manager over in-memory Kafka: the same
//! [`TaskManager`] (task creation and restore, routing, failures by
//! recovery class, swaps), the same [`StreamTask`](crate::task::StreamTask)
//! and [`Runtime`] (WIT bindings, memory cap, CPU deadline), and the same
//! commit cycle, through a `MemoryCollector`, changelog consumers and a
//! `MemoryGroup` over one `MemoryLog`. Like Kafka Streams' driver it commits
//! after every call. Records forwarded to a repartition come back to the
//! task owning their key, as through Kafka.
//!
//! ```no_run
//! use weir::testing::{TestDriver, TestRecord};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut driver = TestDriver::new("word_count.wasm".as_ref(), Default::default())?;
//! driver.pipe("text-lines", TestRecord::new("l1", "hello weir hello"))?;
//! let counts = driver.read_output("counts");
//! assert_eq!(counts.last().unwrap().value_str(), Some("2"));
//! # Ok(()) }
//! ```
//!
//! Typed, with the SDK's codecs (`String`, integers, `Json<T>`, bytes):
//! [`TestRecord::typed`], [`TestDriver::pipe_kv`],
//! [`TestDriver::pipe_tombstone`], [`TestDriver::read_kv`],
//! [`TestDriver::read_table`] (latest value per key),
//! [`TestDriver::store_kv`], [`TestDriver::store_get`] and
//! [`TestOutput::value_as`]:
//!
//! ```no_run
//! use weir::testing::{Json, TestDriver};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut driver = TestDriver::new("word_count.wasm".as_ref(), Default::default())?;
//! driver.pipe_kv("text-lines", &"l1".to_string(), &"hello weir hello".to_string())?;
//! let counts = driver.read_table::<String, String>("counts")?;
//! assert_eq!(counts["hello"], "2");
//! assert_eq!(driver.store_get::<String, u64>(0, "counts", &"hello".to_string())?, Some(2));
//! # let _ = Json(1u8);
//! # Ok(()) }
//! ```

mod build;
mod records;
mod typed;

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

pub use build::build_component;
pub use records::{DriverError, DriverOptions, ManualClock, TestOutput, TestRecord};
pub use typed::{Codec, CodecError, Json};

use crate::commit::{Faults, MemoryLog, SentRecord};
use crate::config::{Config, ProcessingGuarantee};
use crate::group::{MemoryGroup, RebalanceListener, TopicPartition};
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::runtime::bindings::{Header, IncomingRecord};
use crate::runtime::{LoadedComponent, Runtime, read_component_file};
use crate::store::{Entry, StateStore, StoreError};
use crate::task::{Clients, TaskError, TaskManager, TaskManagerSetup, TaskRegistry, TaskSetup};
use crate::topics::{self, TopicPlan};
use crate::topology::{TaskId, Topology, changelog_topic};

/// A component running offline: one task per partition, in-memory stores
/// and Kafka, a manual wall clock. See the module docs for an example.
pub struct TestDriver {
    topology: Arc<Topology>,
    runtime: Runtime,
    manager: TaskManager,
    /// What the task manager was built from, to build it again at a
    /// restart.
    setup: TaskManagerSetup,
    log: MemoryLog,
    group: MemoryGroup,
    clock: Arc<ManualClock>,
    partitions: i32,
    next_offset: BTreeMap<(String, i32), i64>,
    /// Every record piped into each input partition, in offset order: what
    /// a restarted, reset or retried task fetches again from its committed
    /// offset, as from Kafka.
    fetched: BTreeMap<(String, i32), Vec<IncomingRecord>>,
    /// Partitions whose tasks were (re)created since the last run.
    refetch: Vec<i32>,
    /// How far each output topic has been read from the log.
    read_up_to: BTreeMap<String, u64>,
    outputs: BTreeMap<String, Vec<TestOutput>>,
    /// Why each failed task failed.
    failed: BTreeMap<i32, String>,
}

impl TestDriver {
    /// Loads the component at `path` and starts one task per partition.
    pub fn new(path: &Path, options: DriverOptions) -> Result<Self, DriverError> {
        let (name, bytes) = read(path)?;
        TestDriver::from_bytes(&name, &bytes, options)
    }

    /// As [`TestDriver::new`], with the component's bytes; `name` is what
    /// errors call it.
    pub fn from_bytes(
        name: &str,
        bytes: &[u8],
        options: DriverOptions,
    ) -> Result<Self, DriverError> {
        let runtime =
            Runtime::new(options.limits).map_err(|e| DriverError::Runtime(format!("{e:#}")))?;
        let component = runtime.load(name, bytes)?;
        let partitions = options.partitions.max(1);
        let clock = Arc::new(ManualClock(AtomicI64::new(options.wall_clock_ms)));
        let log = MemoryLog::default();
        let plan = plan(component.topology(), &options.application_id, partitions);
        let setup = TaskManagerSetup {
            config: config(&options)?,
            thread: 0,
            tasks: TaskSetup {
                application_id: options.application_id.clone(),
                version: 1,
                plan: plan.clone(),
                component: component.clone(),
                disk: None,
                clock: clock.clone(),
                metrics: Arc::new(Metrics::default()),
                registry: Arc::new(TaskRegistry::default()),
                queries: Arc::default(),
                errors: options.processing_errors.clone(),
                max_task_idle: options.max_task_idle,
                fetch_reports_ends: false,
                record_cache: Default::default(),
            },
            lifecycle: Arc::new(Lifecycle::new(1, Duration::from_secs(60))),
        };
        let manager = TaskManager::with_clients(setup.clone(), memory_clients(&log, partitions))?;
        let mut driver = TestDriver {
            topology: component.topology().clone(),
            runtime,
            manager,
            setup,
            group: MemoryGroup::joined(&options.application_id),
            log,
            clock,
            partitions,
            next_offset: BTreeMap::new(),
            fetched: BTreeMap::new(),
            refetch: Vec::new(),
            read_up_to: BTreeMap::new(),
            outputs: BTreeMap::new(),
            failed: BTreeMap::new(),
        };
        let all: Vec<i32> = (0..partitions).collect();
        driver.assign(&all)?;
        driver.run(VecDeque::new())?;
        Ok(driver)
    }

    /// What the component declared in `describe()`.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    fn partition_of(&self, record: &TestRecord) -> Result<i32, DriverError> {
        let p = match (record.partition, &record.key) {
            (Some(p), _) => p,
            (None, Some(key)) => crate::partitioner::partition_for_key(key, self.partitions),
            (None, None) => 0,
        };
        if p < 0 || p >= self.partitions {
            return Err(DriverError::NoSuchPartition {
                partition: p,
                partitions: self.partitions,
            });
        }
        Ok(p)
    }

    /// Pipes one record into source `source` (a declared source name).
    pub fn pipe(&mut self, source: &str, record: TestRecord) -> Result<(), DriverError> {
        self.pipe_all(source, vec![record])
    }

    /// Pipes records into `source`; consecutive records of one partition
    /// reach their task as one batch, as from a poll.
    pub fn pipe_all(&mut self, source: &str, records: Vec<TestRecord>) -> Result<(), DriverError> {
        if !self.topology.sources.iter().any(|s| s == source) {
            return Err(DriverError::UnknownSource {
                source_name: source.to_string(),
                topology: self.topology.name.clone(),
                known: self.topology.sources.join(", "),
            });
        }
        self.run(
            records
                .into_iter()
                .map(|r| (source.to_string(), r))
                .collect(),
        )
    }

    /// Processes `pending` records and commits; records forwarded to a
    /// repartition come back here until none are left. A failed task's
    /// records are not processed (its error is returned once the others'
    /// are), as a failed task's partitions are not fetched in production.
    fn run(&mut self, mut pending: VecDeque<(String, TestRecord)>) -> Result<(), DriverError> {
        let mut failure: Option<DriverError> = None;
        loop {
            // Tasks (re)created since the last round first fetch again what
            // their partitions hold past the committed offset.
            let mut fetched = self.take_refetch();
            for (source, record) in pending.drain(..) {
                let partition = self.partition_of(&record)?;
                if self.failed.contains_key(&partition) {
                    failure.get_or_insert_with(|| self.failure(partition));
                    continue;
                }
                let offset = self
                    .next_offset
                    .entry((source.clone(), partition))
                    .or_insert(0);
                let incoming = IncomingRecord {
                    source: source.clone(),
                    key: record.key,
                    value: record.value,
                    headers: record
                        .headers
                        .into_iter()
                        .map(|(key, value)| Header { key, value })
                        .collect(),
                    timestamp: record.timestamp,
                    topic: source.clone(),
                    partition,
                    offset: *offset,
                };
                *offset += 1;
                if self.restores_from(&source) {
                    // A table's store restored from this source reads it
                    // from the log, as from Kafka.
                    let at = self.log.append(SentRecord {
                        topic: source.clone(),
                        partition,
                        offset: incoming.offset,
                        key: incoming.key.clone(),
                        value: incoming.value.clone(),
                        headers: (incoming.headers.iter())
                            .map(|h| (h.key.clone(), h.value.clone()))
                            .collect(),
                        timestamp: Some(incoming.timestamp),
                        task: TaskId::for_partition(partition),
                        seq: 0,
                    });
                    debug_assert_eq!(at, incoming.offset, "only the driver writes `{source}`");
                }
                self.fetched
                    .entry((source, partition))
                    .or_default()
                    .push(incoming.clone());
                fetched.push(incoming);
            }
            let mut batches: Vec<(String, i32, Vec<IncomingRecord>)> = Vec::new();
            for record in fetched {
                let (topic, partition) = (record.topic.clone(), record.partition);
                match batches.last_mut() {
                    Some((t, p, batch)) if *t == topic && *p == partition => batch.push(record),
                    _ => batches.push((topic, partition, vec![record])),
                }
            }
            for batch in batches {
                self.manager.process(vec![batch]);
                self.check_task(&mut failure)?;
            }
            // Records waiting for an empty input go once the driver's clock
            // says they have waited `max.task.idle.ms`.
            self.manager.process(Vec::new());
            self.check_task(&mut failure)?;
            self.commit()?;
            pending = self.route();
            if pending.is_empty() && self.refetch.is_empty() {
                return failure.map_or(Ok(()), Err);
            }
        }
    }

    /// Whether a store is restored from source `source` (so its records
    /// must be in the log).
    fn restores_from(&self, source: &str) -> bool {
        (self.topology.stores.iter()).any(|s| s.source_changelog.as_deref() == Some(source))
    }

    /// What the partitions of re-created tasks hold past their committed
    /// offsets, in offset order per input.
    fn take_refetch(&mut self) -> Vec<IncomingRecord> {
        let partitions = std::mem::take(&mut self.refetch);
        let mut records = Vec::new();
        for ((topic, partition), log) in &self.fetched {
            if !partitions.contains(partition) || self.failed.contains_key(partition) {
                continue;
            }
            let from = self.committed_offset(topic, *partition).unwrap_or(0);
            records.extend(log.iter().filter(|r| r.offset >= from).cloned());
        }
        records
    }

    /// As [`TestDriver::check`], but a task that failed is kept in
    /// `failure` (the first one) and the others go on.
    fn check_task(&mut self, failure: &mut Option<DriverError>) -> Result<(), DriverError> {
        match self.check() {
            Err(e @ DriverError::TaskFailed { .. }) => {
                failure.get_or_insert(e);
                Ok(())
            }
            other => other,
        }
    }

    /// Commits every task through the production commit cycle (changelog
    /// records, store writes applied at their changelog offsets, input
    /// offsets committed). The driver commits after every `pipe`,
    /// `advance_wall_clock` and `swap`, as Kafka Streams' driver does after
    /// every record.
    pub fn commit(&mut self) -> Result<(), DriverError> {
        let result = self.manager.commit_all(&self.group);
        if let Err(e) = result {
            return Err(DriverError::Task(e));
        }
        Ok(())
    }

    /// Creates (and restores) the tasks of `partitions`.
    fn assign(&mut self, partitions: &[i32]) -> Result<(), DriverError> {
        let assigned: Vec<TopicPartition> = partitions
            .iter()
            .flat_map(|p| {
                self.topology
                    .sources
                    .iter()
                    .chain(&self.topology.repartitions)
                    .map(move |s| (s.clone(), *p))
            })
            .collect();
        self.manager.on_assigned(&assigned, &self.group);
        while self.manager.is_restoring() && !self.manager.has_failed() {
            self.manager.restore_step(&self.group, Duration::ZERO);
        }
        self.refetch.extend_from_slice(partitions);
        self.check()
    }

    /// Surfaces what the task manager decided about failures: a task that
    /// failed (its error, once), tasks to start again from the last
    /// commit, or a failure of the whole manager.
    fn check(&mut self) -> Result<(), DriverError> {
        if let Some(error) = self.manager.take_failure() {
            return Err(DriverError::Task(error));
        }
        let reset: Vec<i32> = self
            .manager
            .take_reset()
            .into_iter()
            .map(|id| id.partition)
            .collect();
        if !reset.is_empty() {
            self.assign(&reset)?;
        }
        let newly_failed = self.manager.take_newly_failed();
        let Some(first) = newly_failed.first().copied() else {
            return Ok(());
        };
        for status in self.setup.tasks.registry.snapshot() {
            if status.state == "FAILED"
                && let Some(id) = newly_failed
                    .iter()
                    .find(|id| id.to_string() == status.task_id)
            {
                let message = status.error.unwrap_or_else(|| "failed".into());
                self.failed.insert(id.partition, message);
            }
        }
        Err(DriverError::TaskFailed {
            task: first,
            message: self
                .failed
                .get(&first.partition)
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// Files what the sinks (and a dead-letter queue) received since the
    /// last call under their names; returns records forwarded to
    /// repartitions, to be processed next.
    fn route(&mut self) -> VecDeque<(String, TestRecord)> {
        let mut back = VecDeque::new();
        let outputs: Vec<String> = self
            .topology
            .output_names()
            .map(str::to_string)
            .chain(self.setup.tasks.errors.dead_letter_queue.clone())
            .collect();
        for output in outputs {
            let after = self.read_up_to.get(&output).copied();
            let records = self.log.records_after(&output, after);
            let Some(last) = records.last() else {
                continue;
            };
            self.read_up_to.insert(output.clone(), last.seq);
            let repartition = self.topology.repartitions.contains(&output);
            for r in records {
                if repartition {
                    let record = TestRecord {
                        key: r.key,
                        value: r.value,
                        headers: r.headers,
                        timestamp: r.timestamp.unwrap_or(0),
                        partition: Some(r.partition),
                    };
                    back.push_back((output.clone(), record));
                } else {
                    self.outputs
                        .entry(output.clone())
                        .or_default()
                        .push(TestOutput {
                            key: r.key,
                            value: r.value,
                            headers: r.headers,
                            timestamp: r.timestamp,
                            task: r.task,
                        });
                }
            }
        }
        back
    }

    /// Moves the wall clock on by `by` and fires wall-clock punctuations.
    pub fn advance_wall_clock(&mut self, by: Duration) -> Result<(), DriverError> {
        self.clock
            .0
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        self.manager.punctuate_wall_clock();
        self.check()?;
        self.run(VecDeque::new())
    }

    /// Everything sink `sink` received since the last read.
    pub fn read_output(&mut self, sink: &str) -> Vec<TestOutput> {
        self.outputs.remove(sink).unwrap_or_default()
    }

    /// Every entry of `store` in the task of `partition`, in key order
    /// (as the processor sees them; the driver commits after every call).
    pub fn store_entries(&self, partition: i32, store: &str) -> Result<Vec<Entry>, DriverError> {
        let s = self.store(partition, store)?;
        s.scan(
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
            usize::MAX,
        )
        .map_err(|source| store_error(partition, source))
    }

    /// Store `store` of the task of `partition`.
    fn store(&self, partition: i32, store: &str) -> Result<&StateStore, DriverError> {
        let task = self
            .manager
            .task(TaskId::for_partition(partition))
            .ok_or_else(|| self.failure(partition))?;
        task.store(store).ok_or_else(|| DriverError::NoSuchStore {
            topology: self.topology.name.clone(),
            store: store.to_string(),
        })
    }

    /// Every window of window store `store` in the task of `partition`,
    /// segment by segment, then by key and start.
    pub fn window_entries(
        &self,
        partition: i32,
        store: &str,
    ) -> Result<Vec<crate::store::window::Windowed>, DriverError> {
        Ok(self
            .store_entries(partition, store)?
            .into_iter()
            .filter_map(|(stored, value)| {
                crate::store::window::Layout::decode(&stored).map(|(key, start)| {
                    crate::store::window::Windowed {
                        key: key.to_vec(),
                        start,
                        value,
                    }
                })
            })
            .collect())
    }

    /// What store `store`'s changelog topic holds for the task of
    /// `partition`, in offset order: `(key, value)`, `None` for a delete.
    /// Empty for a store without a changelog topic of its own (not logged,
    /// or restored from its source).
    pub fn changelog(&self, store: &str, partition: i32) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        if !self
            .topology
            .stores
            .iter()
            .any(|s| s.name == store && s.logged && s.source_changelog.is_none())
        {
            return Vec::new();
        }
        self.log
            .records(&changelog_topic(&self.setup.tasks.application_id, store))
            .into_iter()
            .filter(|r| r.partition == partition)
            .map(|r| (r.key.unwrap_or_default(), r.value))
            .collect()
    }

    /// The next offset of `source` partition `partition` the group has
    /// committed (`None`: nothing committed yet).
    pub fn committed_offset(&self, source: &str, partition: i32) -> Option<i64> {
        self.group
            .committed_offsets()
            .get(&(source.to_string(), partition))
            .map(|o| o.offset)
    }

    /// Window-store writes dropped as too late, over all tasks (Kafka
    /// Streams' `dropped-records`).
    pub fn dropped_records(&self) -> u64 {
        self.setup
            .tasks
            .metrics
            .dropped_records
            .load(Ordering::Relaxed)
    }

    /// The error that failed the task of `partition`, if it failed.
    pub fn task_error(&self, partition: i32) -> Option<&str> {
        self.failed.get(&partition).map(String::as_str)
    }

    /// Swaps every task to another component on the same stores, as a hot
    /// deploy does (a failed task is started again on the new version).
    pub fn swap(&mut self, path: &Path) -> Result<(), DriverError> {
        let (name, bytes) = read(path)?;
        let component: Arc<LoadedComponent> = self.runtime.load(&name, &bytes)?;
        let tasks = &self.setup.tasks;
        let plan = plan(component.topology(), &tasks.application_id, self.partitions);
        self.topology = component.topology().clone();
        self.setup.tasks = TaskSetup {
            version: tasks.version + 1,
            component: component.clone(),
            plan: plan.clone(),
            ..tasks.clone()
        };
        let version = self.setup.tasks.version;
        self.manager.swap_to(version, component, plan, &self.group);
        self.check()?;
        let retried: Vec<i32> = self
            .manager
            .take_due_retries()
            .into_iter()
            .map(|id| id.partition)
            .collect();
        for p in &retried {
            self.failed.remove(p);
        }
        self.assign(&retried)?;
        self.run(VecDeque::new())
    }

    /// Stops every task cleanly (commit, close) and starts them again in a
    /// new task manager, as a process restart does: stores come back from
    /// their changelogs (offline stores live in memory, so a restart is also
    /// a lost state directory), stream time from the committed offsets.
    /// Failed tasks start again too.
    pub fn restart(&mut self) -> Result<(), DriverError> {
        self.manager.close_all(&self.group, true);
        if let Some(error) = self.manager.take_failure() {
            return Err(DriverError::Task(error));
        }
        self.manager = TaskManager::with_clients(
            self.setup.clone(),
            memory_clients(&self.log, self.partitions),
        )?;
        self.failed.clear();
        let all: Vec<i32> = (0..self.partitions).collect();
        self.assign(&all)?;
        self.run(VecDeque::new())
    }

    fn failure(&self, partition: i32) -> DriverError {
        match self.failed.get(&partition) {
            Some(message) => DriverError::TaskFailed {
                task: TaskId::for_partition(partition),
                message: message.clone(),
            },
            None => DriverError::NoSuchPartition {
                partition,
                partitions: self.partitions,
            },
        }
    }
}

fn read(path: &Path) -> Result<(String, Vec<u8>), DriverError> {
    read_component_file(path).map_err(|source| DriverError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The settings the driver's task manager reads: at-least-once, and
/// nothing that reaches a broker.
fn config(options: &DriverOptions) -> Result<Arc<Config>, DriverError> {
    let raw = [
        ("application.id", options.application_id.clone()),
        ("bootstrap.servers", "offline:9092".into()),
        ("processing.guarantee", "at_least_once".into()),
        (
            "statestore.cache.max.bytes",
            options.statestore_cache_max_bytes.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let config = Config::from_map(raw, None).map_err(|e| DriverError::Runtime(e.to_string()))?;
    Ok(Arc::new(config))
}

/// In-memory Kafka for the task manager: the driver commits under
/// at-least-once, and every topic has the driver's partitions.
fn memory_clients(log: &MemoryLog, partitions: i32) -> Clients {
    Clients::memory(
        log,
        ProcessingGuarantee::AtLeastOnce,
        partitions,
        Faults::default(),
    )
}

/// Offline topics: every name is the declared one; outputs are named by
/// sink (then repartition) name so they can be filed under it.
fn plan(topology: &Topology, application_id: &str, partitions: i32) -> Arc<TopicPlan> {
    let mut sources = topology.sources.clone();
    sources.extend(topology.repartitions.iter().cloned());
    Arc::new(TopicPlan {
        partitions: partitions.max(1) as usize,
        source_names: sources.clone(),
        sources,
        sinks: topology.output_names().map(str::to_string).collect(),
        changelogs: topics::changelogs(application_id, topology, |t| t),
        source_changelogs: topics::source_changelogs(topology),
    })
}

fn store_error(partition: i32, source: StoreError) -> DriverError {
    DriverError::Task(TaskError::Store {
        task: TaskId::for_partition(partition),
        source,
    })
}
