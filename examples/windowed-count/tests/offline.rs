//! Windowed count under the offline test driver, with out-of-order and late
//! records; the expected per-window counts are computed here, independently
//! of the processor, from Kafka Streams' rules (a record counts unless its
//! window's end plus grace is at or before stream time; a window is emitted
//! once, when stream time reaches its end plus grace).
//! `cargo test --release -p windowed-count`

use std::collections::BTreeMap;
use std::sync::OnceLock;

use weir_test_driver::{DriverOptions, TestDriver, TestRecord, build_component};

const SIZE: i64 = 60_000;
const GRACE: i64 = 10_000;

fn component() -> &'static std::path::Path {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        build_component(env!("CARGO_MANIFEST_DIR").as_ref()).expect("building windowed-count")
    })
}

/// What Kafka Streams would count and emit for `events` (key, timestamp),
/// each processed on its own: (emitted "key@start" → count, dropped).
fn expected(events: &[(&str, i64)]) -> (BTreeMap<String, u64>, u64) {
    let mut stream_time = -1;
    let mut counts: BTreeMap<(String, i64), u64> = BTreeMap::new();
    let mut emitted = BTreeMap::new();
    let mut dropped = 0;
    for (key, ts) in events {
        let start = ts - ts % SIZE;
        if stream_time >= 0 && start + SIZE + GRACE <= stream_time {
            dropped += 1;
        } else {
            *counts.entry((key.to_string(), start)).or_default() += 1;
        }
        stream_time = stream_time.max(*ts);
        for ((k, s), n) in &counts {
            if s + SIZE + GRACE <= stream_time {
                emitted.entry(format!("{k}@{s}")).or_insert(*n);
            }
        }
    }
    (emitted, dropped)
}

#[test]
fn counts_per_window_emitted_once_on_close_with_late_records_dropped() {
    let events: Vec<(&str, i64)> = vec![
        ("a", 10_000),
        ("b", 20_000),
        ("a", 50_000),
        ("a", 65_000),
        ("a", 30_000), // out of order, within grace: counts in [0, 60 s)
        ("b", 69_999), // [0, 60 s) still open until stream time 70 s
        ("b", 75_000), // stream time 75 s: [0, 60 s) closes and is emitted
        ("a", 40_000), // late: dropped
        ("b", 119_000),
        ("a", 61_000),  // out of order, counts in [60 s, 120 s)
        ("a", 130_000), // [60 s, 120 s) closes
        ("b", 100_000), // late: dropped
        ("c", 250_000), // closes [120 s, 180 s)
    ];
    let (want, want_dropped) = expected(&events);
    assert_eq!(want_dropped, 2, "the test's own model");

    let mut driver = TestDriver::new(component(), DriverOptions::default()).unwrap();
    for (key, ts) in &events {
        driver
            .pipe("events", TestRecord::new(*key, "x").at(*ts))
            .unwrap();
    }
    let outputs = driver.read_output("counts");
    let mut got = BTreeMap::new();
    for o in &outputs {
        let key = o.key_str().unwrap().to_string();
        let count: u64 = o.value_str().unwrap().parse().unwrap();
        assert!(
            got.insert(key.clone(), count).is_none(),
            "{key} emitted twice: {outputs:?}"
        );
    }
    assert_eq!(got, want);
    assert_eq!(driver.dropped_records(), want_dropped);
    // Emitted with the window's end as timestamp.
    let first = outputs.iter().find(|o| o.key_str() == Some("a@0")).unwrap();
    assert_eq!(first.timestamp, Some(60_000));
}

#[test]
fn the_window_store_holds_counts_per_key_and_window() {
    let mut driver = TestDriver::new(component(), DriverOptions::default()).unwrap();
    for (key, ts) in [("a", 1_000), ("a", 2_000), ("b", 61_000), ("a", 62_000)] {
        driver
            .pipe("events", TestRecord::new(key, "x").at(ts))
            .unwrap();
    }
    let windows: Vec<(String, i64, u64)> = driver
        .window_entries(0, "counts")
        .unwrap()
        .into_iter()
        .map(|w| {
            (
                String::from_utf8(w.key).unwrap(),
                w.start,
                u64::from_be_bytes(w.value.try_into().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        windows,
        vec![
            ("a".into(), 0, 2),
            ("a".into(), 60_000, 1),
            ("b".into(), 60_000, 1)
        ]
    );
}
