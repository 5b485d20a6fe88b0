//! Wasm against native Rust on the same host, in this process: records/s
//! through the whole host (Kafka in, tasks, RocksDB, changelogs, commits,
//! Kafka out) for each workload, as its component and as the same logic
//! compiled into the host, alternating runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::workloads::selected;
use super::{BenchError, BenchOptions, err, median, unique};
use weir::app::{App, load_component};
use weir::config::Config;
use weir::lifecycle::State;
use weir::runtime::{LoadedComponent, NativeFactory, Runtime, WasmLimits};

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub workload: &'static str,
    pub engine: &'static str,
    pub round: usize,
    pub records: usize,
    pub partitions: i32,
    pub seconds: f64,
    pub records_per_second: f64,
}

/// Median figures per workload and engine, and the Wasm/native ratio.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub workload: &'static str,
    pub records: usize,
    pub partitions: i32,
    pub wasm_records_per_second: f64,
    pub native_records_per_second: f64,
    /// Wasm throughput as a fraction of native (1.0 = no cost).
    pub wasm_over_native: f64,
}

fn run_once(
    opts: &BenchOptions,
    component: &Arc<LoadedComponent>,
    input: &str,
    expected: u64,
    state_dir: &Path,
) -> Result<f64, BenchError> {
    let id = unique("weir-bench");
    let mut raw: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in [
        ("application.id", id.clone()),
        ("bootstrap.servers", opts.bootstrap.clone()),
        ("state.dir", state_dir.display().to_string()),
        ("commit.interval.ms", opts.commit_interval_ms.to_string()),
        ("processing.guarantee", opts.processing_guarantee.clone()),
    ] {
        raw.insert(k.to_string(), v);
    }
    let topology = component.topology();
    raw.insert(format!("topics.{}", topology.sources[0]), input.to_string());
    for sink in &topology.sinks {
        raw.insert(
            format!("topics.{}", sink.topic),
            format!("{id}-{}", sink.topic),
        );
    }
    let config = Config::from_map(raw, Some("bench")).map_err(err)?;
    let app = App::start_with(config, component.clone()).map_err(err)?;
    let metrics = app.metrics().clone();
    let deadline = Instant::now() + Duration::from_secs(900);
    while app.lifecycle().state() != State::Running {
        if Instant::now() > deadline || app.lifecycle().shutdown_requested() {
            return Err(err(format!(
                "{} did not start: {:?}",
                component.label(),
                app.lifecycle().error()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    while metrics.records_processed.load(Ordering::Relaxed) < expected {
        if Instant::now() > deadline || app.lifecycle().shutdown_requested() {
            return Err(err(format!(
                "{}: processed {} of {expected} records: {:?}",
                component.label(),
                metrics.records_processed.load(Ordering::Relaxed),
                app.lifecycle().error()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let lifecycle = app.lifecycle().clone();
    // The final commit (changelogs, outputs, offsets) is part of the work.
    let state = app.close();
    let seconds = started.elapsed().as_secs_f64();
    if state != State::NotRunning {
        return Err(err(format!(
            "{} ended in {state}: {:?}",
            component.label(),
            lifecycle.error()
        )));
    }
    Ok(seconds)
}

/// Every workload, `rounds` times each engine, alternating; `inputs` are
/// the loaded input topics by workload.
pub fn run(
    opts: &BenchOptions,
    inputs: &BTreeMap<&'static str, (String, u64)>,
    state: &Path,
) -> Result<(Vec<Measurement>, Vec<Summary>), BenchError> {
    let runtime = Runtime::new(WasmLimits::default()).map_err(err)?;
    let mut measurements = Vec::new();
    let mut summaries = Vec::new();
    for w in selected(opts) {
        let wasm = load_component(&runtime, &opts.components.join(w.file)).map_err(err)?;
        let native_factory: NativeFactory = Arc::new(w.native);
        let native = LoadedComponent::native(wasm.topology().as_ref().clone(), native_factory);
        let (input, expected) = &inputs[w.name];
        for round in 0..opts.rounds {
            for (engine, component) in [("wasm", &wasm), ("native", &native)] {
                let seconds = run_once(opts, component, input, *expected, state)?;
                let m = Measurement {
                    workload: w.name,
                    engine,
                    round: round + 1,
                    records: opts.records,
                    partitions: opts.partitions,
                    seconds,
                    records_per_second: opts.records as f64 / seconds,
                };
                eprintln!(
                    "bench: {} {} round {}: {:.0} records/s ({:.2} s)",
                    m.workload, m.engine, m.round, m.records_per_second, m.seconds
                );
                measurements.push(m);
            }
        }
        let rate = |engine: &str| {
            median(
                measurements
                    .iter()
                    .filter(|m| m.workload == w.name && m.engine == engine)
                    .map(|m| m.records_per_second)
                    .collect(),
            )
        };
        let (wasm_rate, native_rate) = (rate("wasm"), rate("native"));
        summaries.push(Summary {
            workload: w.name,
            records: opts.records,
            partitions: opts.partitions,
            wasm_records_per_second: wasm_rate,
            native_records_per_second: native_rate,
            wasm_over_native: wasm_rate / native_rate,
        });
    }
    Ok((measurements, summaries))
}
