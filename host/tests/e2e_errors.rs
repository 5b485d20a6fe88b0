//! Bad input gets a clear error naming the problem: a guest that traps, a
//! component that is not a processor, a bad config, topics that do not fit.

mod support;

use std::time::Duration;

use support::admin::{get, tasks};
use support::kafka::{committed_offset, create_topic, create_topic_with, produce};
use support::weir::{App, Weir};
use support::{eventually, guests, unique};

const EXIT_WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_trapping_guest_fails_its_task_naming_component_and_record_and_the_process_stays_up() {
    let (input, output) = (unique("trap-in"), unique("trap-out"));
    create_topic(&input, 1);
    produce(
        &input,
        &[
            (Some(0), "a", b"1"),
            (Some(0), "b", b"2"),
            (Some(0), "a", b"boom"),
            (Some(0), "c", b"3"),
        ],
    );
    let mut app = App::new(&unique("trap"));
    app.extra.insert(0, "admin.listen = \"127.0.0.1:0\"".into());
    app.extra.push(format!(
        "[topics]\ninput = \"{input}\"\noutput = \"{output}\""
    ));
    let mut weir = app.start(&guests::component("trap-on-record"));
    let admin = weir.admin_url();
    let failed = eventually(Duration::from_secs(60), "the task listed as FAILED", || {
        tasks(&admin)
            .into_iter()
            .find(|t| t.task_id == "0_0" && t.state == "FAILED")
    });
    let error = failed.error.as_deref().unwrap();
    assert!(
        error.contains("trap-on-record@sha256:"),
        "component not named: {error}"
    );
    assert!(
        error.contains(&format!(
            "task 0_0 failed processing topic `{input}` partition 0 offset 2"
        )),
        "record not named: {error}"
    );
    assert!(
        error.contains("refusing record with value boom"),
        "panic message missing: {error}"
    );
    // Alive, not ready, counted; and it is retried from its last commit.
    assert_eq!(get(&format!("{admin}/health/live")).0, 200);
    assert_eq!(get(&format!("{admin}/health/ready")).0, 503);
    let (_, metrics) = get(&format!("{admin}/metrics"));
    assert!(
        metrics.as_str().unwrap().contains("weir_tasks_failed 1"),
        "{metrics}"
    );
    weir.wait_for_log(
        "retrying the failed task from its last commit",
        Duration::from_secs(30),
    );
    let log = weir.log();
    assert!(!log.contains("to PENDING_ERROR"), "{log}");
    // Nothing at or past the failing record was committed.
    let committed = committed_offset(&app.application_id, &input, 0);
    assert!(
        committed.is_none_or(|o| o <= 2),
        "committed {committed:?} past the trap"
    );
    let (status, log) = weir.terminate();
    assert!(status.success(), "{log}");
}

fn run_expecting_failure(app: &App, component: &std::path::Path) -> String {
    let mut weir = app.start(component);
    let (status, log) = weir.wait_exit(EXIT_WAIT);
    assert!(!status.success(), "weir should have refused to run:\n{log}");
    log
}

#[test]
fn a_component_without_the_processor_world_is_refused() {
    let app = App::new(&unique("bad-world"));
    let log = run_expecting_failure(&app, &guests::component("not-a-processor"));
    assert!(
        log.contains(
            "not-a-processor.wasm: does not fit this host's `weir:streams/processor` world \
             (versions 0.3.0, 0.2.0)"
        ),
        "{log}"
    );
}

#[test]
fn non_components_are_refused_with_a_reason() {
    let app = App::new(&unique("bad-bytes"));
    let core = app.dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let log = run_expecting_failure(&app, &core);
    assert!(
        log.contains("core.wasm: a core WebAssembly module, not a component"),
        "{log}"
    );

    let text = app.dir.path().join("notes.wasm");
    std::fs::write(&text, b"hello").unwrap();
    let log = run_expecting_failure(&app, &text);
    assert!(
        log.contains("notes.wasm: not a WebAssembly binary"),
        "{log}"
    );

    let mut truncated = std::fs::read(guests::component("word-count")).unwrap();
    truncated.truncate(truncated.len() / 2);
    let cut = app.dir.path().join("cut.wasm");
    std::fs::write(&cut, truncated).unwrap();
    let log = run_expecting_failure(&app, &cut);
    assert!(log.contains("cut.wasm: invalid component"), "{log}");
}

