//! Two contract versions in one host: a component built against the frozen
//! `weir:streams@0.2.0` and the same processor built against 0.3.0 load,
//! say which they are, and answer the same commands alike; 0.3.0's
//! `flush` runs before each commit.

mod support;

use std::process::Command;

use support::guests;
use weir::testing::{DriverOptions, TestDriver, TestRecord};

#[test]
fn describe_names_the_contract_a_component_was_built_against() {
    for (component, contract, topology) in [
        ("word-count", "weir:streams@0.3.0", "word-count"),
        ("probe", "weir:streams@0.3.0", "probe"),
        ("probe-v0-2", "weir:streams@0.2.0", "probe"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("describe")
            .arg(guests::component(component))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{component}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["contract"], contract, "{component}");
        assert_eq!(json["topology"]["name"], topology, "{component}");
    }
}

/// Every output of `commands` run through `component`, as text.
fn answers(component: &str, commands: &[&str]) -> Vec<String> {
    let mut driver =
        TestDriver::new(&guests::component(component), DriverOptions::default()).unwrap();
    for (i, command) in commands.iter().enumerate() {
        let record = TestRecord::new("k", *command).at(1_000 + i as i64);
        driver.pipe("commands", record).unwrap();
    }
    let mut answers = Vec::new();
    for sink in ["results", "a", "b"] {
        for o in driver.read_output(sink) {
            answers.push(format!(
                "{sink} {:?}={:?} {:?} @{:?}",
                o.key_str(),
                o.value_str(),
                o.headers,
                o.timestamp
            ));
        }
    }
    answers
}

#[test]
fn a_0_2_component_and_its_0_3_build_answer_alike() {
    let commands = [
        "put 6b61 one",
        "put 6b62 two",
        "get 6b61",
        "prefix 6b",
        "delete 6b61",
        "get 6b61",
        "range * *",
        "multi",
        "stream-time",
    ];
    let new = answers("probe", &commands);
    let old = answers("probe-v0-2", &commands);
    assert_eq!(new, old);
    let expected = [
        "value:one",
        "keys:6b61,6b62",
        "none",
        "keys:6b62",
        "to a",
        "to b",
        "stream time 1008",
    ];
    for text in expected {
        assert!(
            new.iter().any(|a| a.contains(text)),
            "no `{text}` in {new:#?}"
        );
    }
}

#[test]
fn flush_runs_before_each_commit_and_its_outputs_are_sent() {
    // The driver commits after every record, so a held text comes out
    // right after the record that held it, from `flush`.
    let new = answers("probe", &["hold first", "seq 1", "hold second"]);
    let held: Vec<&String> = new
        .iter()
        .filter(|a| a.contains("Some(\"held\")"))
        .collect();
    assert_eq!(held.len(), 2, "{new:#?}");
    assert!(held[0].contains("\"first\""), "{held:?}");
    assert!(held[1].contains("\"second\""), "{held:?}");
    // 0.2.0 has no `flush`: the same processor built for it never
    // releases what it holds.
    let old = answers("probe-v0-2", &["hold first"]);
    assert!(
        !old.iter().any(|a| a.contains("Some(\"held\")")),
        "{old:#?}"
    );
}
