//! `weir bench`: what Weir costs, measured on the local broker in one run so
//! ratios hold on a noisy machine.
//!
//! - [`inprocess`]: each example through the whole host, as its Wasm
//!   component and as the same logic in native Rust on the same host code
//!   (the cost of the Wasm boundary as a ratio).
//! - [`versus`]: `weir run` against the same workloads written for Kafka
//!   Streams 4.4 (`bench/kafka-streams`), each a child process so CPU time
//!   and peak RSS are its own, alternating A/B per round; then restore speed
//!   of the word-count store after its state directory is wiped.
//! - [`boundary`]: nanoseconds per record of a call into a component, at
//!   batch sizes 1, 16 and 256, against the same call into native code.
//! - [`rebalance`] (`--rebalance`, on its own): a fourth instance joining
//!   three, on Weir and on Kafka Streams: how long the moved task pauses and
//!   the longest pause of a task that stays.
//! - [`failover`] (`--failover`, on its own): an instance SIGKILLed under a
//!   large store, without and with a standby, and on Kafka Streams with
//!   one: how long until its tasks run again elsewhere.
//! - [`redeploy`] (`--redeploy`, on its own): 14 new versions of word count
//!   deployed to a running instance with input flowing: the processing
//!   pause of each swap and the commit's share of it.
//! - [`restore`] (`--restore`, on its own): word count's store restored
//!   from a changelog loaded directly, against a bare read of it.
//! - `--boundary` runs [`boundary`] on its own, without a broker.
//!
//! Must not be used to judge correctness (the tests do that): it only
//! checks that every record was processed.

mod boundary;
mod failover;
mod inprocess;
mod rebalance;
mod redeploy;
mod restore;
mod versus;
mod workloads;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

pub use boundary::BoundaryFigure;
pub use failover::FailoverFigure;
pub use inprocess::{Measurement, Summary};
pub use rebalance::RebalanceFigure;
pub use redeploy::RedeployFigure;
pub use versus::{RestoreFigure, SystemRun, SystemSummary};

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
    /// `bench/kafka-streams` (built with `mvn package`): compare with it.
    pub kafka_streams: Option<PathBuf>,
    /// The `weir` binary the comparison runs as a child process.
    pub weir: PathBuf,
    /// Only this workload (`None`: every one).
    pub workload: Option<String>,
    /// `processing.guarantee` of the in-process runs.
    pub processing_guarantee: String,
}

