//! A running topology (Kafka Streams' `KafkaStreams`): the stream threads
//! of one [`Release`] (a version of a component with its topic plan, see
//! [`crate::release`]), the swap of every task to a new release at a commit
//! boundary, and the ordered stop. The process-level parts every run shares (state directory, RocksDB
//! budget, metrics, lifecycle, task registry) are the [`HostContext`].
//!
//! Startup failures are [`StartError`]s naming what is wrong; failures while
//! running move the [`Lifecycle`] to ERROR.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::group::{StreamsGroup, StreamsGroupSetup};
use crate::lifecycle::{Lifecycle, State};
use crate::metrics::Metrics;
pub use crate::release::Release;
use crate::release::Target;
use crate::runtime::{
    LoadError, LoadedComponent, Runtime, SystemClock, WasmLimits, read_component_file,
};
use crate::store::{RocksResources, StateDirectory, StoreError};
use crate::task::{DiskStores, ProcessingErrors, TaskError, TaskRegistry, TaskSetup};
use crate::thread::StreamThread;
use crate::topics::TopicError;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read component {path}: {source}")]
    ReadComponent {
        path: String,
        source: std::io::Error,
    },
    #[error("component rejected: {0}")]
    Component(#[from] LoadError),
    #[error("cannot start the WebAssembly runtime: {0}")]
    Runtime(String),
    #[error(transparent)]
    Topics(#[from] TopicError),
    #[error(transparent)]
    StateDirectory(#[from] StoreError),
    #[error("cannot start stream thread {thread}: {source}")]
    Thread { thread: usize, source: TaskError },
    #[error("cannot join the group: {0}")]
    Group(#[from] crate::member::MembershipError),
}

/// Loads a component file with the runtime's limits.
pub fn load_component(runtime: &Runtime, path: &Path) -> Result<Arc<LoadedComponent>, StartError> {
    let (name, bytes) = read_component_file(path).map_err(|source| StartError::ReadComponent {
        path: path.display().to_string(),
        source,
    })?;
    Ok(runtime.load(&name, &bytes)?)
}

pub fn new_runtime(config: &Config) -> Result<Runtime, StartError> {
    Runtime::new(WasmLimits {
        max_memory_bytes: config.wasm_max_memory_bytes,
        max_call: config.wasm_max_call,
        max_call_bytes: config.wasm_max_call_bytes,
        max_handles: config.wasm_max_handles,
        max_schedules: config.wasm_max_schedules,
        max_record_bytes: config
            .kafka
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(crate::runtime::DEFAULT_MAX_RECORD_BYTES),
    })
    .map_err(|e| StartError::Runtime(format!("{e:#}")))
}

/// What every topology run of this process shares.
pub struct HostContext {
    pub config: Arc<Config>,
    pub dirs: Arc<StateDirectory>,
    pub rocks: Arc<RocksResources>,
    pub metrics: Arc<Metrics>,
    pub lifecycle: Arc<Lifecycle>,
    pub tasks: Arc<TaskRegistry>,
    /// The stores interactive queries can read here, and the host map.
    pub queries: Arc<crate::query::QueryableStores>,
}

impl HostContext {
    /// Checks limits, locks the state directory, sizes RocksDB's shared
    /// budget and starts the state-directory cleaner.
    pub fn new(config: Config) -> Result<Arc<Self>, StartError> {
        crate::limits::check_open_files();
        let dirs = Arc::new(StateDirectory::open(
            &config.state_dir,
            &config.application_id,
        )?);
        let rocks = Arc::new(RocksResources::new(
            config.rocksdb_block_cache_bytes,
            config.rocksdb_write_buffer_bytes,
        ));
        let hung = (config.commit_interval * 2).max(Duration::from_secs(120));
        let lifecycle = Arc::new(Lifecycle::new(config.num_stream_threads, hung));
        spawn_cleaner(dirs.clone(), config.state_cleanup_delay, lifecycle.clone());
        let queries = Arc::new(crate::query::QueryableStores::new(
            config.application_server.clone(),
        ));
        Ok(Arc::new(HostContext {
            config: Arc::new(config),
            dirs,
            rocks,
            metrics: Arc::new(Metrics::default()),
            lifecycle,
            tasks: Arc::new(TaskRegistry::default()),
            queries,
        }))
    }

    /// Prometheus text for `/metrics`.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(&[
            (
                "weir_state",
                "lifecycle state (0 CREATED .. 6 ERROR)",
                f64::from(self.lifecycle.state().code()),
            ),
            (
                "weir_rocksdb_cache_usage_bytes",
                "shared RocksDB block cache use (incl. memtables)",
                self.rocks.cache_usage() as f64,
            ),
            (
                "weir_rocksdb_memtable_usage_bytes",
                "RocksDB memtables across all stores",
                self.rocks.write_buffer_usage() as f64,
            ),
        ])
    }
}

/// The stream threads running one topology.
pub struct App {
    ctx: Arc<HostContext>,
    target: Arc<Target>,
    group: Arc<StreamsGroup>,
    threads: Vec<JoinHandle<()>>,
}

