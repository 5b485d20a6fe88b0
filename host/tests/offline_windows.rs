//! The offline test driver with a window store and the `continue`
//! exception handler: a batch re-run without its failing record counts
//! its late window writes once, not once per run.

mod support;

use weir::task::ProcessingErrors;
use weir::testing::{DriverOptions, TestDriver, TestRecord};

#[test]
fn a_re_run_batch_counts_its_dropped_window_writes_once() {
    let options = DriverOptions {
        processing_errors: ProcessingErrors {
            skip_failing_records: true,
            dead_letter_queue: None,
        },
        ..Default::default()
    };
    let mut driver = TestDriver::new(&support::guests::component("probe"), options).unwrap();
    driver
        .pipe("commands", TestRecord::new("tick", "seq 1").at(100_000))
        .unwrap();
    // One batch: a write to a window closed long ago, then a command the
    // probe answers with an error (the instance stays; a trap would
    // replace it). The handler undoes the call, skips the failing record
    // and runs the write again.
    driver
        .pipe_all(
            "commands",
            vec![
                TestRecord::new("late", "wput 6b 0 x").at(100_000),
                TestRecord::new("bad", "no-such-command").at(100_000),
            ],
        )
        .unwrap();
    let results = driver.read_output("results");
    let late: Vec<_> = results
        .iter()
        .filter(|o| o.key_str() == Some("late"))
        .map(|o| o.value_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(late, vec!["dropped"], "{results:?}");
    assert_eq!(driver.task_error(0), None, "the task goes on");
    assert_eq!(driver.dropped_records(), 1);
}
