//! Two handles of one store in a guest (the SDK keeps what a handle read
//! and wrote across calls): a write through one is what the other reads,
//! in the same call and in later ones.

mod support;

use weir::testing::{DriverOptions, TestDriver, TestRecord};

#[test]
fn a_second_handle_of_a_store_reads_the_first_ones_writes() {
    let component = support::guests::component("probe");
    let mut driver = TestDriver::new(&component, DriverOptions::default()).unwrap();
    // The twin reads the key as absent (and may keep that) ...
    driver
        .pipe("commands", TestRecord::new("k", "twin-get 6b"))
        .unwrap();
    assert_eq!(support::guests::probe_results(&mut driver, "k"), ["none"]);
    // ... then the first handle writes it, in a later call and in the same one.
    driver
        .pipe("commands", TestRecord::new("k", "put 6b one"))
        .unwrap();
    driver
        .pipe_all(
            "commands",
            vec![
                TestRecord::new("k", "twin-get 6b"),
                TestRecord::new("k", "put 6b two"),
                TestRecord::new("k", "twin-get 6b"),
            ],
        )
        .unwrap();
    assert_eq!(
        support::guests::probe_results(&mut driver, "k"),
        ["ok", "value:one", "ok", "value:two"]
    );
}
