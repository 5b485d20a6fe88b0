//! `weir bench` in miniature, so the benchmark cannot rot: every part of it
//! (in-process Wasm vs native, `weir run` vs Kafka Streams with CPU, RSS and
//! restore, the Wasm boundary per batch size) runs against the real broker
//! and reports figures. The `weir` binary it runs against Kafka Streams is
//! the one `cargo test` at the workspace root builds beside `weir-bench`.
#![allow(dead_code)]

#[path = "../../host/tests/support/guests.rs"]
mod guests;
#[path = "../../host/tests/support/kafka.rs"]
mod kafka;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use kafka::bootstrap;

/// `weir-bench`, and the `weir` that `cargo test` at the root builds
/// beside it.
fn binaries() -> (PathBuf, PathBuf) {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_weir-bench"));
    let weir = bench.with_file_name("weir");
    assert!(
        weir.exists(),
        "{} is not built: cargo build --release -p weir",
        weir.display()
    );
    (bench, weir)
}

/// Runs `weir-bench` with `args` on the test broker and the built guests
/// (against the `weir` beside it) and returns what it printed as JSON:
/// stdout carries the JSON only.
fn bench_json(args: &[&str]) -> serde_json::Value {
    let components = guests::component("word-count")
        .parent()
        .unwrap()
        .to_path_buf();
    let (bench, weir) = binaries();
    let out = Command::new(&bench)
        .args(["--weir", weir.to_str().unwrap(), "--bootstrap", bootstrap()])
        .args(["--components", components.to_str().unwrap()])
        .args(args)
        .arg("--json")
        .stdin(Stdio::null())
        .output()
        .expect("running weir-bench");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{log}");
    assert_run_topics_deleted(&log);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{log}"))
}

/// A run leaves none of its topics behind: the inputs it loaded are gone
/// from the broker once it has ended.
fn assert_run_topics_deleted(log: &str) {
    let loaded: Vec<&str> = (log.lines())
        .filter_map(|l| l.strip_prefix("bench: loading "))
        .filter_map(|l| l.split(" into ").nth(1))
        .collect();
    assert!(!loaded.is_empty(), "no input loaded:\n{log}");
    assert!(log.contains("bench: deleted the "), "{log}");
    // The broker's metadata follows a deletion within moments.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while loaded.iter().any(|t| kafka::topic_exists(t)) {
        assert!(
            std::time::Instant::now() < deadline,
            "topics of the run left behind: {loaded:?}\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn bench_reports_every_figure() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let ks = repo.join("bench/kafka-streams");
    let built = Command::new("mvn")
        .args(["-q", "-B", "-Dstyle.color=never", "package"])
        .current_dir(&ks)
        .status()
        .expect("running mvn");
    assert!(built.success(), "building bench/kafka-streams failed");

    let out = bench_json(&[
        "--records",
        "2000",
        "--rounds",
        "1",
        "--commit-interval-ms",
        "200",
        "--vs-kafka-streams",
        ks.to_str().unwrap(),
    ]);

    let in_process = out["in_process"].as_array().unwrap();
    let workloads: Vec<&str> = in_process
        .iter()
        .map(|s| s["workload"].as_str().unwrap())
        .collect();
    assert_eq!(workloads, ["filter-map", "word-count", "windowed-count"]);
    for s in in_process {
        assert_eq!(s["records"], 2000);
        assert!(s["wasm_records_per_second"].as_f64().unwrap() > 0.0, "{s}");
        assert!(
            s["native_records_per_second"].as_f64().unwrap() > 0.0,
            "{s}"
        );
    }

    let versus = out["versus_kafka_streams"].as_array().unwrap();
    assert_eq!(versus.len(), 6, "{out}");
    for s in versus {
        assert!(
            s["records_per_second_median"].as_f64().unwrap() > 0.0,
            "{s}"
        );
        assert!(s["cpu_seconds_per_million"].as_f64().unwrap() > 0.0, "{s}");
        assert!(s["peak_rss_mib"].as_f64().unwrap() > 10.0, "{s}");
    }
    assert!(
        versus
            .iter()
            .any(|s| s["weir_over_kafka_streams"].as_f64().is_some())
    );

    let restore = out["restore"].as_array().unwrap();
    let systems: Vec<&str> = restore
        .iter()
        .map(|r| r["system"].as_str().unwrap())
        .collect();
    assert_eq!(systems, ["weir", "fetch only", "kafka-streams"]);
    for r in restore {
        assert!(r["records"].as_u64().unwrap() > 0, "nothing restored: {r}");
    }

    let batches: Vec<u64> = out["wasm_boundary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["batch"].as_u64().unwrap())
        .collect();
    assert_eq!(batches, [1, 16, 256]);
}

/// `--restore` alone: both the bare read and Weir's restore of a loaded
/// changelog see every record.
#[test]
fn the_restore_scenario_reads_and_restores_every_record() {
    let figures = bench_json(&["--restore", "--records", "2000", "--rounds", "1"]);
    let figures: Vec<(&str, u64)> = figures
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["system"].as_str().unwrap(),
                f["records"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(figures, [("fetch only", 2000), ("weir", 2000)]);
}

#[test]
fn weir_bench_is_reachable_as_a_weir_subcommand() {
    let (_, weir) = binaries();
    let out = Command::new(&weir)
        .args(["bench", "--help"])
        .output()
        .expect("running weir bench --help");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("--vs-kafka-streams"), "{text}");
    assert!(text.contains("--failover"), "{text}");
}
