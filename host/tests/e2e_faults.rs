//! Faults that must not stop the application (issue: resilience), each on
//! the real broker with the real `weir` binary and word-count component.

mod support;

use std::time::{Duration, Instant};

use support::guests;
use support::kafka::{create_topic, latest, read_all};
use support::wordcount::{
    assert_counts_are_sequences, count, feed_in_background, lines, send_lines, wait_for_counts,
    word_count_app,
};

/// Exactly-once with a commit interval longer than librdkafka's and Kafka
/// Streams' 10 s default transaction timeout: the transaction must outlive
/// the interval, or the coordinator aborts it and fences the producer
/// ("fenced by a newer instance") while input flows.
#[test]
fn exactly_once_with_a_long_commit_interval_keeps_running() {
    let (input, output) = (support::unique("long-in"), support::unique("long-out"));
    create_topic(&input, 2);
    let text = lines(11, 2400);

    let mut app = word_count_app(&input, &output);
    app.extra
        .insert(0, "processing.guarantee = \"exactly_once_v2\"".into());
    app.extra.insert(1, "commit.interval.ms = 15000".into());
    let mut weir = app.start(&guests::component("word-count"));
    weir.wait_running();

    // 100 lines/s for 24 s: the first transaction is open well past 10 s.
    let started = Instant::now();
    for (i, chunk) in text.chunks(100).enumerate() {
        send_lines(&input, i * 100, chunk);
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(started.elapsed() > Duration::from_secs(20));
    wait_for_counts(&output, &count(&text));
    let log = weir.log();
    assert!(!log.contains("fenced"), "producer fenced:\n{log}");
    assert!(!log.contains("ERROR"), "{log}");
    let (status, log) = weir.terminate();
    assert!(status.success(), "weir failed:\n{log}");
    assert!(!read_all(&output).is_empty());
    assert_counts_are_sequences(&output);
}

/// A zombie with Weir's transactional id fences Weir's producer (as a
/// stale instance of the same pod would). The thread's tasks are closed
/// without committing, a new producer fences the zombie in turn, and the
/// tasks start again from the last commit: the process stays up, counts
/// are exact, and nothing is repeated under read_committed.
#[test]
fn a_fenced_producer_restarts_its_tasks_instead_of_failing() {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{BaseProducer, Producer};

    let (input, output) = (support::unique("fence-in"), support::unique("fence-out"));
    create_topic(&input, 2);
    let text = lines(12, 3000);
    let mut app = word_count_app(&input, &output);
    app.extra
        .insert(0, "processing.guarantee = \"exactly_once_v2\"".into());
    let mut weir = app.start(&guests::component("word-count"));
    weir.wait_running();
    send_lines(&input, 0, &text[..1000]);
    wait_for_counts(&output, &count(&text[..1000]));

    // `<application.id>-<group.instance.id>-<thread>`; the instance id is
    // `<application.id>-$HOSTNAME`.
    let id = &app.application_id;
    let zombie: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", support::kafka::bootstrap())
        .set("transactional.id", format!("{id}-{id}-weir-test-0-1"))
        .create()
        .unwrap();
    zombie.init_transactions(Duration::from_secs(30)).unwrap();
    send_lines(&input, 1000, &text[1000..]);
    wait_for_counts(&output, &count(&text));
    let log = weir.log();
    assert!(
        log.contains("closing the thread's tasks without committing"),
        "the fence was not noticed:\n{log}"
    );
    assert!(
        log.contains("tasks restarted from the last commit"),
        "{log}"
    );
    drop(zombie);
    let (status, log) = weir.terminate();
    assert!(status.success(), "weir failed:\n{log}");
    assert_counts_are_sequences(&output);
}

/// The stall watch's remedy, a new source consumer in place of the old
/// one, forced every 700 ms while input flows under exactly-once with
/// transactions open for 2 s: every replacement lands in the middle of a
/// transaction, with records consumed since the last commit. The new
/// consumer must start each partition exactly where its task stands:
/// counts are exact and no output repeats under read_committed.
#[test]
fn replacing_the_source_consumer_mid_transaction_repeats_and_loses_nothing() {
    let (input, output) = (support::unique("swap-in"), support::unique("swap-out"));
    create_topic(&input, 2);
    let text = lines(13, 4000);
    let mut app = word_count_app(&input, &output);
    app.extra
        .insert(0, "processing.guarantee = \"exactly_once_v2\"".into());
    app.extra.insert(1, "commit.interval.ms = 2000".into());
    let env = [("WEIR_TEST_REPLACE_SOURCE_CONSUMER_MS", "700")];
    let mut weir =
        app.start_instance_with_env("weir-test-0", Some(&guests::component("word-count")), &env);
    weir.wait_running();
    let feed = feed_in_background(&input, 0, &text, 100, Duration::from_millis(250));
    feed.join().unwrap();
    let expected = count(&text);
    let deadline = Instant::now() + Duration::from_secs(120);
    while latest(&output) != expected {
        if Instant::now() >= deadline {
            let got = latest(&output);
            let wrong: Vec<_> = (expected.iter())
                .filter(|(w, n)| got.get(*w) != Some(n))
                .map(|(w, n)| (w, n, got.get(w)))
                .collect();
            panic!(
                "counts wrong, (word, want, got): {wrong:?}\nlog:\n{}",
                weir.log()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = weir.log();
    let replaced = (log.lines())
        .filter(|l| l.contains("replacing the source consumer") && !l.contains("failed"))
        .count();
    assert!(replaced >= 5, "only {replaced} replacements:\n{log}");
    assert!(
        !log.contains("replacing the source consumer failed"),
        "{log}"
    );
    let (status, log) = weir.terminate();
    assert!(status.success(), "weir failed:\n{log}");
    assert!(!log.contains("ERROR"), "{log}");
    assert_counts_are_sequences(&output);
}
