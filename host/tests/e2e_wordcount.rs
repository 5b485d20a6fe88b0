//! Word count end to end: the real `weir` binary, a real Kafka broker, the
//! `examples/word-count` component built for wasm32-wasip2, RocksDB state.

mod support;

use std::time::Duration;

use support::kafka::{create_topic, read_all};
use support::wordcount::{
    assert_counts_are_sequences, count, feed_in_background, lines, send_lines, wait_for_counts,
    word_count_app,
};
use support::{eventually, guests, unique};

const PARTITIONS: i32 = 4;

#[test]
fn word_count_over_partitions_gives_exact_counts() {
    let (input, output) = (unique("wc-in"), unique("wc-out"));
    create_topic(&input, PARTITIONS);
    let text = lines(1, 1500);
    send_lines(&input, 0, &text);

    let app = word_count_app(&input, &output);
    let mut weir = app.start(&guests::component("word-count"));
    weir.wait_running();
    wait_for_counts(&output, &count(&text));
    let (status, log) = weir.terminate();
    assert!(status.success(), "weir failed:\n{log}");
    assert!(
        log.contains("from PENDING_SHUTDOWN to NOT_RUNNING"),
        "{log}"
    );

    // One RocksDB per (store, task) under <state.dir>/<application.id>/.
    for p in 0..PARTITIONS {
        let db = app
            .state_dir()
            .join(&app.application_id)
            .join("counts")
            .join(format!("0_{p}"));
        assert!(db.join("CURRENT").exists(), "missing {}", db.display());
    }
    assert_counts_are_sequences(&output);
}

#[test]
fn graceful_restart_mid_stream_loses_and_repeats_nothing() {
    let (input, output) = (unique("wc-in"), unique("wc-out"));
    create_topic(&input, PARTITIONS);
    let text = lines(2, 3000);
    let (first, second) = text.split_at(1000);
    send_lines(&input, 0, first);

    let app = word_count_app(&input, &output);
    let mut weir = app.start(&guests::component("word-count"));
    weir.wait_running();
    eventually(Duration::from_secs(60), "first outputs", || {
        (!read_all(&output).is_empty()).then_some(())
    });

    // Keep producing while the host shuts down, so it stops mid-stream.
    let producer = feed_in_background(&input, 1000, second, 100, Duration::from_millis(30));
    std::thread::sleep(Duration::from_millis(150));
    let (status, log) = weir.terminate();
    assert!(status.success(), "weir failed:\n{log}");
    producer.join().unwrap();
    let before = read_all(&output).len();
    assert!(before > 0);

    let mut weir = app.start(&guests::component("word-count"));
    weir.wait_running();
    wait_for_counts(&output, &count(&text));
    let (status, log) = weir.terminate();
    assert!(status.success(), "weir failed:\n{log}");
    // Local state was current: RocksDB reopened, nothing replayed.
    assert!(!log.contains("restoring store from changelog"), "{log}");
    assert_counts_are_sequences(&output);
}

/// Counts 1,200 lines, stops, lets `damage` act on the stopped app's state,
/// counts 800 more after a restart, and returns the second run's log once
/// every count is exact.
fn count_around_a_restart(seed: u64, damage: impl FnOnce(&support::weir::App)) -> String {
    let (input, output) = (unique("wc-in"), unique("wc-out"));
    create_topic(&input, PARTITIONS);
    let text = lines(seed, 2000);
    let (first, second) = text.split_at(1200);
    send_lines(&input, 0, first);

    let app = word_count_app(&input, &output);
    let mut weir = app.start(&guests::component("word-count"));
    weir.wait_running();
    wait_for_counts(&output, &count(first));
    let (status, log) = weir.terminate();
    assert!(status.success(), "weir failed:\n{log}");

    damage(&app);
    send_lines(&input, first.len(), second);
    let mut weir = app.start(&guests::component("word-count"));
    weir.wait_running();
    wait_for_counts(&output, &count(&text));
    let (status, log) = weir.terminate();
    assert!(status.success(), "weir failed:\n{log}");
    assert_counts_are_sequences(&output);
    log
}

#[test]
fn deleted_state_dir_is_restored_from_the_changelog() {
    let log = count_around_a_restart(3, |app| {
        std::fs::remove_dir_all(app.state_dir()).unwrap();
    });
    assert!(log.contains("restoring store from changelog"), "{log}");
    assert!(log.contains("restore complete"), "{log}");
}

/// A corrupt local store (Kafka Streams' TaskCorruptedException) costs its
/// task a wipe and a restore from the changelog, never the process.
#[test]
fn a_corrupt_store_is_wiped_and_restored_while_the_process_stays_up() {
    let log = count_around_a_restart(4, |app| {
        // RocksDB refuses to open a database whose CURRENT file is garbage.
        let store = app
            .state_dir()
            .join(&app.application_id)
            .join("counts")
            .join("0_1");
        std::fs::write(store.join("CURRENT"), b"not a manifest name").unwrap();
    });
    assert!(!log.contains("to ERROR"), "{log}");
    assert!(log.contains("local state is corrupt"), "{log}");
    assert!(
        log.contains("restoring store from changelog") && log.contains("task_id=0_1"),
        "{log}"
    );
}

#[test]
fn exactly_once_survives_sigkill_mid_stream() {
    let (input, output) = (unique("wc-in"), unique("wc-out"));
    create_topic(&input, PARTITIONS);
    let text = lines(4, 3000);
    let (first, second) = text.split_at(1000);
    send_lines(&input, 0, first);

    let mut app = word_count_app(&input, &output);
    app.extra
        .insert(0, "processing.guarantee = \"exactly_once_v2\"".into());
    let mut weir = app.start(&guests::component("word-count"));
    weir.wait_running();
    eventually(Duration::from_secs(60), "first outputs", || {
        (!read_all(&output).is_empty()).then_some(())
    });

    let producer = feed_in_background(&input, 1000, second, 100, Duration::from_millis(30));
    std::thread::sleep(Duration::from_millis(200));
    weir.kill();
    producer.join().unwrap();

    let mut weir = app.start(&guests::component("word-count"));
    weir.wait_running();
    wait_for_counts(&output, &count(&text));
    let (status, log) = weir.terminate();
    assert!(status.success(), "weir failed:\n{log}");
    // Read committed: aborted outputs of the killed run are invisible, so
    // every count appears exactly once.
    assert_counts_are_sequences(&output);
}
