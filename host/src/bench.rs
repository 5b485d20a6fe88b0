//! `weir bench`: records per second through the whole host (Kafka in,
//! tasks, RocksDB, changelogs, commits, Kafka out) for the example
//! processors, each run twice per round: as its Wasm component and as the
//! same logic in native Rust ([`NativeProcessor`]) on the same host code, so
//! the cost of the Wasm boundary shows as a ratio. Rounds alternate
//! A/B/A/B so a noisy machine affects both sides alike.
//!
//! Must not be used to judge correctness (the tests do that); it only
//! checks that every record was processed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde::Serialize;

use crate::app::{App, load_component, new_runtime};
use crate::config::Config;
use crate::lifecycle::State;
use crate::runtime::bindings::{IncomingRecord, OutgoingRecord};
use crate::runtime::{LoadedComponent, NativeFactory, NativeProcessor, TaskContext};

#[derive(Debug, thiserror::Error)]
#[error("bench: {0}")]
pub struct BenchError(String);

fn err(e: impl std::fmt::Display) -> BenchError {
    BenchError(e.to_string())
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub bootstrap: String,
    /// Directory holding `word_count.wasm` and `filter_map.wasm`.
    pub components: PathBuf,
    pub records: usize,
    pub partitions: i32,
    pub rounds: usize,
    pub commit_interval_ms: u64,
}

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

struct Workload {
    name: &'static str,
    file: &'static str,
    /// Records the tasks process for `n` input records (word count also
    /// processes every word it re-keys through its repartition topic).
    processed: fn(&[String]) -> u64,
    input: fn(usize) -> Vec<String>,
    native: fn() -> Box<dyn NativeProcessor>,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "filter-map",
        file: "filter_map.wasm",
        processed: |lines| lines.len() as u64,
        input: numbers,
        native: || Box::new(NativeFilterMap),
    },
    Workload {
        name: "word-count",
        file: "word_count.wasm",
        processed: |lines| {
            lines.len() as u64
                + lines
                    .iter()
                    .map(|l| l.split_whitespace().count() as u64)
                    .sum::<u64>()
        },
        input: text_lines,
        native: || Box::new(NativeWordCount),
    },
];

fn numbers(n: usize) -> Vec<String> {
    (0..n).map(|i| (i * 7919 % 100_003).to_string()).collect()
}

fn text_lines(n: usize) -> Vec<String> {
    const WORDS: &[&str] = &[
        "kafka",
        "stream",
        "state",
        "store",
        "wasm",
        "weir",
        "river",
        "flow",
        "commit",
        "offset",
        "task",
        "topic",
        "partition",
        "rocksdb",
        "changelog",
        "restore",
        "the",
        "a",
        "of",
        "and",
        "record",
        "batch",
        "host",
        "guest",
    ];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            (0..8)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    WORDS[(x % WORDS.len() as u64) as usize]
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// `examples/filter-map` in native Rust.
struct NativeFilterMap;

impl NativeProcessor for NativeFilterMap {
    fn process(&mut self, ctx: &mut TaskContext, batch: &[IncomingRecord]) -> Result<(), String> {
        for r in batch {
            let Some(n) = r
                .value
                .as_deref()
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|t| t.trim().parse::<i64>().ok())
            else {
                continue;
            };
            if n % 3 != 0 {
                continue;
            }
            let out = OutgoingRecord {
                key: r.key.clone(),
                value: Some((n * 2).to_string().into_bytes()),
                headers: Vec::new(),
                timestamp: Some(r.timestamp),
            };
            ctx.forward("out", out)?;
        }
        Ok(())
    }
}

/// `examples/word-count` in native Rust (same store encoding: u64 big-endian).
struct NativeWordCount;