/// Everything one `weir bench` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: String,
    pub records: usize,
    pub partitions: i32,
    pub rounds: usize,
    pub commit_interval_ms: u64,
    pub in_process: Vec<Summary>,
    pub in_process_runs: Vec<Measurement>,
    pub versus_kafka_streams: Vec<SystemSummary>,
    pub versus_runs: Vec<SystemRun>,
    pub restore: Vec<RestoreFigure>,
    pub wasm_boundary: Vec<BoundaryFigure>,
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Deletes the topics this process made (inputs, outputs, and the
/// applications' changelogs and repartitions): their names are
/// [`unique`]'s, with this process's id. Without it every run leaves
/// gigabytes on the broker, and repeated runs fill its disk.
pub fn delete_run_topics(bootstrap: &str) -> Result<usize, BenchError> {
    let mark = format!("-{}-", std::process::id());
    workloads::delete_topics_where(bootstrap, |name| {
        (name.starts_with("weir-bench") || name.starts_with("bench-")) && name.contains(&mark)
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// Cores, memory and CPU model of this machine, for a report's first line.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib >> 20);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem} GiB")
}

/// Loads the inputs once, then runs every measurement.
pub fn run(opts: &BenchOptions) -> Result<Report, BenchError> {
    let state = std::env::temp_dir().join(unique("weir-bench-state"));
    std::fs::create_dir_all(&state).map_err(err)?;
    let mut inputs = BTreeMap::new();
    for w in workloads::selected(opts) {
        let lines = (w.input)(opts.records);
        let topic = unique(&format!("weir-bench-{}", w.name));
        eprintln!("bench: loading {} records into {topic}", lines.len());
        workloads::load_input(&opts.bootstrap, opts.partitions, &topic, &lines, w.key)?;
        inputs.insert(w.name, (topic, (w.processed)(&lines)));
    }
    let (in_process_runs, in_process) = inprocess::run(opts, &inputs, &state)?;
    let (versus_runs, versus, restore) = match &opts.kafka_streams {
        Some(dir) => versus::run(opts, dir, &inputs, &state)?,
        None => (Vec::new(), Vec::new(), Vec::new()),
    };
    let wasm_boundary = boundary::run(&opts.components)?;
    let _ = std::fs::remove_dir_all(&state);
    Ok(Report {
        machine: machine(),
        records: opts.records,
        partitions: opts.partitions,
        rounds: opts.rounds,
        commit_interval_ms: opts.commit_interval_ms,
        in_process,
        in_process_runs,
        versus_kafka_streams: versus,
        versus_runs,
        restore,
        wasm_boundary,
    })
}

/// The rebalance scenario alone (`weir bench --rebalance`).
pub fn run_rebalance(opts: &BenchOptions) -> Result<Vec<RebalanceFigure>, BenchError> {
    rebalance::run(opts, opts.kafka_streams.as_deref())
}

/// The redeploy scenario alone (`weir bench --redeploy`).
pub fn run_redeploy(opts: &BenchOptions) -> Result<RedeployFigure, BenchError> {
    redeploy::run(opts)
}

/// The redeploy figure as a table.
pub fn redeploy_table(figure: &RedeployFigure) -> String {
    redeploy::table(figure)
}

/// The restore scenario alone (`weir bench --restore`).
pub fn run_restore(opts: &BenchOptions) -> Result<Vec<RestoreFigure>, BenchError> {
    restore::run(opts)
}

/// Restore figures, one line each.
pub fn restore_table(figures: &[RestoreFigure]) -> String {
    let mut out = String::new();
    for f in figures {
        let _ = writeln!(
            out,
            "restore of `{}` after wiping the state dir: {:<14} {:>10.0} records/s ({} records in {:.2} s)",
            f.store, f.system, f.records_per_second, f.records, f.seconds
        );
    }
    out
}

/// The failover scenario alone (`weir bench --failover`).
pub fn run_failover(opts: &BenchOptions) -> Result<Vec<FailoverFigure>, BenchError> {
    failover::run(opts, opts.kafka_streams.as_deref())
}

/// The failover figures as a table.
pub fn failover_table(figures: &[FailoverFigure]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "machine: {}
word count, 4 partitions, 3 instances, {} keys in the store, one SIGKILLed; session.timeout.ms {:.0} s:",
        machine(),
        figures.first().map_or(0, |f| f.store_keys),
        figures.first().map_or(0.0, |f| f.session_timeout_seconds),
    );
    let _ = writeln!(
        out,
        "{:<14} {:>8} {:>24} {:>30}",
        "system", "standbys", "kill to moved running", "rebalance to moved running"
    );
    for f in figures {
        let _ = writeln!(
            out,
            "{:<14} {:>8} {:>23.2}s {:>29.2}s",
            f.system,
            f.standby_replicas,
            f.kill_to_moved_running_seconds,
            f.rebalance_to_moved_running_seconds
        );
    }
    out
}

/// The rebalance figures as a table.
pub fn rebalance_table(figures: &[RebalanceFigure]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "machine: {}
word count, 4 partitions, 3 instances, then a 4th joins; input {} lines/s:",
        machine(),
        figures.first().map_or(0, |f| f.lines_per_second)
    );
    let _ = writeln!(
        out,
        "{:<14} {:>26} {:>20} {:>24}",
        "system", "join to moved task running", "moved task pause", "longest kept-task pause"
    );
    for f in figures {
        let _ = writeln!(
            out,
            "{:<14} {:>25.2}s {:>19.2}s {:>23.2}s",
            f.system,
            f.join_to_moved_task_running_seconds,
            f.moved_task_pause_seconds,
            f.kept_task_max_pause_seconds
        );
    }
    out
}

/// The human tables.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "machine: {}\ninput: {} records per workload, {} partitions, commit.interval.ms {}, {} round(s)\n",
        r.machine, r.records, r.partitions, r.commit_interval_ms, r.rounds
    );
    if !r.versus_kafka_streams.is_empty() {
        let _ = writeln!(
            out,
            "Weir (weir run) vs Kafka Streams 4.4, each in its own process:"
        );
        let _ = writeln!(
            out,
            "{:<11} {:<14} {:>12} {:>21} {:>13} {:>13} {:>9}",
            "workload", "system", "records/s", "range", "CPU s/M rec", "peak RSS MiB", "weir/ks"
        );
        for s in &r.versus_kafka_streams {
            let _ = writeln!(
                out,
                "{:<11} {:<14} {:>12.0} {:>10.0}..{:<10.0} {:>13.2} {:>13.0} {:>9}",
                s.workload,
                s.system,
                s.records_per_second_median,
                s.records_per_second_min,
                s.records_per_second_max,
                s.cpu_seconds_per_million,
                s.peak_rss_mib,
                s.weir_over_kafka_streams
                    .map_or(String::new(), |x| format!("{x:.2}")),
            );
        }
        out.push_str(&restore_table(&r.restore));
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "Wasm component vs the same logic in native Rust, same host code, in one process:"
    );
    let _ = writeln!(
        out,
        "{:<11} {:>16} {:>18} {:>12}",
        "workload", "wasm records/s", "native records/s", "wasm/native"
    );
    for s in &r.in_process {
        let _ = writeln!(
            out,
            "{:<11} {:>16.0} {:>18.0} {:>12.2}",
            s.workload, s.wasm_records_per_second, s.native_records_per_second, s.wasm_over_native
        );
    }
    out.push('\n');
    out.push_str(&boundary_table(&r.wasm_boundary));
    out
}

/// The Wasm boundary measurement alone (`weir bench --boundary`): no
/// broker needed.
pub fn run_boundary(components: &std::path::Path) -> Result<Vec<BoundaryFigure>, BenchError> {
    boundary::run(components)
}

/// The boundary figures as a table.
pub fn boundary_table(figures: &[BoundaryFigure]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Wasm boundary, filter-map logic, per record:");
    let _ = writeln!(
        out,
        "{:>6} {:>10} {:>12} {:>12}",
        "batch", "wasm ns", "native ns", "boundary ns"
    );
    for b in figures {
        let _ = writeln!(
            out,
            "{:>6} {:>10.0} {:>12.0} {:>12.0}",
            b.batch, b.wasm_ns_per_record, b.native_ns_per_record, b.boundary_ns_per_record
        );
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
}