#[test]
fn a_config_with_a_bad_key_is_refused_naming_it() {
    let mut app = App::new(&unique("bad-config"));
    app.extra.push("commit.intervall.ms = 100".into());
    let log = run_expecting_failure(&app, &guests::component("word-count"));
    assert!(
        log.contains(
            "unknown config key `commit.intervall.ms` (did you mean `commit.interval.ms`?)"
        ),
        "{log}"
    );

    let mut app = App::new(&unique("bad-config"));
    app.extra.push("num.stream.threads = \"two\"".into());
    let log = run_expecting_failure(&app, &guests::component("word-count"));
    assert!(
        log.contains("config key `num.stream.threads` has invalid value \"two\""),
        "{log}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.toml"), "application.id = \n").unwrap();
    let mut weir = Weir::spawn(
        &[
            "run",
            "--config",
            dir.path().join("broken.toml").to_str().unwrap(),
            "--component",
            "x.wasm",
        ],
        dir.path(),
    );
    let (status, log) = weir.wait_exit(EXIT_WAIT);
    assert!(!status.success());
    assert!(log.contains("broken.toml is not valid TOML"), "{log}");
}

#[test]
fn missing_and_mismatched_source_topics_are_named() {
    let mut app = App::new(&unique("no-source"));
    let missing = unique("missing");
    app.extra
        .push(format!("[topics]\n\"text-lines\" = \"{missing}\""));
    let log = run_expecting_failure(&app, &guests::component("word-count"));
    assert!(
        log.contains(&format!("source topic `{missing}` does not exist")),
        "{log}"
    );

    let (left, right) = (unique("left"), unique("right"));
    create_topic(&left, 2);
    create_topic(&right, 3);
    let mut app = App::new(&unique("copart"));
    app.extra
        .push(format!("[topics]\nleft = \"{left}\"\nright = \"{right}\""));
    let log = run_expecting_failure(&app, &guests::component("two-sources"));
    assert!(
        log.contains(&format!(
            "source topics are not co-partitioned: `{left}` has 2, `{right}` has 3"
        )),
        "{log}"
    );
}

#[test]
fn a_changelog_topic_that_retention_would_empty_is_refused() {
    let input = unique("policy-in");
    create_topic(&input, 2);
    let mut app = App::new(&unique("policy"));
    let changelog = format!("{}-counts-changelog", app.application_id);
    create_topic_with(&changelog, 2, &[("cleanup.policy", "delete")]);
    app.extra
        .push(format!("[topics]\n\"text-lines\" = \"{input}\""));
    let log = run_expecting_failure(&app, &guests::component("word-count"));
    assert!(
        log.contains(&format!(
            "changelog topic `{changelog}` has cleanup.policy=delete"
        )),
        "{log}"
    );
}

#[test]
fn a_sink_cannot_write_the_application_s_internal_topics() {
    let input = unique("internal-in");
    create_topic(&input, 2);
    let mut app = App::new(&unique("internal"));
    let deployments = format!("{}-deployments", app.application_id);
    app.extra.push(format!(
        "[topics]\n\"text-lines\" = \"{input}\"\n\"word-counts\" = \"{deployments}\""
    ));
    let log = run_expecting_failure(&app, &guests::component("word-count"));
    assert!(
        log.contains(&format!(
            "writes to `{deployments}`, one of the application's internal topics"
        )),
        "{log}"
    );
}

