//! Nanoseconds per record of handing records to the filter-map processor in
//! batches of 1, 16 and 256: through the component (lifting the batch into
//! guest memory, the call, the guest's `forward` calls back) and through the
//! same logic compiled into the host. The difference is the boundary.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::workloads::WORKLOADS;
use super::{BenchError, err};
use weir::app::load_component;
use weir::runtime::bindings::{IncomingRecord, TaskInfo};
use weir::runtime::{
    LoadedComponent, NativeFactory, ProcessorInstance, Runtime, SystemClock, TaskContext,
    WasmLimits,
};
use weir::topology::TaskId;

const RECORDS: usize = 200_000;

#[derive(Debug, Clone, Serialize)]
pub struct BoundaryFigure {
    pub batch: usize,
    pub wasm_ns_per_record: f64,
    pub native_ns_per_record: f64,
    pub boundary_ns_per_record: f64,
}

fn ns_per_record(
    component: &Arc<LoadedComponent>,
    records: &[IncomingRecord],
    batch: usize,
) -> Result<f64, BenchError> {
    let ctx = TaskContext::new(
        TaskId::for_partition(0),
        "bench",
        &component.label(),
        component.topology().clone(),
        Vec::new(),
        Arc::new(SystemClock),
    );
    let mut instance = ProcessorInstance::new(component, ctx).map_err(err)?;
    let info = TaskInfo {
        application_id: "bench".into(),
        task_id: "0_0".into(),
        partition: 0,
        topology: component.topology().name.clone(),
    };
    instance.init(&info).map_err(err)?;
    // Warm up (first calls fault in code and memory).
    for chunk in records.chunks(batch).take(100) {
        instance.process(chunk).map_err(err)?;
        instance.task_mut().outputs.clear();
    }
    let started = Instant::now();
    for chunk in records.chunks(batch) {
        instance.process(chunk).map_err(err)?;
        instance.task_mut().outputs.clear();
    }
    Ok(started.elapsed().as_nanos() as f64 / records.len() as f64)
}

pub fn run(components: &Path) -> Result<Vec<BoundaryFigure>, BenchError> {
    let runtime = Runtime::new(WasmLimits::default()).map_err(err)?;
    let w = &WORKLOADS[0];
    let wasm = load_component(&runtime, &components.join(w.file)).map_err(err)?;
    let factory: NativeFactory = Arc::new(w.native);
    let native = LoadedComponent::native(wasm.topology().as_ref().clone(), factory);
    let records: Vec<IncomingRecord> = (w.input)(RECORDS)
        .into_iter()
        .enumerate()
        .map(|(i, value)| IncomingRecord {
            source: "numbers".into(),
            key: Some(format!("k{i}").into_bytes()),
            value: Some(value.into_bytes()),
            headers: Vec::new(),
            timestamp: i as i64,
            topic: "numbers".into(),
            partition: 0,
            offset: i as i64,
        })
        .collect();
    let mut figures = Vec::new();
    for batch in [1, 16, 256] {
        let wasm_ns = ns_per_record(&wasm, &records, batch)?;
        let native_ns = ns_per_record(&native, &records, batch)?;
        eprintln!(
            "bench: boundary batch {batch}: wasm {wasm_ns:.0} ns/record, native {native_ns:.0} ns/record"
        );
        figures.push(BoundaryFigure {
            batch,
            wasm_ns_per_record: wasm_ns,
            native_ns_per_record: native_ns,
            boundary_ns_per_record: wasm_ns - native_ns,
        });
    }
    Ok(figures)
}
