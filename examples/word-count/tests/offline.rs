//! Word count under the offline test driver: the real component, built for
//! wasm32-wasip2 from this crate, run in-process with no broker.
//! `cargo test --release -p word-count`

use std::sync::OnceLock;

use weir_test_driver::{DriverOptions, TestDriver, TestRecord, build_component};

fn component() -> &'static std::path::Path {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        build_component(env!("CARGO_MANIFEST_DIR").as_ref()).expect("building word-count")
    })
}

fn driver(partitions: i32) -> TestDriver {
    let options = DriverOptions {
        partitions,
        ..Default::default()
    };
    TestDriver::new(component(), options).expect("loading word-count")
}

#[test]
fn counts_words_across_lines_and_partitions() {
    let mut driver = driver(3);
    driver
        .pipe_all(
            "text-lines",
            vec![
                TestRecord::new("a", "Hello weir").at(1),
                TestRecord::new("b", "hello world").at(2),
                TestRecord::new("c", "HELLO again").at(3),
            ],
        )
        .unwrap();
    let outputs = driver.read_output("counts");
    let last_hello = outputs
        .iter()
        .rev()
        .find(|o| o.key_str() == Some("hello"))
        .unwrap();
    assert_eq!(last_hello.value_str(), Some("3"));
    // Every occurrence of a word was counted by the one task that owns it.
    let hello_tasks: std::collections::BTreeSet<_> = outputs
        .iter()
        .filter(|o| o.key_str() == Some("hello"))
        .map(|o| o.task)
        .collect();
    assert_eq!(hello_tasks.len(), 1);
    // Outputs carry the input record's timestamp.
    assert_eq!(last_hello.timestamp, Some(3));
}

#[test]
fn the_store_holds_the_counts() {
    let mut driver = driver(1);
    driver
        .pipe("text-lines", TestRecord::new("a", "to be or not to be"))
        .unwrap();
    let entries = driver.store_entries(0, "counts").unwrap();
    let counts: Vec<(String, u64)> = entries
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k).unwrap(),
                u64::from_be_bytes(v.try_into().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        counts,
        vec![
            ("be".into(), 2),
            ("not".into(), 1),
            ("or".into(), 1),
            ("to".into(), 2)
        ]
    );
}

#[test]
fn lines_that_are_not_text_are_skipped() {
    let mut driver = driver(1);
    driver
        .pipe("text-lines", TestRecord::new("bad", vec![0xff, 0xfe]))
        .unwrap();
    driver
        .pipe("text-lines", TestRecord::new("good", "fine"))
        .unwrap();
    let outputs = driver.read_output("counts");
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].key_str(), Some("fine"));
}

#[test]
fn every_pipe_is_committed_through_the_changelog_and_the_group() {
    let mut driver = driver(1);
    assert_eq!(driver.committed_offset("text-lines", 0), None);
    driver
        .pipe("text-lines", TestRecord::new("a", "to be or not to be"))
        .unwrap();
    driver
        .pipe("text-lines", TestRecord::new("b", "be quick"))
        .unwrap();
    // Input offsets: the next to read after two records.
    assert_eq!(driver.committed_offset("text-lines", 0), Some(2));
    // The changelog holds the latest count of every word (compaction would
    // keep the last of each key), and the store agrees with it.
    let mut latest = std::collections::BTreeMap::new();
    for (key, value) in driver.changelog("counts", 0) {
        latest.insert(key, value.expect("no deletes"));
    }
    let entries: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = driver
        .store_entries(0, "counts")
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(latest, entries);
    assert_eq!(entries[b"be".as_slice()], 3u64.to_be_bytes().to_vec());
    assert!(driver.changelog("no-such-store", 0).is_empty());
}

#[test]
fn the_input_s_headers_reach_the_counts_through_the_repartition() {
    let mut driver = driver(2);
    driver
        .pipe(
            "text-lines",
            TestRecord::new("a", "hello").header("trace-id", "t-1"),
        )
        .unwrap();
    driver
        .pipe("text-lines", TestRecord::new("b", "hello"))
        .unwrap();
    let counts = driver.read_output("counts");
    assert_eq!(counts.len(), 2);
    assert_eq!(counts[0].header("trace-id"), Some(b"t-1".as_slice()));
    assert_eq!(counts[1].header("trace-id"), None, "{:?}", counts[1]);
}
