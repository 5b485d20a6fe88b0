//! What a conformance case drives: a [`Target`] is either the offline test
//! driver or a live `weir` process on a real broker. Cases are written once
//! against this trait.

use std::time::Duration;

/// A record to send: source, key, command (the value), partition,
/// timestamp, headers.
#[derive(Debug, Clone)]
pub struct Cmd {
    /// The probe's source it goes to: `commands` unless [`Cmd::to`].
    pub source: &'static str,
    pub key: String,
    pub command: String,
    pub partition: i32,
    pub timestamp: i64,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Cmd {
    pub fn new(key: &str, command: &str) -> Self {
        Cmd {
            source: "commands",
            key: key.into(),
            command: command.into(),
            partition: 0,
            timestamp: 1_000,
            headers: Vec::new(),
        }
    }

    /// To the probe's other source, `side`.
    pub fn on_side(mut self) -> Self {
        self.source = "side";
        self
    }

    pub fn on(mut self, partition: i32) -> Self {
        self.partition = partition;
        self
    }

    pub fn at(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    pub fn header(mut self, key: &str, value: &[u8]) -> Self {
        self.headers.push((key.into(), value.to_vec()));
        self
    }
}

/// A record a sink received.
#[derive(Debug, Clone)]
pub struct Out {
    pub key: String,
    pub value: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp: Option<i64>,
}

impl Out {
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }
}

/// How a case's host is configured.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// `wasm.max.call.ms`.
    pub max_call: Duration,
    /// `max.task.idle.ms`.
    pub max_task_idle: Duration,
}

/// Why a case could not run on a target (not a failure of the host).
pub const NOT_APPLICABLE: &str = "not applicable in this mode";

pub trait Target {
    /// Sends commands in order. A task failure is not an error here: read
    /// it with [`Target::failure`].
    fn send(&mut self, cmds: &[Cmd]) -> Result<(), String>;
    /// Every record `sink` has received, once it has at least `at_least`.
    fn outputs(
        &mut self,
        sink: &str,
        at_least: usize,
        timeout: Duration,
    ) -> Result<Vec<Out>, String>;
    /// Moves the wall clock on (offline) or waits that long (live).
    fn advance_wall_clock(&mut self, by: Duration) -> Result<(), String>;
    /// Stops and starts the host again, optionally deleting local state.
    fn restart(&mut self, wipe_state: bool) -> Result<(), String>;
    /// Deploys another component over the running one.
    fn redeploy(&mut self, component: &std::path::Path) -> Result<(), String>;
    /// The failure the host reported for a task, waiting up to `timeout`.
    fn failure(&mut self, timeout: Duration) -> Option<String>;
    /// Whether other tasks go on after one fails (the offline driver and
    /// `weir run` both keep them running).
    fn other_tasks_continue(&self) -> bool;
    /// What to show beside a failed case (the end of the host's log).
    fn diagnostics(&self) -> Option<String> {
        None
    }
}
