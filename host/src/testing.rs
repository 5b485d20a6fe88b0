//! The offline test driver (Kafka Streams' `TopologyTestDriver`): runs a
//! component in-process with in-memory stores and no broker. Records are
//! piped in with keys, timestamps, headers and partitions; wall-clock time
//! is advanced by hand; what each sink received and what each store holds
//! can be read back.
//!
//! It runs the production code paths for everything but Kafka I/O: the same
//! [`Runtime`] (WIT bindings, memory cap, CPU deadline), the same
//! [`StreamTask`] (batching, stream time, punctuation, forwarding), the same
//! [`StateStore`](crate::store::StateStore) buffering over the in-memory
//! backend, the same commit cycle ([`CommitProtocol`] over a
//! [`MemoryCollector`] and a [`MemoryGroup`]: changelog records, store
//! writes applied at their changelog offsets, input offsets committed), and
//! the same swap used by hot deploys. Records forwarded to a
//! repartition come back to the task owning their key, as through Kafka.
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

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::commit::{
    CommitError, CommitParticipant, CommitProtocol, MemoryCollector, Outgoing, RecordSink,
};
use crate::config::ProcessingGuarantee;
use crate::group::MemoryGroup;
use crate::metrics::Metrics;
use crate::runtime::bindings::{Header, IncomingRecord};
use crate::runtime::{Clock, LoadError, LoadedComponent, Runtime, WasmLimits, read_component_file};
use crate::store::Entry;
use crate::task::{StreamTask, TaskError, TaskRegistry, TaskSetup};
use crate::topics::TopicPlan;
use crate::topology::{TaskId, Topology, changelog_topic};

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("cannot start the runtime: {0}")]
    Runtime(String),
    #[error("`{source_name}` is not a source of topology `{topology}` (sources: {known})")]
    UnknownSource {
        source_name: String,
        topology: String,
        known: String,
    },
    #[error("partition {partition} is out of range: the driver has {partitions} partition(s)")]
    NoSuchPartition { partition: i32, partitions: i32 },
    #[error("topology `{topology}` has no store `{store}`")]
    NoSuchStore { topology: String, store: String },
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error("task {task} has failed earlier: {message}")]
    TaskFailed { task: TaskId, message: String },
}

/// Options of a [`TestDriver`].
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// Partitions of every source (one task each).
    pub partitions: i32,
    pub application_id: String,
    /// The wall clock at start, in milliseconds since the Unix epoch.
    pub wall_clock_ms: i64,
    /// The same limits `weir run` applies (defaults: 256 MiB, 10 s).
    pub limits: WasmLimits,
    /// `processing.exception.handler` (default `fail`: the task fails).
    pub processing_errors: crate::task::ProcessingErrors,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            partitions: 1,
            application_id: "test-driver".into(),
            wall_clock_ms: 1_700_000_000_000,
            limits: WasmLimits::default(),
            processing_errors: Default::default(),
        }
    }
}

/// A record to pipe in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp: i64,
    /// `None`: by key, as Kafka's default partitioner (murmur2) would.
    pub partition: Option<i32>,
}

impl TestRecord {
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        TestRecord {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    pub fn at(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    pub fn on_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn header(mut self, key: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((key.to_string(), value.into()));
        self
    }
}

/// A record a sink received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutput {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp: Option<i64>,
    /// The task that forwarded it.
    pub task: TaskId,
}

impl TestOutput {
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }

    pub fn value_str(&self) -> Option<&str> {
        self.value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }
}

/// The clock the driver's tasks see.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Outputs of one call, by output name.
struct Collected(Vec<(String, TestOutput)>, TaskId);

impl RecordSink for Collected {
    fn send(&mut self, out: Outgoing<'_>) -> Result<(), CommitError> {
        let output = TestOutput {
            key: out.key.map(<[u8]>::to_vec),
            value: out.value.map(<[u8]>::to_vec),
            headers: out
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect(),
            timestamp: out.timestamp,
            task: self.1,
        };
        self.0.push((out.topic.to_string(), output));
        Ok(())
    }
}

pub struct TestDriver {
    topology: Arc<Topology>,
    setup: TaskSetup,
    clock: Arc<ManualClock>,
    partitions: i32,
    tasks: BTreeMap<i32, StreamTask>,
    failed: BTreeMap<i32, String>,
    outputs: BTreeMap<String, Vec<TestOutput>>,
    next_offset: BTreeMap<(String, i32), i64>,
    runtime: Runtime,
    /// The commit cycle's producer side: changelog records and their
    /// offsets (outputs are routed by the driver as they are forwarded).
    collector: MemoryCollector,
    group: MemoryGroup,
}

impl TestDriver {
    /// Loads the component at `path` and starts one task per partition.
    pub fn new(path: &Path, options: DriverOptions) -> Result<Self, DriverError> {
        let (name, bytes) = read(path)?;
        TestDriver::from_bytes(&name, &bytes, options)
    }

