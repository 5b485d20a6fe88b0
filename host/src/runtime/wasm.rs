//! Processors compiled to WebAssembly components: the [`ProcessorFactory`]
//! of a loaded component ([`WasmFactory`]) and its per-task instance, a
//! wasmtime store holding the task's [`TaskContext`] with the memory cap
//! and CPU deadline applied to every call. Traps, broken caps and missed
//! deadlines become [`GuestError`]s; they never take the process down.

use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::v0_3::weir::streams::records::{InputBatch, Outputs};
use super::bindings::{IncomingRecord, ProcessingError, PunctuationType, TaskInfo, v0_2, v0_3};
use super::instance::{Body, GuestError, ProcessorFactory};
use super::task_context::{BufferLimits, TaskContext};
use super::{LoadedComponent, TICK};
use crate::topology::Topology;

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

/// A compiled component, pre-linked once at load against the contract
/// version it was built for.
pub(crate) enum Linked {
    V0_2(v0_2::ProcessorPre<HostState>),
    V0_3(v0_3::ProcessorPre<HostState>),
}

/// An instance's exports, of the version it was built for.
enum Exports {
    V0_2(v0_2::Processor),
    V0_3(v0_3::Processor),
}

/// Instantiates a compiled component, pre-linked once at load.
pub(crate) struct WasmFactory {
    pub(crate) linked: Linked,
}

impl ProcessorFactory for WasmFactory {
    fn instantiate(
        &self,
        component: &LoadedComponent,
        task: TaskContext,
    ) -> Result<Box<dyn Body>, GuestError> {
        let limits = component.limits();
        let deadline_ticks =
            (limits.max_call.as_millis() / TICK.as_millis()).clamp(1, u64::MAX as u128) as u64;
        let mut task = task;
        task.limits = BufferLimits {
            max_call_bytes: limits.max_call_bytes,
            max_record_bytes: limits.max_record_bytes,
            max_handles: limits.max_handles,
            max_schedules: limits.max_schedules,
        };
        let engine = match &self.linked {
            Linked::V0_2(pre) => pre.engine(),
            Linked::V0_3(pre) => pre.engine(),
        };
        let mut store = Store::new(engine, HostState::new(task, limits.max_memory_bytes));
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(deadline_ticks);
        store.epoch_deadline_trap();
        let exports = match &self.linked {
            Linked::V0_2(pre) => pre.instantiate(&mut store).map(Exports::V0_2),
            Linked::V0_3(pre) => pre.instantiate(&mut store).map(Exports::V0_3),
        };
        let exports = exports.map_err(|e| GuestError::Instantiate {
            component: component.label(),
            reason: format!("{e:#}"),
        })?;
        Ok(Box::new(WasmBody {
            store,
            exports,
            deadline_ticks,
            poisoned: false,
        }))
    }
}

struct WasmBody {
    store: Store<HostState>,
    exports: Exports,
    deadline_ticks: u64,
    /// It trapped, or returned from a call the host then refused.
    poisoned: bool,
}

impl WasmBody {
    fn limit_ms(&self) -> u128 {
        u128::from(self.deadline_ticks) * TICK.as_millis()
    }

    fn call<R>(
        &mut self,
        component: &str,
        call: &'static str,
        wasm: impl FnOnce(
            &Exports,
            &mut Store<HostState>,
        ) -> wasmtime::Result<Result<R, ProcessingError>>,
    ) -> Result<R, GuestError> {
        let component = component.to_string();
        if self.poisoned {
            return Err(GuestError::Poisoned { component });
        }
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.store.data_mut().task.abort_reason = None;
        self.store.data_mut().task.call_bytes = 0;
        let result = wasm(&self.exports, &mut self.store);
        let limit_ms = self.limit_ms();
        let task = &mut self.store.data_mut().task;
        if let Some(limit) = task.limit_failure.take() {
            // Unusable if it trapped, and if it returned success: the host
            // undoes a call the guest believes done, and what the guest
            // keeps of its stores would outlive that.
            self.poisoned = !matches!(result, Ok(Err(_)));
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
                let abort = task.abort_reason.take();
                self.poisoned = true;
                Err(classify(error, component, call, abort, limit_ms))
            }
        }
    }
}

impl Body for WasmBody {
    fn task(&self) -> &TaskContext {
        &self.store.data().task
    }

    fn task_mut(&mut self) -> &mut TaskContext {
        &mut self.store.data_mut().task
    }

    fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    fn limit_call_time(&mut self, limit: Duration) {
        let ticks = (limit.as_millis() / TICK.as_millis()).max(1) as u64;
        self.deadline_ticks = self.deadline_ticks.min(ticks);
    }

