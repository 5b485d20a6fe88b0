//! The offline test driver with the `continue` exception handler: a batch
//! run again without its failing record counts its late window writes,
//! and changes its stores, once, not once per run.

mod support;

use weir::task::ProcessingErrors;
use weir::testing::{DriverOptions, TestDriver, TestRecord};

/// Options with the `continue` handler (failing records skipped).
fn skipping() -> DriverOptions {
    DriverOptions {
        processing_errors: ProcessingErrors {
            skip_failing_records: true,
            dead_letter_queue: None,
        },
        ..Default::default()
    }
}

fn driver_with(options: DriverOptions) -> TestDriver {
    TestDriver::new(&support::guests::component("probe"), options).unwrap()
}

fn driver() -> TestDriver {
    driver_with(skipping())
}

#[test]
fn a_re_run_batch_counts_its_dropped_window_writes_once() {
    let mut driver = driver();
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
    assert_eq!(
        support::guests::probe_results(&mut driver, "late"),
        ["dropped"]
    );
    assert_eq!(driver.task_error(0), None, "the task goes on");
    assert_eq!(driver.dropped_records(), 1);
}

/// The SDK keeps a call's store reads and writes in the guest: a call that
/// fails must leave none of them behind for the batch's second run, which
/// reads the store again.
#[test]
fn a_re_run_batch_reads_and_writes_its_store_once() {
    let mut driver = driver();
    driver
        .pipe_all(
            "commands",
            vec![
                TestRecord::new("n", "incr 6b"),
                TestRecord::new("n", "incr 6b"),
                TestRecord::new("bad", "no-such-command"),
                TestRecord::new("n", "incr 6b"),
            ],
        )
        .unwrap();
    assert_eq!(
        support::guests::probe_results(&mut driver, "n"),
        ["1", "2", "3"]
    );
    assert_eq!(driver.task_error(0), None, "the task goes on");
    driver
        .pipe("commands", TestRecord::new("n", "incr 6b"))
        .unwrap();
    assert_eq!(support::guests::probe_results(&mut driver, "n"), ["4"]);
}

/// The SDK keeps what it read and wrote of a store across calls. A call
/// the guest returned from without error but the host refused (here an
/// output over `max_record_bytes`, found when the host takes the call's
/// outputs) is undone by the host alone: the instance is replaced, so the
/// batch's second run reads the undone store, not what the guest kept.
#[test]
fn a_call_the_host_refuses_after_it_returned_leaves_no_stale_reads() {
    let mut options = skipping();
    options.limits.max_record_bytes = 1_000;
    let mut driver = driver_with(options);
    driver
        .pipe("commands", TestRecord::new("n", "incr 6b"))
        .unwrap();
    assert_eq!(support::guests::probe_results(&mut driver, "n"), ["1"]);
    let oversized = format!("seq {}", "x".repeat(2_000));
    driver
        .pipe_all(
            "commands",
            vec![
                TestRecord::new("n", "incr 6b"),
                TestRecord::new("big", oversized),
            ],
        )
        .unwrap();
    assert_eq!(
        support::guests::probe_results(&mut driver, "n"),
        ["2"],
        "counted once"
    );
    assert_eq!(
        support::guests::probe_results(&mut driver, "big"),
        Vec::<String>::new()
    );
    assert_eq!(driver.task_error(0), None, "the task goes on");
    driver
        .pipe("commands", TestRecord::new("n", "incr 6b"))
        .unwrap();
    assert_eq!(support::guests::probe_results(&mut driver, "n"), ["3"]);
}
