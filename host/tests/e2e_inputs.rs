//! Records of one task's co-partitioned inputs are processed in timestamp
//! order, an input with nothing fetched being waited for up to
//! `max.task.idle.ms` (Kafka Streams' semantics): offline with the test
//! driver's clock, and live on the broker with the `two-sources` guest,
//! which forwards every record to `merged` naming its source.

mod support;

use std::time::Duration;

use support::guests;
use support::kafka::{create_topic, produce_at, read_all};
use support::weir::App;
use support::{eventually, unique};
use weir::testing::{DriverOptions, TestDriver, TestRecord};

fn values(outputs: &[weir::testing::TestOutput]) -> Vec<String> {
    outputs
        .iter()
        .map(|o| o.value_str().unwrap().to_string())
        .collect()
}

#[test]
fn offline_inputs_merge_by_timestamp_and_wait_for_an_empty_one() {
    let options = DriverOptions {
        max_task_idle: Some(Duration::from_millis(500)),
        ..Default::default()
    };
    let mut driver = TestDriver::new(&guests::component("two-sources"), options).unwrap();
    driver
        .pipe_all(
            "left",
            vec![
                TestRecord::new("a", "l1").at(1_000),
                TestRecord::new("b", "l3").at(3_000),
            ],
        )
        .unwrap();
    assert!(driver.read_output("out").is_empty(), "waits for `right`");
    driver
        .pipe("right", TestRecord::new("c", "r2").at(2_000))
        .unwrap();
    // `right` is empty again after r2: l3 waits for it.
    assert_eq!(values(&driver.read_output("out")), ["l1", "r2"]);
    driver
        .advance_wall_clock(Duration::from_millis(499))
        .unwrap();
    assert!(driver.read_output("out").is_empty());
    driver.advance_wall_clock(Duration::from_millis(1)).unwrap();
    assert_eq!(values(&driver.read_output("out")), ["l3"]);
}

#[test]
fn offline_with_minus_one_nothing_waits() {
    let options = DriverOptions {
        max_task_idle: None,
        ..Default::default()
    };
    let mut driver = TestDriver::new(&guests::component("two-sources"), options).unwrap();
    driver
        .pipe("left", TestRecord::new("b", "l3").at(3_000))
        .unwrap();
    driver
        .pipe("right", TestRecord::new("c", "r2").at(2_000))
        .unwrap();
    assert_eq!(values(&driver.read_output("out")), ["l3", "r2"]);
}

#[test]
fn live_inputs_merge_by_timestamp_after_waiting_for_an_empty_one() {
    let (left, right, merged) = (unique("left"), unique("right"), unique("merged"));
    create_topic(&left, 1);
    create_topic(&right, 1);
    let mut app = App::new(&unique("inputs"));
    app.extra.push("max.task.idle.ms = 3000".into());
    app.extra.push(format!(
        "[topics]\nleft = \"{left}\"\nright = \"{right}\"\nmerged = \"{merged}\""
    ));
    let mut weir = app.start(&guests::component("two-sources"));
    weir.wait_running();
    produce_at(&left, &[(0, "a", b"l1", 1_000), (0, "b", b"l3", 3_000)]);
    // Long enough for the host to have fetched `left` alone.
    std::thread::sleep(Duration::from_millis(800));
    produce_at(&right, &[(0, "c", b"r2", 2_000)]);
    let out = eventually(Duration::from_secs(60), "three merged records", || {
        let out = read_all(&merged);
        (out.len() >= 3).then_some(out)
    });
    let order: Vec<&str> = out.iter().map(|(_, _, v)| v.as_str()).collect();
    assert_eq!(order, ["l1", "r2", "l3"], "{}", weir.log());
    let (status, log) = weir.terminate();
    assert!(status.success(), "{log}");
}