    fn describe(&mut self, component: &str) -> Result<Topology, GuestError> {
        self.call(component, "describe", |e, s| match e {
            Exports::V0_2(p) => p
                .weir_streams_handler()
                .call_describe(s)
                .map(|t| Ok(super::describe::from_v0_2(t))),
            Exports::V0_3(p) => p
                .weir_streams_handler()
                .call_describe(s)
                .map(|t| Ok(super::describe::from_v0_3(t))),
        })
    }

    fn init(&mut self, component: &str, info: &TaskInfo) -> Result<(), GuestError> {
        let outputs = self.call(component, "init", |e, s| match e {
            Exports::V0_2(p) => p.weir_streams_handler().call_init(s, info).map(none),
            Exports::V0_3(p) => p.weir_streams_handler().call_init(s, info),
        })?;
        self.deliver(component, "init", outputs)
    }

    fn process(&mut self, component: &str, batch: &[IncomingRecord]) -> Result<(), GuestError> {
        let outputs = self.call(component, "process", |e, s| match e {
            Exports::V0_2(p) => p.weir_streams_handler().call_process(s, batch).map(none),
            Exports::V0_3(p) => p
                .weir_streams_handler()
                .call_process(s, &input_batch(batch)),
        })?;
        self.deliver(component, "process", outputs)
    }

    fn punctuate(
        &mut self,
        component: &str,
        schedule: u32,
        kind: PunctuationType,
        timestamp: i64,
    ) -> Result<(), GuestError> {
        let outputs = self.call(component, "punctuate", |e, s| match e {
            Exports::V0_2(p) => p
                .weir_streams_handler()
                .call_punctuate(s, schedule, kind, timestamp)
                .map(none),
            Exports::V0_3(p) => p
                .weir_streams_handler()
                .call_punctuate(s, schedule, kind, timestamp),
        })?;
        self.deliver(component, "punctuate", outputs)
    }

    fn flush(&mut self, component: &str) -> Result<(), GuestError> {
        let outputs = self.call(component, "flush", |e, s| match e {
            Exports::V0_2(_) => Ok(Ok(no_outputs())),
            Exports::V0_3(p) => p.weir_streams_handler().call_flush(s),
        })?;
        self.deliver(component, "flush", outputs)
    }

    fn close(&mut self, component: &str) -> Result<(), GuestError> {
        self.call(component, "close", |e, s| match e {
            Exports::V0_2(p) => p.weir_streams_handler().call_close(s).map(Ok),
            Exports::V0_3(p) => p.weir_streams_handler().call_close(s).map(Ok),
        })
    }
}

/// A 0.2.0 call's result: it forwarded as it went, and returns no outputs.
fn none(result: Result<(), ProcessingError>) -> Result<Outputs, ProcessingError> {
    result.map(|()| no_outputs())
}

fn no_outputs() -> Outputs {
    Outputs {
        count: 0,
        encoded: Vec::new(),
    }
}

/// A batch of one partition of one input (as the task makes them), in
/// 0.3.0's shape: where it came from once, then the records encoded.
fn input_batch(batch: &[IncomingRecord]) -> InputBatch {
    let (source, topic, partition) = batch
        .first()
        .map(|r| (r.source.clone(), r.topic.clone(), r.partition))
        .unwrap_or_default();
    InputBatch {
        source,
        topic,
        partition,
        count: batch.len() as u32,
        encoded: super::encoded::encode(batch),
    }
}

impl WasmBody {
    /// Buffers the outputs a 0.3.0 call returned, as 0.2.0's `forward`
    /// would have one by one: outputs that do not decode, an output to no
    /// declared sink, or one over a cap, fail the call.
    fn deliver(
        &mut self,
        component: &str,
        call: &'static str,
        outputs: Outputs,
    ) -> Result<(), GuestError> {
        let task = &mut self.store.data_mut().task;
        for output in super::encoded::outputs(&outputs.encoded, outputs.count) {
            let forwarded =
                output.and_then(|(sink, record)| task.forward_to(sink as usize, record));
            if let Err(message) = forwarded {
                // As with a limit above: the guest believes the call done.
                self.poisoned = true;
                return Err(match task.limit_failure.take() {
                    Some(limit) => GuestError::Limit {
                        component: component.to_string(),
                        call,
                        limit,
                    },
                    None => GuestError::Failed {
                        component: component.to_string(),
                        call,
                        message,
                        batch_index: None,
                    },
                });
            }
        }
        Ok(())
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
