//! A running Weir application (Kafka Streams' `KafkaStreams`): loads the
//! component, prepares topics and the state directory, starts the stream
//! threads and the state-directory cleaner, and runs the ordered shutdown.
//!
//! Startup failures are [`StartError`]s naming what is wrong; failures while
//! running move the [`Lifecycle`] to ERROR.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::lifecycle::{Lifecycle, State};
use crate::metrics::Metrics;
use crate::runtime::{LoadError, LoadedComponent, Runtime, SystemClock, WasmLimits};
use crate::store::{RocksResources, StateDirectory, StoreError};
use crate::task::{TaskError, TaskSetup};
use crate::thread::StreamThread;
use crate::topics::{TopicError, TopicPlan};

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
}

pub struct App {
    config: Arc<Config>,
    lifecycle: Arc<Lifecycle>,
    metrics: Arc<Metrics>,
    rocks: Arc<RocksResources>,
    component: Arc<LoadedComponent>,
    plan: Arc<TopicPlan>,
    threads: Vec<JoinHandle<()>>,
}

/// Loads a component file with the runtime's limits.
pub fn load_component(runtime: &Runtime, path: &Path) -> Result<Arc<LoadedComponent>, StartError> {
    let bytes = std::fs::read(path).map_err(|source| StartError::ReadComponent {
        path: path.display().to_string(),
        source,
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(runtime.load(&name, &bytes)?)
}

pub fn new_runtime(config: &Config) -> Result<Runtime, StartError> {
    Runtime::new(WasmLimits {
        max_memory_bytes: config.wasm_max_memory_bytes,
        max_call: config.wasm_max_call,
    })
    .map_err(|e| StartError::Runtime(format!("{e:#}")))
}

impl App {
    /// Starts the application with the component at `component_path`.
    pub fn start(config: Config, component_path: &Path) -> Result<App, StartError> {
        let runtime = new_runtime(&config)?;
        let component = load_component(&runtime, component_path)?;
        tracing::info!(component = %component.label(), "component loaded");
        App::start_with(config, component)
    }

    /// Starts the application with an already loaded component.
    pub fn start_with(config: Config, component: Arc<LoadedComponent>) -> Result<App, StartError> {
        crate::limits::check_open_files();
        let plan = Arc::new(crate::topics::prepare(&config, component.topology())?);
        let dirs = Arc::new(StateDirectory::open(
            &config.state_dir,
            &config.application_id,
        )?);
        let rocks = Arc::new(RocksResources::new(
            config.rocksdb_block_cache_bytes,
            config.rocksdb_write_buffer_bytes,
        ));
        tracing::info!(
            "{}",
            crate::limits::memory_formula(&config, component.topology(), plan.partitions)
        );
        let config = Arc::new(config);
        let hung = (config.commit_interval * 2).max(Duration::from_secs(120));
        let lifecycle = Arc::new(Lifecycle::new(config.num_stream_threads, hung));
        let metrics = Arc::new(Metrics::default());
        let setup = TaskSetup {
            application_id: config.application_id.clone(),
            component: component.clone(),
            plan: plan.clone(),
            dirs: dirs.clone(),
            rocks: rocks.clone(),
            clock: Arc::new(SystemClock),
            metrics: metrics.clone(),
        };
        let mut threads = Vec::new();
        let mut stream_threads = Vec::new();
        for index in 0..config.num_stream_threads {
            let thread = StreamThread::new(index, config.clone(), setup.clone(), lifecycle.clone())
                .map_err(|source| StartError::Thread {
                    thread: index + 1,
                    source,
                })?;
            stream_threads.push(thread);
        }
        for (index, thread) in stream_threads.into_iter().enumerate() {
            let lifecycle = lifecycle.clone();
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
        spawn_cleaner(dirs, config.state_cleanup_delay, lifecycle.clone());
        Ok(App {
            config,
            lifecycle,
            metrics,
            rocks,
            component,
            plan,
            threads,
        })
    }

    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.lifecycle
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn component(&self) -> &Arc<LoadedComponent> {
        &self.component
    }

    pub fn plan(&self) -> &TopicPlan {
        &self.plan
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

    /// Blocks until shutdown is requested (signal) or a thread fails.
    pub fn wait_for_shutdown(&self, signal: impl Fn() -> bool) {
        while !self.lifecycle.shutdown_requested() {
            if signal() {
                tracing::info!("shutdown signal received");
                self.lifecycle.request_shutdown();
                break;
            }
            self.lifecycle.wait(Duration::from_millis(100));
        }
    }

    /// The ordered shutdown: threads finish their in-flight batch, commit,
    /// flush and close stores, close consumers; waits up to
    /// `shutdown.timeout.ms`. Returns the final state.
    pub fn close(self) -> State {
        self.lifecycle.request_shutdown();
        let deadline = Instant::now() + self.config.shutdown_timeout;
        for handle in self.threads {
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                self.lifecycle.fail(format!(
                    "shutdown did not finish within shutdown.timeout.ms ({} ms)",
                    self.config.shutdown_timeout.as_millis()
                ));
            }
        }
        self.lifecycle.finish()
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