impl NativeProcessor for NativeWordCount {
    fn process(&mut self, ctx: &mut TaskContext, batch: &[IncomingRecord]) -> Result<(), String> {
        for r in batch {
            if r.source == "words" {
                let Some(word) = r.key.clone() else { continue };
                let store = &mut ctx.stores[0];
                let old = store.get(&word).map_err(|e| e.to_string())?;
                let count = old
                    .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                    .map_or(0, u64::from_be_bytes)
                    + 1;
                store.put(word.clone(), count.to_be_bytes().to_vec());
                let out = OutgoingRecord {
                    key: Some(word),
                    value: Some(count.to_string().into_bytes()),
                    headers: Vec::new(),
                    timestamp: Some(r.timestamp),
                };
                ctx.forward("counts", out)?;
                continue;
            }
            let Some(line) = r.value.as_deref().and_then(|v| std::str::from_utf8(v).ok()) else {
                continue;
            };
            for word in line.split_whitespace().map(str::to_lowercase) {
                let out = OutgoingRecord {
                    key: Some(word.into_bytes()),
                    value: None,
                    headers: Vec::new(),
                    timestamp: Some(r.timestamp),
                };
                ctx.forward("words", out)?;
            }
        }
        Ok(())
    }
}

fn load_input(opts: &BenchOptions, topic: &str, lines: &[String]) -> Result<(), BenchError> {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &opts.bootstrap);
    let admin: AdminClient<DefaultClientContext> = client.create().map_err(err)?;
    let new = NewTopic::new(topic, opts.partitions, TopicReplication::Fixed(1));
    futures_executor::block_on(admin.create_topics([&new], &AdminOptions::new()))
        .map_err(err)?
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|(t, e)| err(format!("creating {t}: {e}")))?;
    let producer: BaseProducer = client
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(err)?;
    for (i, line) in lines.iter().enumerate() {
        let key = format!("k{i}");
        let mut record = BaseRecord::to(topic).key(&key).payload(line);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    producer.poll(Duration::from_millis(20));
                    record = back;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).map_err(err)
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

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// Runs every workload, `rounds` times each engine, alternating.
pub fn run(opts: &BenchOptions) -> Result<(Vec<Measurement>, Vec<Summary>), BenchError> {
    let config = Config::from_map(
        [
            ("application.id", "bench"),
            ("bootstrap.servers", opts.bootstrap.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        Some("bench"),
    )
    .map_err(err)?;
    let runtime = new_runtime(&config).map_err(err)?;
    let state = tempfile_dir()?;
    let mut measurements = Vec::new();
    let mut summaries = Vec::new();
    for w in WORKLOADS {
        let wasm = load_component(&runtime, &opts.components.join(w.file)).map_err(err)?;
        let native_factory: NativeFactory = Arc::new(w.native);
        let native = LoadedComponent::native(wasm.topology().as_ref().clone(), native_factory);
        let lines = (w.input)(opts.records);
        let input = unique(&format!("weir-bench-{}", w.name));
        load_input(opts, &input, &lines)?;
        let expected = (w.processed)(&lines);
        for round in 0..opts.rounds {
            for (engine, component) in [("wasm", &wasm), ("native", &native)] {
                let seconds = run_once(opts, component, &input, expected, &state)?;
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
    let _ = std::fs::remove_dir_all(&state);
    Ok((measurements, summaries))
}

fn tempfile_dir() -> Result<PathBuf, BenchError> {
    let dir = std::env::temp_dir().join(unique("weir-bench-state"));
    std::fs::create_dir_all(&dir).map_err(err)?;
    Ok(dir)
}

/// The human table.
pub fn table(summaries: &[Summary]) -> String {
    let mut out = format!(
        "{:<12} {:>9} {:>10} {:>16} {:>18} {:>12}\n",
        "workload", "records", "partitions", "wasm records/s", "native records/s", "wasm/native"
    );
    for s in summaries {
        out.push_str(&format!(
            "{:<12} {:>9} {:>10} {:>16.0} {:>18.0} {:>12.2}\n",
            s.workload,
            s.records,
            s.partitions,
            s.wasm_records_per_second,
            s.native_records_per_second,
            s.wasm_over_native
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn workload_inputs_are_what_the_expectations_count() {
        let lines = text_lines(10);
        assert!(lines.iter().all(|l| l.split_whitespace().count() == 8));
        assert_eq!((WORKLOADS[1].processed)(&lines), 10 + 80);
        assert_eq!((WORKLOADS[0].processed)(&numbers(5)), 5);
    }
}
