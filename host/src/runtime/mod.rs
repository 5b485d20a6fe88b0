//! The WebAssembly runtime: one wasmtime engine and linker per process,
//! component loading and validation, and per-task [`ProcessorInstance`]s with
//! memory caps and CPU deadlines.
//!
//! Knows nothing of Kafka. A guest fault becomes a [`GuestError`] naming the
//! component; it never takes the process down.

pub mod bindings;
mod describe;
mod encoded;
mod host;
mod instance;
mod native;
mod task_context;
mod wasm;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::Engine;

use wasmtime::component::{Component, HasSelf, Linker};

use instance::ProcessorFactory;
pub use instance::{GuestError, ProcessorInstance};
pub use native::{NativeFactory, NativeProcessor};
pub use task_context::{Clock, Forwarded, Schedules, SystemClock, TaskContext};
pub use wasm::{HostState, MemoryCapExceeded};

use crate::topology::{TaskId, Topology, TopologyError};

/// CPU deadline of `describe()` (or `wasm.max.call.ms` if shorter).
const DESCRIBE_DEADLINE: Duration = Duration::from_secs(2);

/// Epoch tick: the resolution of CPU deadlines.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// Default of `wasm.max.memory.bytes`.
pub const DEFAULT_MAX_MEMORY_BYTES: usize = 256 << 20;
/// Default of `wasm.max.call.ms`.
pub const DEFAULT_MAX_CALL: Duration = Duration::from_secs(10);
/// `wasm.max.call.bytes` when not configured.
pub const DEFAULT_MAX_CALL_BYTES: usize = 64 << 20;
/// `wasm.max.handles` when not configured.
pub const DEFAULT_MAX_HANDLES: usize = 1024;
/// `wasm.max.schedules` when not configured.
pub const DEFAULT_MAX_SCHEDULES: usize = 1024;
/// librdkafka's default producer `message.max.bytes`.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1_000_000;

/// The version of the WIT package the SDK builds against, the newest this
/// host speaks.
pub const WIT_VERSION: &str = "0.3.0";

/// Every version of the WIT package this host runs components of, newest
/// first.
pub const WIT_VERSIONS: [&str; 2] = ["0.3.0", "0.2.0"];

/// Per-instance limits.
#[derive(Debug, Clone, Copy)]
pub struct WasmLimits {
    pub max_memory_bytes: usize,
    pub max_call: Duration,
    /// Host-side bytes (store writes and outputs) one call may buffer.
    pub max_call_bytes: usize,
    /// The largest record Kafka accepts (producer `message.max.bytes`): a
    /// changelogged store entry or an output larger than this is refused
    /// when the guest makes it, not when the producer fails at commit.
    pub max_record_bytes: usize,
    /// Store and iterator handles one instance may hold open at once.
    pub max_handles: usize,
    /// Live punctuation schedules per task.
    pub max_schedules: usize,
}

/// The limits `weir run` applies when the config says nothing.
impl Default for WasmLimits {
    fn default() -> Self {
        WasmLimits {
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            max_call: DEFAULT_MAX_CALL,
            max_call_bytes: DEFAULT_MAX_CALL_BYTES,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_handles: DEFAULT_MAX_HANDLES,
            max_schedules: DEFAULT_MAX_SCHEDULES,
        }
    }
}

/// Why a component was rejected; every variant names it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{name}: not a WebAssembly binary (no `\\0asm` header)")]
    NotWasm { name: String },
    #[error(
        "{name}: a core WebAssembly module, not a component; build it with `cargo build --target wasm32-wasip2`"
    )]
    CoreModule { name: String },
    #[error("{name}: invalid component: {reason}")]
    Invalid { name: String, reason: String },
    #[error(
        "{name}: does not fit this host's `weir:streams/processor` world (versions {}): {reason}",
        WIT_VERSIONS.join(", ")
    )]
    WrongWorld { name: String, reason: String },
    #[error("{name}: describe() failed: {source}")]
    Describe {
        name: String,
        source: Box<GuestError>,
    },
    #[error("{name}: {source}")]
    Topology { name: String, source: TopologyError },
}

