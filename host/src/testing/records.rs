//! What a processor's tests hand the [`TestDriver`](super::TestDriver) and
//! get back: options, input records, outputs, errors, the manual clock.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::runtime::{Clock, LoadError, WasmLimits};
use crate::task::TaskError;
use crate::topology::TaskId;

/// Why a [`TestDriver`](super::TestDriver) call failed; each names what
/// it is about.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A file (the component, a processor crate's manifest) could not be
    /// read, or the component could not be built.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The component was refused, as `weir deploy` would refuse it.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// wasmtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(String),
    /// A record was piped to a source the topology does not declare.
    #[error("`{source_name}` is not a source of topology `{topology}` (sources: {known})")]
    UnknownSource {
        /// The name piped to.
        source_name: String,
        /// The topology's name.
        topology: String,
        /// Its sources and repartitions.
        known: String,
    },
    /// A record or a read named a partition the driver does not have.
    #[error("partition {partition} is out of range: the driver has {partitions} partition(s)")]
    NoSuchPartition {
        /// The partition asked for.
        partition: i32,
        /// [`DriverOptions::partitions`].
        partitions: i32,
    },
    /// A store read named a store the topology does not declare.
    #[error("topology `{topology}` has no store `{store}`")]
    NoSuchStore {
        /// The topology's name.
        topology: String,
        /// The store asked for.
        store: String,
    },
    /// A task failed in a way the driver cannot go on from (as `weir run`
    /// would end).
    #[error(transparent)]
    Task(#[from] TaskError),
    /// Bytes did not decode as the type a typed helper was asked for.
    #[error("{what}: {source}")]
    Decode {
        /// What was being decoded (an output key, a store value, …).
        what: String,
        /// Why it did not decode.
        source: weir_sdk::CodecError,
    },
    /// A store of a task that failed earlier was read.
    #[error("task {task} has failed earlier: {message}")]
    TaskFailed {
        /// The task.
        task: TaskId,
        /// Its failure.
        message: String,
    },
}

/// Options of a [`TestDriver`].
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// Partitions of every source (one task each).
    pub partitions: i32,
    /// `application.id`: names the changelog topics (`changelog()`).
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
    /// `statestore.cache.max.bytes` (default 10 MiB, as `weir run`): what
    /// a processor's record cache may hold back until the commit that ends
    /// each `pipe`; 0 forwards every update.
    pub statestore_cache_max_bytes: usize,
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
            statestore_cache_max_bytes: 10 << 20,
        }
    }
}

/// A record to pipe in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestRecord {
    /// Key bytes (`None`: a null key).
    pub key: Option<Vec<u8>>,
    /// Value bytes (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
    /// Kafka headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Milliseconds since the Unix epoch (default 0).
    pub timestamp: i64,
    /// `None`: by key, as Kafka's default partitioner (murmur2) would.
    pub partition: Option<i32>,
}

impl TestRecord {
    /// A record with a key and a value.
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

    /// At `timestamp` (milliseconds since the Unix epoch).
    pub fn at(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// On `partition` rather than where its key hashes to.
    pub fn on_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// With one more header.
    pub fn header(mut self, key: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((key.to_string(), value.into()));
        self
    }
}

/// A record a sink received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutput {
    /// Key bytes (`None`: a null key).
    pub key: Option<Vec<u8>>,
    /// Value bytes (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers as sent (the input's, unless the processor set its own).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The timestamp it was sent with (`None`: the producer's clock).
    pub timestamp: Option<i64>,
    /// The task that forwarded it.
    pub task: TaskId,
}

impl TestOutput {
    /// The key as UTF-8 text, if it is.
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The value as UTF-8 text, if it is.
    pub fn value_str(&self) -> Option<&str> {
        self.value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The value of the first header named `key`.
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
