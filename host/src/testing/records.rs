//! What a processor's tests hand the [`TestDriver`](super::TestDriver) and
//! get back: options, input records, outputs, errors, the manual clock.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::runtime::{Clock, LoadError, WasmLimits};
use crate::task::TaskError;
use crate::topology::TaskId;

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
    /// `max.task.idle.ms` (default 0; `None`: -1): how long records of a
    /// task with several inputs wait for an empty one, on the driver's
    /// wall clock (`advance_wall_clock`).
    pub max_task_idle: Option<std::time::Duration>,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            partitions: 1,
            application_id: "test-driver".into(),
            wall_clock_ms: 1_700_000_000_000,
            limits: WasmLimits::default(),
            processing_errors: Default::default(),
            max_task_idle: Some(std::time::Duration::ZERO),
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

    /// A record with a key and no value: a delete for a table or store.
    pub fn tombstone(key: impl Into<Vec<u8>>) -> Self {
        TestRecord {
            key: Some(key.into()),
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
pub struct ManualClock(pub(super) AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
