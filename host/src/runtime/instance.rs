//! One processor instance: a wasmtime store holding the task's
//! [`TaskContext`], with the memory cap and CPU deadline applied to every
//! call, and guest failures turned into [`GuestError`]s that name the
//! component.
//!
//! After a trap an instance cannot be entered again; it refuses further
//! calls, and the owner builds a new one from the same [`LoadedComponent`].

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{IncomingRecord, ProcessingError, Processor, PunctuationType, TaskInfo};
use super::native::NativeProcessor;
use super::task_context::TaskContext;
use super::{Kind, LoadedComponent, TICK};
use crate::store::StoreError;

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

/// A memory growth refused by the cap (a typed trap payload).
#[derive(Debug, Clone, thiserror::Error)]
#[error("memory growth to {desired} bytes refused, cap is {cap} bytes (wasm.max.memory.bytes)")]
pub struct MemoryCapExceeded {
    pub desired: usize,
    pub cap: usize,
}

struct MemoryCap {
    cap: usize,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            return Err(wasmtime::Error::new(MemoryCapExceeded {
                desired,
                cap: self.cap,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The seed of every instance's WASI random generators.
const GUEST_RANDOM_SEED: u64 = 0x5745_4952; // "WEIR"

/// WASI's wall and monotonic clocks for guests: always zero. Processors
/// get time from the `context` interface only.
struct StillClock;

impl wasmtime_wasi::HostWallClock for StillClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(1)
    }

    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for StillClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        0
    }
}

/// The data of an instance's wasmtime store.
pub struct HostState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    limiter: MemoryCap,
    pub(crate) task: TaskContext,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HostState {
    pub(crate) fn new(task: TaskContext, memory_cap: usize) -> Self {
        // No preopened directories, no environment, no arguments, no network:
        // WASI is linked only because Rust's std imports it. Time comes
        // through `context` (stream time, the host's wall clock for
        // punctuation), so WASI's clocks stand still at zero; randomness is
        // a fixed-seed generator, so a replayed batch computes the same
        // thing (std's HashMap keys still work, but nothing is secret).
        use rand::SeedableRng;
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(StillClock)
            .monotonic_clock(StillClock)
            .secure_random(rand::rngs::StdRng::seed_from_u64(GUEST_RANDOM_SEED))
            .insecure_random(rand::rngs::StdRng::seed_from_u64(GUEST_RANDOM_SEED))
            .insecure_random_seed(u128::from(GUEST_RANDOM_SEED))
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryCap { cap: memory_cap },
            task,
        }
    }
}

enum Body {
    Wasm {
        store: Store<HostState>,
        processor: Processor,
    },
    Native {
        task: Box<TaskContext>,
        logic: Box<dyn NativeProcessor>,
    },
}

pub struct ProcessorInstance {
    body: Body,
    component: Arc<LoadedComponent>,
    deadline_ticks: u64,
    poisoned: bool,
}

impl ProcessorInstance {
    /// Instantiates `component` for the task described by `task`.
    pub fn new(component: &Arc<LoadedComponent>, task: TaskContext) -> Result<Self, GuestError> {
        let limits = component.limits;
        let deadline_ticks =
            (limits.max_call.as_millis() / TICK.as_millis()).clamp(1, u64::MAX as u128) as u64;
        let body = match component.kind() {
            Kind::Native(factory) => Body::Native {
                task: Box::new(task),
                logic: factory(),
            },
            Kind::Wasm(pre) => {
                let mut task = task;
                task.limits = crate::runtime::task_context::BufferLimits {
                    max_call_bytes: limits.max_call_bytes,
                    max_record_bytes: limits.max_record_bytes,
                    max_handles: limits.max_handles,
                    max_schedules: limits.max_schedules,
                };
                let mut store =
                    Store::new(pre.engine(), HostState::new(task, limits.max_memory_bytes));
                store.limiter(|s| &mut s.limiter);
                store.set_epoch_deadline(deadline_ticks);
                store.epoch_deadline_trap();
                let processor =
                    pre.instantiate(&mut store)
                        .map_err(|e| GuestError::Instantiate {
                            component: component.label(),
                            reason: format!("{e:#}"),
                        })?;
                Body::Wasm { store, processor }
            }
        };
        Ok(ProcessorInstance {
            body,
            component: component.clone(),
            deadline_ticks,
            poisoned: false,
        })
    }

    pub fn task(&self) -> &TaskContext {
        match &self.body {
            Body::Wasm { store, .. } => &store.data().task,
            Body::Native { task, .. } => task,
        }
    }