    pub fn from_bytes(
        name: &str,
        bytes: &[u8],
        options: DriverOptions,
    ) -> Result<Self, DriverError> {
        let runtime =
            Runtime::new(options.limits).map_err(|e| DriverError::Runtime(format!("{e:#}")))?;
        let component = runtime.load(name, bytes)?;
        let clock = Arc::new(ManualClock(AtomicI64::new(options.wall_clock_ms)));
        let setup = TaskSetup {
            application_id: options.application_id.clone(),
            version: 1,
            plan: plan(
                component.topology(),
                &options.application_id,
                options.partitions,
            ),
            component: component.clone(),
            disk: None,
            clock: clock.clone(),
            metrics: Arc::new(Metrics::default()),
            registry: Arc::new(TaskRegistry::default()),
            queries: Arc::default(),
            errors: options.processing_errors.clone(),
        };
        let mut driver = TestDriver {
            topology: component.topology().clone(),
            setup,
            clock,
            partitions: options.partitions.max(1),
            tasks: BTreeMap::new(),
            failed: BTreeMap::new(),
            outputs: BTreeMap::new(),
            next_offset: BTreeMap::new(),
            runtime,
            collector: MemoryCollector::new(ProcessingGuarantee::AtLeastOnce),
            group: MemoryGroup::joined(&options.application_id),
        };
        for p in 0..driver.partitions {
            let mut task = StreamTask::new(TaskId::for_partition(p), &driver.setup)?;
            let mut sink = Collected(Vec::new(), task.id());
            let started = task.start(&mut sink);
            driver.route(sink)?;
            match started {
                Ok(()) => {
                    driver.tasks.insert(p, task);
                }
                Err(e) => {
                    driver.failed.insert(p, e.to_string());
                }
            }
        }
        driver.commit()?;
        Ok(driver)
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    fn partition_of(&self, record: &TestRecord) -> Result<i32, DriverError> {
        let p = match (record.partition, &record.key) {
            (Some(p), _) => p,
            (None, Some(key)) => crate::kafka::partition_for_key(key, self.partitions),
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
        )?;
        self.commit()
    }

    /// Commits every task through the production commit cycle (changelog
    /// records sent, store writes applied at their changelog offsets,
    /// input offsets committed). The driver commits after every `pipe`,
    /// `advance_wall_clock` and `swap`, as Kafka Streams'
    /// `TopologyTestDriver` does after every record.
    pub fn commit(&mut self) -> Result<(), DriverError> {
        let mut participants: Vec<&mut dyn CommitParticipant> = self
            .tasks
            .values_mut()
            .filter(|t| t.needs_commit())
            .map(|t| t as &mut dyn CommitParticipant)
            .collect();
        if participants.is_empty() {
            return Ok(());
        }
        CommitProtocol::AtLeastOnce
            .commit(&mut participants, &mut self.collector, &self.group)
            .map_err(|e| DriverError::Task(e.into()))?;
        Ok(())
    }

    /// The next offset of `source` partition `partition` the group has
    /// committed (`None`: nothing committed yet).
    pub fn committed_offset(&self, source: &str, partition: i32) -> Option<i64> {
        self.group
            .committed_offsets()
            .get(&(source.to_string(), partition))
            .map(|o| o.offset)
    }

    /// What store `store`'s changelog topic holds for the task of
    /// `partition`, in offset order: `(key, value)`, `None` for a delete.
    pub fn changelog(&self, store: &str, partition: i32) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let Some((_, topic)) = self.setup.plan.changelogs.iter().find(|(s, _)| s == store) else {
            return Vec::new();
        };
        self.collector
            .records(topic)
            .into_iter()
            .filter(|r| r.partition == partition)
            .map(|r| (r.key.clone().unwrap_or_default(), r.value.clone()))
            .collect()
    }

    /// Processes `pending` records; records forwarded to a repartition come
    /// back here until none are left.
    fn run(&mut self, mut pending: VecDeque<(String, TestRecord)>) -> Result<(), DriverError> {
        while !pending.is_empty() {
            let mut batches: Vec<(String, i32, Vec<IncomingRecord>)> = Vec::new();
            for (source, record) in pending.drain(..) {
                let partition = self.partition_of(&record)?;
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
                match batches.last_mut() {
                    Some((s, p, batch)) if *s == source && *p == partition => batch.push(incoming),
                    _ => batches.push((source, partition, vec![incoming])),
                }
            }
            for (source, partition, batch) in batches {
                let Some(task) = self.tasks.get_mut(&partition) else {
                    return Err(self.failure(partition));
                };
                let mut sink = Collected(Vec::new(), task.id());
                let result = task.process(&source, batch, &mut sink);
                pending.extend(self.route(sink)?);
                self.check(partition, result)?;
            }
        }
        Ok(())
    }

    /// Moves the wall clock on by `by` and fires wall-clock punctuations.
    pub fn advance_wall_clock(&mut self, by: Duration) -> Result<(), DriverError> {
        self.clock
            .0
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        for p in partitions {
            let task = self.tasks.get_mut(&p).expect("listed above");
            let mut sink = Collected(Vec::new(), task.id());
            let result = task.punctuate_wall_clock(&mut sink);
            let back = self.route(sink)?;
            self.check(p, result)?;
            self.run(back.into())?;
        }
        self.commit()
    }