impl App {
    /// Starts the stream threads on `release`.
    pub fn start(ctx: &Arc<HostContext>, release: Arc<Release>) -> Result<App, StartError> {
        let config = &ctx.config;
        tracing::info!(
            "{}",
            crate::limits::memory_formula(
                config,
                release.component.topology(),
                release.plan.partitions
            )
        );
        let target = Arc::new(Target::new(release.clone(), config.num_stream_threads));
        let setup = TaskSetup {
            application_id: config.application_id.clone(),
            version: release.version,
            component: release.component.clone(),
            plan: release.plan.clone(),
            disk: Some(DiskStores {
                dirs: ctx.dirs.clone(),
                rocks: ctx.rocks.clone(),
            }),
            clock: Arc::new(SystemClock),
            metrics: ctx.metrics.clone(),
            registry: ctx.tasks.clone(),
            queries: ctx.queries.clone(),
            errors: ProcessingErrors {
                skip_failing_records: config.continue_on_processing_error,
                dead_letter_queue: config.dead_letter_queue.clone(),
            },
            max_task_idle: config.max_task_idle,
            fetch_reports_ends: true,
            record_cache: Default::default(),
        };
        let group = StreamsGroup::start(StreamsGroupSetup {
            config: config.clone(),
            topology: (**release.component.topology()).clone(),
            plan: release.plan.clone(),
            dirs: Some(ctx.dirs.clone()),
            lifecycle: ctx.lifecycle.clone(),
            metrics: ctx.metrics.clone(),
            queries: ctx.queries.clone(),
        })?;
        let mut stream_threads = Vec::new();
        for index in 0..config.num_stream_threads {
            let thread = StreamThread::new(
                index,
                config.clone(),
                setup.clone(),
                ctx.lifecycle.clone(),
                target.clone(),
                group.clone(),
            )
            .map_err(|source| StartError::Thread {
                thread: index + 1,
                source,
            })?;
            stream_threads.push(thread);
        }
        let mut threads = Vec::new();
        for (index, thread) in stream_threads.into_iter().enumerate() {
            let lifecycle = ctx.lifecycle.clone();
            let handle = std::thread::Builder::new()
                .name(format!("weir-stream-{}", index + 1))
                .spawn(move || {
                    if let Err(e) = thread.run() {
                        lifecycle.fail(format!("stream thread {}: {e}", index + 1));
                    }
                })
                .expect("spawning a stream thread");
            threads.push(handle);
        }
        Ok(App {
            ctx: ctx.clone(),
            target,
            group,
            threads,
        })
    }

    /// Starts `component` as version 0 on a context of its own: for the
    /// benchmark and embedders that do not use the deployment log.
    pub fn start_with(config: Config, component: Arc<LoadedComponent>) -> Result<App, StartError> {
        let ctx = HostContext::new(config)?;
        let release = Release::prepare(&ctx.config, 0, component)?;
        App::start(&ctx, release)
    }

    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.ctx.lifecycle
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.ctx.metrics
    }

    /// Switches every task to `release` at its thread's next commit
    /// boundary and waits until all threads have (or one failed). Returns
    /// false if the swap did not complete within `timeout`.
    pub fn swap(&self, release: Arc<Release>, timeout: Duration) -> bool {
        self.group
            .set_plan(release.component.topology(), release.plan.clone());
        let generation = self.target.set(release);
        let deadline = Instant::now() + timeout;
        let lifecycle = &self.ctx.lifecycle;
        self.target
            .wait_applied(generation, deadline, || lifecycle.shutdown_requested())
    }

    /// Ordered stop of this topology's threads (finish the batch, commit,
    /// close tasks and consumers), within `shutdown.timeout.ms`. Returns
    /// false (and fails the lifecycle) if a thread did not stop in time.
    pub fn stop(self) -> bool {
        self.target.request_stop();
        let deadline = Instant::now() + self.ctx.config.shutdown_timeout;
        let mut clean = true;
        for handle in self.threads {
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                clean = false;
                self.ctx.lifecycle.fail(format!(
                    "shutdown did not finish within shutdown.timeout.ms ({} ms)",
                    self.ctx.config.shutdown_timeout.as_millis()
                ));
            }
        }
        // Last: a static member leaves by session timeout, so a restart
        // within it gets the same tasks back without a rebalance.
        self.group.close();
        clean
    }

    /// The ordered shutdown of the whole process: stop, then NOT_RUNNING
    /// (or ERROR). Returns the final state.
    pub fn close(self) -> State {
        let lifecycle = self.ctx.lifecycle.clone();
        lifecycle.request_shutdown();
        self.stop();
        lifecycle.finish()
    }
}

/// Deletes task directories no task here owns, older than the delay.
fn spawn_cleaner(dirs: Arc<StateDirectory>, delay: Duration, lifecycle: Arc<Lifecycle>) {
    let period = delay.clamp(Duration::from_secs(1), Duration::from_secs(60));
    let _ = std::thread::Builder::new()
        .name("weir-state-cleaner".into())
        .spawn(move || {
            let mut last = Instant::now();
            while !lifecycle.shutdown_requested() {
                lifecycle.wait(Duration::from_millis(500));
                if last.elapsed() < period {
                    continue;
                }
                last = Instant::now();
                match dirs.clean_stale(delay) {
                    Ok(removed) => {
                        for path in removed {
                            tracing::info!(path = %path.display(), "deleted stale task directory");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "state directory cleanup failed"),
                }
            }
        });
}
