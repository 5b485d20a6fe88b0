//! `weir-bench` (also run as `weir bench`): benchmarks on a broker. The
//! examples through the host as Wasm and as native Rust, the Wasm boundary
//! per record at several batch sizes, and optionally `weir run` against
//! Kafka Streams (throughput, CPU, peak RSS, restore speed).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

/// The allocator of the `weir` binary, so in-process runs measure what
/// `weir run` does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Benchmarks on a broker: the examples through the host as Wasm and as
/// native Rust, the Wasm boundary per record at several batch sizes, and
/// optionally `weir run` against Kafka Streams (throughput, CPU, peak RSS,
/// restore speed).
#[derive(Parser)]
#[command(name = "weir bench", version)]
struct Cli {
    /// Kafka to run against (e.g. from `scripts/kafka start`).
    #[arg(long, env = "WEIR_BOOTSTRAP", required_unless_present = "boundary")]
    bootstrap: Option<String>,
    /// Directory with word_count.wasm and filter_map.wasm
    /// (`scripts/build-guests` prints it).
    #[arg(long)]
    components: PathBuf,
    /// Input records per workload (lines for word count).
    #[arg(long, default_value_t = 2_000_000)]
    records: usize,
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Runs per engine, alternating wasm/native.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value_t = 1000)]
    commit_interval_ms: u64,
    /// Also compare with the Kafka Streams application in this
    /// directory (`bench/kafka-streams`, built with `mvn package`).
    #[arg(long, value_name = "DIR")]
    vs_kafka_streams: Option<PathBuf>,
    /// Only this workload: filter-map, word-count or windowed-count.
    #[arg(long, value_parser = ["filter-map", "word-count", "windowed-count"])]
    workload: Option<String>,
    /// `processing.guarantee` of the in-process runs (with
    /// exactly_once_v2, set --commit-interval-ms 100 as Kafka Streams'
    /// default under it).
    #[arg(long, default_value = "at_least_once", value_parser = ["at_least_once", "exactly_once_v2"])]
    processing_guarantee: String,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Only the rebalance scenario: three instances of word count, then
    /// a fourth joins (and the same on Kafka Streams with
    /// --vs-kafka-streams).
    #[arg(long)]
    rebalance: bool,
    /// Only the failover scenario: three instances of word count with a
    /// large store, one SIGKILLed, without and with a standby replica
    /// (and Kafka Streams with one, with --vs-kafka-streams).
    #[arg(long, conflicts_with = "rebalance")]
    failover: bool,
    /// Only the Wasm boundary per record (in process, no broker).
    #[arg(long, conflicts_with_all = ["rebalance", "failover"])]
    boundary: bool,
    /// Only the redeploy scenario: one instance of word count, 14 new
    /// versions deployed with input flowing; the processing pause of each.
    #[arg(long, conflicts_with_all = ["rebalance", "failover", "boundary"])]
    redeploy: bool,
    /// Only the restore scenario: word count's store restored from a
    /// changelog of --records records, against a bare read of it, --rounds
    /// times.
    #[arg(long, conflicts_with_all = ["rebalance", "failover", "boundary", "redeploy"])]
    restore: bool,
    /// The `weir` binary the runs against Kafka Streams start (default:
    /// the one that started this, or `weir` next to this binary).
    #[arg(long, env = "WEIR_BIN")]
    weir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A benchmark's own lines are what matter; the host's info logs are noise.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let weir = match cli.weir {
        Some(path) => path,
        None => std::env::current_exe()
            .context("locating weir-bench")?
            .with_file_name("weir"),
    };
    let Cli {
        bootstrap,
        components,
        records,
        partitions,
        rounds,
        commit_interval_ms,
        vs_kafka_streams,
        json,
        rebalance,
        failover,
        boundary,
        redeploy,
        restore,
        workload,
        processing_guarantee,
        ..
    } = cli;
    if boundary {
        return report(
            json,
            weir_bench::run_boundary(&components)?.as_slice(),
            weir_bench::boundary_table,
        );
    }
    let opts = weir_bench::BenchOptions {
        bootstrap: bootstrap.unwrap_or_default(),
        components,
        records,
        partitions,
        rounds: rounds.max(1),
        commit_interval_ms,
        kafka_streams: vs_kafka_streams,
        weir,
        workload,
        processing_guarantee,
    };
    let measured = measure(json, &opts, [rebalance, redeploy, restore, failover]);
    match weir_bench::delete_run_topics(&opts.bootstrap) {
        Ok(n) => eprintln!("bench: deleted the {n} topics of this run"),
        Err(e) => eprintln!("bench: deleting the topics of this run failed: {e}"),
    }
    measured
}

/// The one scenario the flags pick (rebalance, redeploy, restore,
/// failover), or else every workload.
fn measure(
    json: bool,
    opts: &weir_bench::BenchOptions,
    [rebalance, redeploy, restore, failover]: [bool; 4],
) -> anyhow::Result<ExitCode> {
    if rebalance {
        return report(
            json,
            weir_bench::run_rebalance(opts)?.as_slice(),
            weir_bench::rebalance_table,
        );
    }
    if redeploy {
        return report(
            json,
            &weir_bench::run_redeploy(opts)?,
            weir_bench::redeploy_table,
        );
    }
    if restore {
        let figures = weir_bench::run_restore(opts)?;
        return report(json, figures.as_slice(), |f| {
            format!(
                "machine: {}\n{}",
                weir_bench::machine(),
                weir_bench::restore_table(f)
            )
        });
    }
    if failover {
        return report(
            json,
            weir_bench::run_failover(opts)?.as_slice(),
            weir_bench::failover_table,
        );
    }
    let report = weir_bench::run(opts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", weir_bench::table(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints `figures` as JSON (stdout carries the JSON only) or as `table`.
fn report<T: serde::Serialize + ?Sized>(
    json: bool,
    figures: &T,
    table: fn(&T) -> String,
) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(figures)?);
    } else {
        print!("{}", table(figures));
    }
    Ok(ExitCode::SUCCESS)
}
