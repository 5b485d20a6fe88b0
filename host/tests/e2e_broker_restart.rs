//! A broker restart (stop, a few seconds down, start on the same data) in
//! the middle of processing, under both guarantees: the application
//! recovers by itself, counts are exact, and under exactly-once no output
//! is repeated; and during a long restore. Its own test binary, because it
//! restarts the broker every other test shares; its tests share a lock.

mod support;

use std::time::Duration;

use support::kafka::{create_topic, latest, restart_broker};
use support::wordcount::{assert_counts_are_sequences, count, lines, send_lines, word_count_app};
use support::{eventually, guests, unique};

fn survive_a_restart_mid_stream(exactly_once: bool) {
    let (input, output) = (unique("bounce-in"), unique("bounce-out"));
    create_topic(&input, 2);
    let text = lines(if exactly_once { 31 } else { 32 }, 3000);
    let mut app = word_count_app(&input, &output);
    if exactly_once {
        app.extra
            .insert(0, "processing.guarantee = \"exactly_once_v2\"".into());
    }
    // For the failure report: what the host says it did.
    app.extra.insert(0, "admin.listen = \"127.0.0.1:0\"".into());
    let mut weir = app.start(&guests::component("word-count"));
    weir.wait_running();
    let admin = weir.admin_url();
    send_lines(&input, 0, &text[..1500]);
    eventually(Duration::from_secs(60), "first outputs", || {
        (!latest(&output).is_empty()).then_some(())
    });
    restart_broker(Duration::from_secs(4));
    send_lines(&input, 1500, &text[1500..]);
    let expected = count(&text);
    // Generous: after a restart the coordinators reload and librdkafka
    // reconnects with backoff, slower on a loaded CI machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while latest(&output) != expected {
        if std::time::Instant::now() >= deadline {
            let got = latest(&output);
            let wrong: Vec<_> = expected
                .iter()
                .filter(|(w, n)| got.get(*w) != Some(n))
                .map(|(w, n)| (w, n, got.get(w)))
                .take(10)
                .collect();
            let answer = |path: &str| {
                support::admin::try_get(&format!("{admin}{path}"))
                    .map_or_else(|e| serde_json::Value::String(format!("({e})")), |(_, v)| v)
            };
            let (tasks, metrics) = (answer("/v1/tasks"), answer("/metrics"));
            let metrics: Vec<&str> = metrics
                .as_str()
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("weir_") && !l.contains("_bucket"))
                .collect();
            panic!(
                "exact counts did not arrive after the restart (exactly_once: {exactly_once}); \
                 {} of {} words wrong, e.g. (word, want, got) {wrong:?}\ntasks: {tasks}\n\
                 metrics:\n{}\nlog:\n{}",
                expected
                    .iter()
                    .filter(|(w, n)| got.get(*w) != Some(n))
                    .count(),
                expected.len(),
                metrics.join("\n"),
                weir.log()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // For the record (visible with --nocapture): librdkafka sometimes stops
    // fetching after a restart, and the host replaces its consumer.
    let (_, metrics) = support::admin::get(&format!("{admin}/metrics"));
    let replaced = metrics
        .as_str()
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("weir_source_consumer_restarts_total"))
        .unwrap_or("weir_source_consumer_restarts_total (missing)")
        .to_string();
    eprintln!("exactly_once {exactly_once}: {replaced}");
    let (status, log) = weir.terminate();
    assert!(status.success(), "weir did not survive the restart:\n{log}");
    assert!(!log.contains("to ERROR"), "{log}");
    if exactly_once {
        assert_counts_are_sequences(&output);
    }
}

/// One restart at a time: the broker is shared.
static BROKER: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_broker_restart_mid_stream_is_survived_under_both_guarantees() {
    let _one = BROKER.lock().unwrap_or_else(|p| p.into_inner());
    survive_a_restart_mid_stream(false);
    survive_a_restart_mid_stream(true);
}

/// `n` lines of 40 distinct words each, none shared with `lines()`.
fn unique_word_lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            (0..40)
                .map(|j| format!("u{}", i * 40 + j))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn a_broker_restart_during_a_long_restore_is_survived() {
    let _one = BROKER.lock().unwrap_or_else(|p| p.into_inner());
    let (input, output) = (unique("bounce-rs-in"), unique("bounce-rs-out"));
    create_topic(&input, 2);
    let text = lines(33, 1000);
    let bulk = unique_word_lines(7500);
    let mut app = word_count_app(&input, &output);
    // Small changelog batches, so that the restore below can be made to
    // fetch a few at a time.
    app.extra.insert(0, "kafka.\"batch.size\" = 2048".into());
    let mut weir = app.start(&guests::component("word-count"));
    weir.wait_running();
    send_lines(&input, 0, &text[..500]);
    send_lines(&input, 500, &bulk);
    eventually(Duration::from_secs(120), "the bulk counted", || {
        let changelog = format!("{}-counts-changelog", app.application_id);
        (support::kafka::end_offsets(&changelog) >= 300_000).then_some(())
    });
    let (status, log) = weir.terminate();
    assert!(status.success(), "{log}");

    // Cold boot: the whole changelog is replayed; the broker goes away
    // while it is. At full speed the replay is over in well under a second,
    // before the broker is down: each fetch brings one small batch per
    // partition, and librdkafka waits 15 ms before the next (its read-ahead
    // is full at 1 KiB), so it takes some seconds.
    std::fs::remove_dir_all(app.state_dir()).unwrap();
    app.extra
        .insert(0, "kafka.\"queued.max.messages.kbytes\" = 1".into());
    app.extra
        .insert(0, "kafka.\"fetch.queue.backoff.ms\" = 15".into());
    app.extra
        .insert(0, "kafka.\"fetch.message.max.bytes\" = 1024".into());
    let mut weir = app.start(&guests::component("word-count"));
    weir.wait_for_log("restoring store from changelog", Duration::from_secs(60));
    restart_broker(Duration::from_secs(4));
    weir.wait_running();
    send_lines(&input, 500 + bulk.len(), &text[500..]);
    let expected = count(&text);
    eventually(
        Duration::from_secs(180),
        "exact counts after the restore",
        || {
            let latest = latest(&output);
            expected
                .iter()
                .all(|(word, n)| latest.get(word) == Some(n))
                .then_some(())
        },
    );
    let (status, log) = weir.terminate();
    assert!(status.success(), "weir did not survive the restart:\n{log}");
    assert!(log.contains("restore complete"), "{log}");
    // The outage did hit the restore, and the restore rode it out.
    assert!(
        log.contains("reading the changelog failed; retrying")
            || log.contains("cannot read the changelog's offsets; retrying"),
        "{log}"
    );
}