    /// Everything sink `sink` received since the last read.
    pub fn read_output(&mut self, sink: &str) -> Vec<TestOutput> {
        self.outputs.remove(sink).unwrap_or_default()
    }

    /// Every entry of `store` in the task of `partition`, in key order
    /// (as the processor sees them; the driver commits after every call).
    pub fn store_entries(&self, partition: i32, store: &str) -> Result<Vec<Entry>, DriverError> {
        let task = self
            .tasks
            .get(&partition)
            .ok_or_else(|| self.failure(partition))?;
        let s = task.store(store).ok_or_else(|| DriverError::NoSuchStore {
            topology: self.topology.name.clone(),
            store: store.to_string(),
        })?;
        s.scan(
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
            usize::MAX,
        )
        .map_err(|source| {
            DriverError::Task(TaskError::Store {
                task: TaskId::for_partition(partition),
                source,
            })
        })
    }

    /// Every window of window store `store` in the task of `partition`,
    /// segment by segment, then by key and start (uncommitted writes
    /// included).
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

    /// Window-store writes dropped as too late, over all tasks (Kafka
    /// Streams' `dropped-records`).
    pub fn dropped_records(&self) -> u64 {
        self.setup
            .metrics
            .dropped_records
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The error that failed the task of `partition`, if it failed.
    pub fn task_error(&self, partition: i32) -> Option<&str> {
        self.failed.get(&partition).map(String::as_str)
    }

    /// Swaps every task to another component on the same stores, as a hot
    /// deploy does.
    pub fn swap(&mut self, path: &Path) -> Result<(), DriverError> {
        let (name, bytes) = read(path)?;
        let component: Arc<LoadedComponent> = self.runtime.load(&name, &bytes)?;
        self.setup = TaskSetup {
            version: self.setup.version + 1,
            plan: plan(
                component.topology(),
                &self.setup.application_id,
                self.partitions,
            ),
            component: component.clone(),
            ..self.setup.clone()
        };
        self.topology = component.topology().clone();
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        for p in partitions {
            let mut task = self.tasks.remove(&p).expect("listed above");
            let mut sink = Collected(Vec::new(), task.id());
            let result = task.swap(&self.setup).and_then(|_| task.start(&mut sink));
            self.tasks.insert(p, task);
            self.route(sink)?;
            self.check(p, result)?;
        }
        self.commit()
    }

    /// Files outputs under their sink; returns records for repartitions.
    fn route(&mut self, sink: Collected) -> Result<Vec<(String, TestRecord)>, DriverError> {
        let mut back = Vec::new();
        for (name, out) in sink.0 {
            if self.topology.repartitions.contains(&name) {
                back.push((
                    name,
                    TestRecord {
                        key: out.key,
                        value: out.value,
                        headers: out.headers,
                        timestamp: out.timestamp.unwrap_or(0),
                        partition: None,
                    },
                ));
            } else {
                self.outputs.entry(name).or_default().push(out);
            }
        }
        Ok(back)
    }

    fn check(&mut self, partition: i32, result: Result<(), TaskError>) -> Result<(), DriverError> {
        if let Err(e) = result {
            // Like production: the failed task's work is discarded; the
            // other tasks go on.
            if let Some(task) = self.tasks.remove(&partition) {
                task.close_dirty();
            }
            self.failed.insert(partition, e.to_string());
            return Err(e.into());
        }
        Ok(())
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

/// Builds the processor crate at `crate_dir` for wasm32-wasip2 (release)
/// and returns the component's path: what a processor's own `cargo test`
/// calls before driving it. Uses `$CARGO_TARGET_DIR/wasm-guests` (or
/// `<crate_dir>/target/wasm-guests`), a target directory of its own, so it
/// never waits on the running `cargo test`.
pub fn build_component(crate_dir: &Path) -> Result<std::path::PathBuf, DriverError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| DriverError::Read { path, source }
    };
    let manifest = crate_dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).map_err(io(&manifest))?;
    let package = toml::from_str::<toml::Table>(&text)
        .ok()
        .and_then(|t| t.get("package")?.get("name")?.as_str().map(str::to_string))
        .ok_or_else(|| DriverError::Read {
            path: manifest.display().to_string(),
            source: std::io::Error::other("no [package] name"),
        })?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate_dir.join("target"))
        .join("wasm-guests");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .output()
        .map_err(io(&manifest))?;
    if !output.status.success() {
        return Err(DriverError::Read {
            path: manifest.display().to_string(),
            source: std::io::Error::other(format!(
                "cargo build --target wasm32-wasip2 failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            )),
        });
    }
    Ok(target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", package.replace('-', "_"))))
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
        changelogs: topology
            .stores
            .iter()
            .filter(|s| s.logged)
            .map(|s| (s.name.clone(), changelog_topic(application_id, &s.name)))
            .collect(),
    })
}