    pub fn task_mut(&mut self) -> &mut TaskContext {
        match &mut self.body {
            Body::Wasm { store, .. } => &mut store.data_mut().task,
            Body::Native { task, .. } => task,
        }
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Shortens the CPU deadline of the calls that follow (never lengthens
    /// it past `wasm.max.call.ms`).
    pub fn limit_call_time(&mut self, limit: std::time::Duration) {
        let ticks = (limit.as_millis() / TICK.as_millis()).max(1) as u64;
        self.deadline_ticks = self.deadline_ticks.min(ticks);
    }

    fn limit_ms(&self) -> u128 {
        u128::from(self.deadline_ticks) * TICK.as_millis()
    }

    fn call<R>(
        &mut self,
        call: &'static str,
        wasm: impl FnOnce(
            &Processor,
            &mut Store<HostState>,
        ) -> wasmtime::Result<Result<R, ProcessingError>>,
        native: impl FnOnce(&mut dyn NativeProcessor, &mut TaskContext) -> Result<R, String>,
    ) -> Result<R, GuestError> {
        let component = self.component.label();
        if self.poisoned {
            return Err(GuestError::Poisoned { component });
        }
        let (result, task) = match &mut self.body {
            Body::Native { task, logic } => {
                return native(logic.as_mut(), task).map_err(|message| GuestError::Failed {
                    component,
                    call,
                    message,
                    batch_index: None,
                });
            }
            Body::Wasm { store, processor } => {
                store.set_epoch_deadline(self.deadline_ticks);
                store.data_mut().task.abort_reason = None;
                store.data_mut().task.call_bytes = 0;
                let result = wasm(processor, store);
                (result, &mut store.data_mut().task)
            }
        };
        if let Some(limit) = task.limit_failure.take() {
            self.poisoned = result.is_err();
            return Err(GuestError::Limit {
                component,
                call,
                limit,
            });
        }
        if let Some(source) = task.store_failure.take() {
            self.poisoned = result.is_err();
            return Err(GuestError::Store {
                component,
                call,
                source,
            });
        }
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(GuestError::Failed {
                component,
                call,
                message: e.message,
                batch_index: e.batch_index,
            }),
            Err(error) => {
                self.poisoned = true;
                let abort = task.abort_reason.take();
                let limit_ms = self.limit_ms();
                Err(classify(error, component, call, abort, limit_ms))
            }
        }
    }

    pub fn describe(
        &mut self,
    ) -> Result<super::bindings::weir::streams::types::Topology, GuestError> {
        self.call(
            "describe",
            |p, s| p.weir_streams_handler().call_describe(s).map(Ok),
            |_, _| Err("native processors are described by the host".into()),
        )
    }

    pub fn init(&mut self, info: &TaskInfo) -> Result<(), GuestError> {
        self.call(
            "init",
            |p, s| p.weir_streams_handler().call_init(s, info),
            |n, t| n.init(t),
        )
    }

    pub fn process(&mut self, batch: &[IncomingRecord]) -> Result<(), GuestError> {
        self.call(
            "process",
            |p, s| p.weir_streams_handler().call_process(s, batch),
            |n, t| n.process(t, batch),
        )
    }

    pub fn punctuate(
        &mut self,
        schedule: u32,
        kind: PunctuationType,
        timestamp: i64,
    ) -> Result<(), GuestError> {
        self.call(
            "punctuate",
            |p, s| {
                p.weir_streams_handler()
                    .call_punctuate(s, schedule, kind, timestamp)
            },
            |_, _| Ok(()),
        )
    }

    /// The guest's `close`. It runs after the task's last commit, so what
    /// it would write is refused rather than silently lost (or, on a swap,
    /// half kept): store writes and outputs return an error to the guest.
    pub fn close(&mut self) -> Result<(), GuestError> {
        self.task_mut().closing = true;
        self.call(
            "close",
            |p, s| p.weir_streams_handler().call_close(s).map(Ok),
            |_, _| Ok(()),
        )
    }
}

fn classify(
    error: wasmtime::Error,
    component: String,
    call: &'static str,
    abort: Option<(String, Option<u32>)>,
    limit_ms: u128,
) -> GuestError {
    if let Some(cap) = error.downcast_ref::<MemoryCapExceeded>() {
        return GuestError::Memory {
            component,
            source: cap.clone(),
        };
    }
    if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
        return GuestError::Deadline {
            component,
            call,
            limit_ms,
        };
    }
    let (reason, batch_index) = match abort {
        Some((message, index)) => (format!("{message} ({})", root_cause(&error)), index),
        None => (root_cause(&error), None),
    };
    GuestError::Trap {
        component,
        call,
        reason,
        batch_index,
    }
}

fn root_cause(error: &wasmtime::Error) -> String {
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    }
}
