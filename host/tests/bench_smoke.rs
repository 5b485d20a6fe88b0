//! `weir bench` in miniature, so the benchmark cannot rot: it must run both
//! workloads on both engines against the real broker and report figures.

mod support;

use support::guests;
use support::kafka::bootstrap;
use support::weir::Weir;

#[test]
fn bench_reports_both_workloads_on_both_engines() {
    let components = guests::component("word-count")
        .parent()
        .unwrap()
        .to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let mut weir = Weir::spawn(
        &[
            "bench",
            "--bootstrap",
            bootstrap(),
            "--components",
            components.to_str().unwrap(),
            "--records",
            "2000",
            "--rounds",
            "1",
            "--commit-interval-ms",
            "200",
            "--json",
        ],
        dir.path(),
    );
    let (status, log) = weir.wait_exit(std::time::Duration::from_secs(300));
    assert!(status.success(), "bench failed:\n{log}");
    let json_start = log.find("{\n").expect("JSON output");
    let out: serde_json::Value = serde_json::from_str(&log[json_start..]).unwrap();
    let summary = out["summary"].as_array().unwrap();
    let workloads: Vec<&str> = summary
        .iter()
        .map(|s| s["workload"].as_str().unwrap())
        .collect();
    assert_eq!(workloads, ["filter-map", "word-count"]);
    for s in summary {
        assert_eq!(s["records"], 2000);
        assert!(s["wasm_records_per_second"].as_f64().unwrap() > 0.0, "{s}");
        assert!(
            s["native_records_per_second"].as_f64().unwrap() > 0.0,
            "{s}"
        );
    }
    assert_eq!(out["measurements"].as_array().unwrap().len(), 4);
}
