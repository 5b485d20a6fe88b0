//! One task's processor instance, as the task sees it: the calls of the
//! `handler` interface over a [`Body`] that a [`ProcessorFactory`] made —
//! a wasmtime instance ([`super::wasm`]) or Rust code ([`super::native`],
//! for the bench and unit tests) — with failures as [`GuestError`]s that
//! name the component.
//!
//! After a trap an instance cannot be entered again; it refuses further
//! calls, and the owner builds a new one from the same [`LoadedComponent`].

use std::sync::Arc;
use std::time::Duration;

use super::LoadedComponent;
use super::bindings::{IncomingRecord, PunctuationType, TaskInfo};
use super::task_context::TaskContext;
use super::wasm::MemoryCapExceeded;
use crate::store::StoreError;
use crate::topology::Topology;

/// A guest call that did not succeed, naming the component.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("component {component} trapped in {call}: {reason}")]
    Trap {
        component: String,
        call: &'static str,
        reason: String,
        batch_index: Option<u32>,
    },
    #[error("component {component} returned an error from {call}: {message}")]
    Failed {
        component: String,
        call: &'static str,
        message: String,
        batch_index: Option<u32>,
    },
    #[error("component {component} exceeded its CPU deadline ({limit_ms} ms per call) in {call}")]
    Deadline {
        component: String,
        call: &'static str,
        limit_ms: u128,
    },
    #[error("component {component} exceeded its memory cap: {source}")]
    Memory {
        component: String,
        source: MemoryCapExceeded,
    },
    #[error("component {component}: store failure during {call}: {source}")]
    Store {
        component: String,
        call: &'static str,
        source: StoreError,
    },
    #[error("component {component} exceeded a host buffer cap in {call}: {limit}")]
    Limit {
        component: String,
        call: &'static str,
        limit: String,
    },
    #[error("component {component} cannot be instantiated: {reason}")]
    Instantiate { component: String, reason: String },
    #[error("component {component} is unusable after an earlier trap")]
    Poisoned { component: String },
}

impl GuestError {
    /// Index in the batch of the record the guest was processing, if known.
    pub fn batch_index(&self) -> Option<u32> {
        match self {
            GuestError::Trap { batch_index, .. } | GuestError::Failed { batch_index, .. } => {
                *batch_index
            }
            _ => None,
        }
    }
}

/// Makes the processor of each task of a [`LoadedComponent`].
pub(crate) trait ProcessorFactory: Send + Sync {
    /// A processor for one task, working on `task`.
    fn instantiate(
        &self,
        component: &LoadedComponent,
        task: TaskContext,
    ) -> Result<Box<dyn Body>, GuestError>;
}

/// One task's running processor: the `handler` calls, each failure named
/// after `component` (the label errors use).
pub(crate) trait Body: Send {
    fn task(&self) -> &TaskContext;
    fn task_mut(&mut self) -> &mut TaskContext;
    /// Whether an earlier failure left it unusable.
    fn is_poisoned(&self) -> bool {
        false
    }
    /// Shortens the CPU deadline of the calls that follow.
    fn limit_call_time(&mut self, _limit: Duration) {}
    fn describe(&mut self, component: &str) -> Result<Topology, GuestError>;
    fn init(&mut self, component: &str, info: &TaskInfo) -> Result<(), GuestError>;
    fn process(&mut self, component: &str, batch: &[IncomingRecord]) -> Result<(), GuestError>;
    fn punctuate(
        &mut self,
        component: &str,
        schedule: u32,
        kind: PunctuationType,
        timestamp: i64,
    ) -> Result<(), GuestError>;
    /// Before a commit: what the processor buffers goes out now.
    fn flush(&mut self, _component: &str) -> Result<(), GuestError> {
        Ok(())
    }
    fn close(&mut self, component: &str) -> Result<(), GuestError>;
}

pub struct ProcessorInstance {
    body: Box<dyn Body>,
    /// `name@sha256:…`, what errors call the component.
    label: String,
}

impl ProcessorInstance {
    /// Instantiates `component` for the task described by `task`.
    pub fn new(component: &Arc<LoadedComponent>, task: TaskContext) -> Result<Self, GuestError> {
        Ok(ProcessorInstance {
            body: component.factory().instantiate(component, task)?,
            label: component.label(),
        })
    }

    pub fn task(&self) -> &TaskContext {
        self.body.task()
    }

    pub fn task_mut(&mut self) -> &mut TaskContext {
        self.body.task_mut()
    }

    pub fn is_poisoned(&self) -> bool {
        self.body.is_poisoned()
    }

    /// Shortens the CPU deadline of the calls that follow (never lengthens
    /// it past `wasm.max.call.ms`).
    pub fn limit_call_time(&mut self, limit: Duration) {
        self.body.limit_call_time(limit);
    }

    pub fn describe(&mut self) -> Result<Topology, GuestError> {
        self.body.describe(&self.label)
    }

    pub fn init(&mut self, info: &TaskInfo) -> Result<(), GuestError> {
        self.body.init(&self.label, info)
    }

    pub fn process(&mut self, batch: &[IncomingRecord]) -> Result<(), GuestError> {
        self.body.process(&self.label, batch)
    }

    pub fn punctuate(
        &mut self,
        schedule: u32,
        kind: PunctuationType,
        timestamp: i64,
    ) -> Result<(), GuestError> {
        self.body.punctuate(&self.label, schedule, kind, timestamp)
    }

    /// The guest's `flush`, before the task commits: outputs and store
    /// writes the processor held back (a record cache) are made now, so
    /// the commit includes them.
    pub fn flush(&mut self) -> Result<(), GuestError> {
        self.body.flush(&self.label)
    }

    /// The guest's `close`. It runs after the task's last commit, so what
    /// it would write is refused rather than silently lost (or, on a swap,
    /// half kept): store writes and outputs return an error to the guest.
    pub fn close(&mut self) -> Result<(), GuestError> {
        self.task_mut().closing = true;
        self.body.close(&self.label)
    }
}
