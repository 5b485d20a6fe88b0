//! Records of one task's co-partitioned inputs are processed in timestamp
//! order, an input with nothing fetched being waited for up to
//! `max.task.idle.ms` (Kafka Streams' semantics): offline with the test
//! driver's clock, and live on the broker with the `two-sources` guest,
//! which forwards every record to `merged` naming its source. And where a
//! new application starts its inputs: where `auto.offset.reset` says.

mod support;

use std::time::Duration;

use support::guests;
use support::kafka::{create_topic, produce, produce_at, read_all};
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

/// A new application reads its inputs from where `auto.offset.reset`
/// says (the host resolves it to offsets before fetching): with `latest`,
/// what was written before it started is skipped.
#[test]
fn a_new_application_starts_its_inputs_where_auto_offset_reset_says() {
    let (numbers, doubled) = (unique("numbers"), unique("doubled"));
    create_topic(&numbers, 2);
    produce(
        &numbers,
        &[(Some(0), "before", b"3"), (Some(1), "before", b"6")],
    );
    let mut app = App::new(&unique("reset-latest"));
    app.extra
        .push("kafka.\"auto.offset.reset\" = \"latest\"".into());
    app.extra.push(format!(
        "[topics]\nnumbers = \"{numbers}\"\nnumbers-doubled = \"{doubled}\""
    ));
    let mut weir = app.start(&guests::component("filter-map"));
    weir.wait_running();
    produce(
        &numbers,
        &[(Some(0), "after", b"9"), (Some(1), "after", b"12")],
    );
    let out = eventually(Duration::from_secs(60), "two doubled records", || {
        let out = read_all(&doubled);
        (out.len() >= 2).then_some(out)
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut values: Vec<String> = read_all(&doubled).into_iter().map(|(_, _, v)| v).collect();
    values.sort();
    assert_eq!(values, ["18", "24"], "{out:?}\n{}", weir.log());
    let (status, log) = weir.terminate();
    assert!(status.success(), "{log}");
}