/// A guest cannot make the host buffer without bound inside one call, nor
/// write a store value its changelog would refuse: the call fails naming
/// the cap (before the host grows or the producer fails at commit).
#[test]
fn host_side_buffers_are_capped_per_call_and_per_record() {
    for (command, cap) in [
        ("flood 3000 900000", "wasm.max.call.bytes (67108864 bytes)"),
        (
            "flood 1 2000000",
            "largest record Kafka accepts (1000000 bytes",
        ),
    ] {
        let (input, side) = (unique("flood-in"), unique("flood-side"));
        create_topic(&input, 1);
        create_topic(&side, 1);
        produce(&input, &[(Some(0), "k", command.as_bytes())]);
        let mut app = App::new(&unique("flood"));
        let mut topics = format!("[topics]\ncommands = \"{input}\"\nside = \"{side}\"\n");
        for sink in ["results", "sink-a", "sink-b"] {
            topics.push_str(&format!("\"{sink}\" = \"{}\"\n", unique(sink)));
        }
        app.extra.push(topics);
        // The cap fails the task (a processor error), not the process.
        let mut weir = app.start(&guests::component("probe"));
        weir.wait_for_log("task failed: ", Duration::from_secs(60));
        // The host stayed within the memory bound it printed at start
        // (without the cap, the flood alone would buffer 2.7 GB).
        let peak = weir.peak_rss_bytes();
        let log = weir.log();
        let bound_mib: u64 = log
            .split("\n  total ")
            .nth(1)
            .and_then(|rest| rest.split(" MiB").next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no memory bound in the log: {log}"));
        let allowed = (bound_mib + 100) << 20;
        assert!(
            peak <= allowed,
            "{command}: peak RSS {} MiB over the printed bound {bound_mib} MiB + 100 MiB overhead",
            peak >> 20
        );
        eprintln!(
            "{command}: peak RSS {} MiB, bound {bound_mib} MiB + 100 MiB",
            peak >> 20
        );
        let (status, log) = weir.terminate();
        assert!(status.success(), "{log}");
        assert!(log.contains(cap), "{command}: {log}");
        assert!(log.contains("a write to store `state`"), "{log}");
    }
}

#[test]
fn under_exactly_once_a_failed_task_s_neighbours_go_on_exactly_once() {
    let (input, output) = (unique("trap-eos-in"), unique("trap-eos-out"));
    create_topic(&input, 2);
    let mut app = App::new(&unique("trap-eos"));
    app.extra
        .insert(0, "processing.guarantee = \"exactly_once_v2\"".into());
    app.extra.insert(1, "admin.listen = \"127.0.0.1:0\"".into());
    app.extra.push(format!(
        "[topics]\ninput = \"{input}\"\noutput = \"{output}\""
    ));
    let keys: Vec<String> = (0..300).map(|i| format!("k{}", i % 10)).collect();
    let on_1 = |from: usize, to: usize| -> Vec<(Option<i32>, &str, &[u8])> {
        keys[from..to]
            .iter()
            .map(|k| (Some(1), k.as_str(), b"v".as_slice()))
            .collect()
    };
    produce(&input, &on_1(0, 100));
    let mut weir = app.start(&guests::component("trap-on-record"));
    let admin = weir.admin_url();
    eventually(
        Duration::from_secs(60),
        "task 0_1 counted its first records",
        || {
            (support::kafka::latest(&output)
                .get("k9")
                .map(String::as_str)
                == Some("10"))
            .then_some(())
        },
    );
    // The trap on partition 0 aborts the thread's transaction: task 0_1
    // starts again from its last commit, and keeps going.
    produce(&input, &[(Some(0), "a", b"1"), (Some(0), "a", b"boom")]);
    produce(&input, &on_1(100, 200));
    eventually(Duration::from_secs(60), "task 0_0 FAILED", || {
        tasks(&admin)
            .iter()
            .any(|t| t.task_id == "0_0" && t.state == "FAILED")
            .then_some(())
    });
    produce(&input, &on_1(200, 300));
    eventually(
        Duration::from_secs(60),
        "every record of partition 1 counted",
        || {
            let latest = support::kafka::latest(&output);
            (0..10)
                .all(|i| latest.get(&format!("k{i}")).map(String::as_str) == Some("30"))
                .then_some(())
        },
    );
    let (status, log) = weir.terminate();
    assert!(status.success(), "{log}");
    // read_committed: each key's outputs are 1..n, nothing twice.
    let mut seen: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for (_, key, value) in support::kafka::read_all(&output) {
        if key.starts_with('k') {
            seen.entry(key).or_default().push(value.parse().unwrap());
        }
    }
    for (key, counts) in seen {
        assert_eq!(counts, (1..=30).collect::<Vec<u64>>(), "outputs of {key}");
    }
}

/// Key, value and headers of a record, as text.
type TextRecord = (String, String, Vec<(String, String)>);

/// Every record of `topic` with its headers (read_committed).
fn read_with_headers(topic: &str) -> Vec<TextRecord> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", support::kafka::bootstrap())
        .set("group.id", unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) else {
            if !out.is_empty() {
                break;
            }
            continue;
        };
        let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), text(h.value)))
                    .collect()
            })
            .unwrap_or_default();
        out.push((text(m.key()), text(m.payload()), headers));
    }
    out
}