/// Reads a component file: its file name (what errors call it) and bytes.
pub fn read_component_file(path: &Path) -> std::io::Result<(String, Vec<u8>)> {
    let bytes = std::fs::read(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((name, bytes))
}

/// Process-wide wasmtime state.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    limits: WasmLimits,
}

impl Runtime {
    pub fn new(limits: WasmLimits) -> wasmtime::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // `perf` cannot name JIT code by itself; with this set, wasmtime
        // writes /tmp/perf-<pid>.map so profiles show guest functions.
        if std::env::var_os("WEIR_WASM_PERFMAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bindings::v0_2::Processor::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )?;
        bindings::v0_3::Processor::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )?;

        // Epoch ticker: what lets a CPU deadline interrupt a guest loop. It
        // lives as long as the engine does (loaded components hold it).
        let ticking = engine.weak();
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticking.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .map_err(wasmtime::Error::new)?;
        Ok(Runtime {
            engine,
            linker,
            limits,
        })
    }

    /// Identifies which compiled artifacts this engine can load (wasmtime
    /// version and settings); part of compiled-cache file names.
    pub fn compatibility_tag(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    fn compile_cached(&self, name: &str, bytes: &[u8], path: &Path) -> wasmtime::Result<Component> {
        if path.exists() {
            // SAFETY: the file was written by `precompile_component` of an
            // engine with this compatibility tag, into the host's own state
            // directory; wasmtime also checks the header before use.
            match unsafe { Component::deserialize_file(&self.engine, path) } {
                Ok(component) => {
                    tracing::info!(component = name, path = %path.display(), "loaded compiled component from cache");
                    return Ok(component);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compiled cache file")
                }
            }
        }
        let started = std::time::Instant::now();
        let compiled = self.engine.precompile_component(bytes)?;
        tracing::info!(
            component = name,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "compiled component"
        );
        let tmp = path.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, &compiled).and_then(|()| std::fs::rename(&tmp, path)) {
            tracing::warn!(path = %path.display(), error = %e, "cannot cache compiled component");
        }
        // SAFETY: `compiled` was produced just now by this engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }
    }

    /// Compiles and validates a component: it must be a component, fit the
    /// world, and answer `describe()` within the host's limits with a valid
    /// topology. `name` is what errors call it (e.g. the file name).
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<Arc<LoadedComponent>, LoadError> {
        self.load_cached(name, bytes, None)
    }

    /// As [`Runtime::load`], keeping the compiled code at `compiled` (a file
    /// this host alone writes): when it is there and fits this engine, no
    /// compilation happens.
    pub fn load_cached(
        &self,
        name: &str,
        bytes: &[u8],
        compiled: Option<&Path>,
    ) -> Result<Arc<LoadedComponent>, LoadError> {
        let name = name.to_string();
        match bytes.get(0..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => return Err(LoadError::CoreModule { name }),
            Some([0, b'a', b's', b'm', ..]) => {}
            _ => return Err(LoadError::NotWasm { name }),
        }
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            name: name.clone(),
            reason: format!("{e:#}"),
        };
        let component = match compiled {
            None => Component::new(&self.engine, bytes).map_err(invalid)?,
            Some(path) => self.compile_cached(&name, bytes, path).map_err(invalid)?,
        };
        // The contract version it was built for, by the handler it exports.
        let built_for = contract_version(&self.engine, &component);
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            name: name.clone(),
            reason: match &built_for {
                Some(v) if !WIT_VERSIONS.contains(&v.as_str()) => format!(
                    "it was built for weir:streams@{v}; rebuild it with a weir-sdk for \
                     @{WIT_VERSION} ({e:#})"
                ),
                _ => format!("{e:#}"),
            },
        };
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let linked = match built_for.as_deref() {
            Some("0.2.0") => wasm::Linked::V0_2(
                bindings::v0_2::ProcessorPre::new(instance_pre).map_err(wrong_world)?,
            ),
            _ => wasm::Linked::V0_3(
                bindings::v0_3::ProcessorPre::new(instance_pre).map_err(wrong_world)?,
            ),
        };
        let contract = built_for.unwrap_or_else(|| WIT_VERSION.to_string());
        let placeholder = Arc::new(LoadedComponent {
            name: name.clone(),
            sha256: hex::encode(Sha256::digest(bytes)),
            factory: Arc::new(wasm::WasmFactory { linked }),
            contract: contract.clone(),
            topology: Arc::new(Topology {
                name: name.clone(),
                sources: Vec::new(),
                sinks: Vec::new(),
                stores: Vec::new(),
                repartitions: Vec::new(),
            }),
            limits: self.limits,
        });
        let topology = placeholder
            .describe()
            .map_err(|source| LoadError::Describe {
                name: name.clone(),
                source: Box::new(source),
            })?;
        topology.validate().map_err(|source| LoadError::Topology {
            name: name.clone(),
            source,
        })?;
        Ok(Arc::new(LoadedComponent {
            name: topology.name.clone(),
            sha256: placeholder.sha256.clone(),
            factory: placeholder.factory.clone(),
            contract,
            topology: Arc::new(topology),
            limits: self.limits,
        }))
    }
}

/// A compiled, validated component, ready to instantiate per task.
pub struct LoadedComponent {
    name: String,
    sha256: String,
    /// How each task's instance is made: compiled Wasm, or (bench and
    /// unit tests only) Rust code.
    factory: Arc<dyn ProcessorFactory>,
    /// The `weir:streams` version it was built against.
    contract: String,
    topology: Arc<Topology>,
    limits: WasmLimits,
}

impl std::fmt::Debug for LoadedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

impl LoadedComponent {
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// `name@sha256:<first 12 hex digits>`, how logs and errors name it.
    pub fn label(&self) -> String {
        format!("{}@sha256:{}", self.name, &self.sha256[..12])
    }

    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    /// The `weir:streams` contract version it was built against (`0.3.0`).
    pub fn contract(&self) -> &str {
        &self.contract
    }

    /// A processor written in Rust against the same task context, for
    /// measuring what the Wasm boundary costs (`weir bench`).
    pub fn native(topology: Topology, factory: NativeFactory) -> Arc<Self> {
        Arc::new(LoadedComponent {
            name: topology.name.clone(),
            sha256: format!("{:0<64}", "native"),
            factory: Arc::new(native::Native(factory)),
            contract: WIT_VERSION.to_string(),
            topology: Arc::new(topology),
            limits: WasmLimits {
                max_memory_bytes: usize::MAX,
                max_call: Duration::MAX,
                ..WasmLimits::default()
            },
        })
    }

    pub(crate) fn factory(&self) -> &dyn ProcessorFactory {
        self.factory.as_ref()
    }

    pub(crate) fn limits(&self) -> WasmLimits {
        self.limits
    }

    /// Calls `describe()` in a throwaway instance that has no stores.
    fn describe(self: &Arc<Self>) -> Result<Topology, GuestError> {
        let ctx = TaskContext::new(
            TaskId::for_partition(0),
            "",
            &self.label(),
            self.topology.clone(),
            Vec::new(),
            Arc::new(SystemClock),
        );
        let mut instance = ProcessorInstance::new(self, ctx)?;
        // describe() only builds a value: a slow one is a broken one.
        instance.limit_call_time(DESCRIBE_DEADLINE);
        instance.describe()
    }
}

/// The version of `weir:streams/handler` a component exports, if any.
fn contract_version(engine: &Engine, component: &Component) -> Option<String> {
    component
        .component_type()
        .exports(engine)
        .find_map(|(export, _)| export.strip_prefix("weir:streams/handler@"))
        .map(str::to_string)
}