#[test]
fn with_the_continue_handler_a_failing_record_is_skipped_to_the_dead_letter_queue() {
    let (input, output, dlq) = (unique("skip-in"), unique("skip-out"), unique("skip-dlq"));
    create_topic(&input, 1);
    // One batch: the records before the trap are undone and run again, so
    // under exactly-once each output must appear once.
    produce(
        &input,
        &[
            (Some(0), "a", b"1"),
            (Some(0), "b", b"2"),
            (Some(0), "a", b"boom"),
            (Some(0), "c", b"3"),
            (Some(0), "a", b"4"),
        ],
    );
    let mut app = App::new(&unique("skip"));
    for (i, line) in [
        "processing.guarantee = \"exactly_once_v2\"".to_string(),
        "processing.exception.handler = \"continue\"".to_string(),
        format!("errors.dead.letter.queue.topic.name = \"{dlq}\""),
        "admin.listen = \"127.0.0.1:0\"".to_string(),
    ]
    .into_iter()
    .enumerate()
    {
        app.extra.insert(i, line);
    }
    app.extra.push(format!(
        "[topics]\ninput = \"{input}\"\noutput = \"{output}\""
    ));
    let mut weir = app.start(&guests::component("trap-on-record"));
    let admin = weir.admin_url();
    eventually(
        Duration::from_secs(60),
        "the records after the trap counted",
        || {
            let latest = support::kafka::latest(&output);
            (latest.get("a").map(String::as_str) == Some("2")
                && latest.get("c").map(String::as_str) == Some("1"))
            .then_some(())
        },
    );
    let outputs: Vec<(String, String)> = support::kafka::read_all(&output)
        .into_iter()
        .map(|(_, k, v)| (k, v))
        .collect();
    let expected: Vec<(String, String)> = [("a", "1"), ("b", "1"), ("c", "1"), ("a", "2")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        outputs, expected,
        "each record counted once, the trap's skipped"
    );
    let dead = read_with_headers(&dlq);
    assert_eq!(dead.len(), 1, "{dead:?}");
    let (key, value, headers) = &dead[0];
    assert_eq!((key.as_str(), value.as_str()), ("a", "boom"));
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no header {name}: {headers:?}"))
    };
    assert_eq!(header("__streams.errors.offset"), "2");
    assert_eq!(header("__streams.errors.partition"), "0");
    assert_eq!(header("__streams.errors.topic"), input);
    assert_eq!(header("__streams.errors.exception"), "trap");
    assert!(header("__streams.errors.message").contains("refusing record with value boom"));
    assert!(header("__weir.errors.component").starts_with("trap-on-record@sha256:"));
    assert_eq!(header("__weir.errors.task"), "0_0");
    let (_, metrics) = get(&format!("{admin}/metrics"));
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("weir_records_skipped_total 1"),
        "{metrics}"
    );
    assert_eq!(get(&format!("{admin}/health/ready")).0, 200);
    let (status, log) = weir.terminate();
    assert!(status.success(), "{log}");
}
