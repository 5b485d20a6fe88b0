//! Deploying to running hosts: upload, hot swap with state kept, rollback,
//! two instances converging, restarts on the live version, and every
//! rejection leaving the running version alone. Real broker, real `weir`
//! processes, components built from this workspace.

mod support;

use std::time::Duration;

use support::admin::{cli, deploy, get, put, task_versions};
use support::kafka::{create_topic, read_all};
use support::weir::App;
use support::wordcount::{
    assert_counts_are_sequences, count, feed_in_background, lines, send_lines, wait_for_counts,
    word_count_app,
};
use support::{eventually, guests, unique};

const TOKEN: &str = "test-admin-token";

fn deployable_app(input: &str, output: &str, loud: &str) -> App {
    let mut app = word_count_app(input, output);
    app.extra.insert(0, "admin.listen = \"127.0.0.1:0\"".into());
    app.extra.insert(1, format!("admin.token = \"{TOKEN}\""));
    app.extra.push(format!("\"word-counts-loud\" = \"{loud}\""));
    app
}

fn wait_versions(admin: &str, version: u64) {
    eventually(
        Duration::from_secs(60),
        &format!("every task on version {version}"),
        || {
            let versions = task_versions(admin);
            (!versions.is_empty() && versions.iter().all(|v| *v == version)).then_some(())
        },
    );
}

#[test]
fn deploy_swap_rollback_and_restart_keep_state() {
    let (input, output, loud) = (unique("dep-in"), unique("dep-out"), unique("dep-loud"));
    create_topic(&input, 2);
    let app = deployable_app(&input, &output, &loud);

    // A host with no component waits for its first deploy, not ready.
    let mut weir = app.start_instance("weir-test-0", None);
    let admin = weir.admin_url();
    weir.wait_for_log("no topology deployed", Duration::from_secs(60));
    assert_eq!(get(&format!("{admin}/health/ready")).0, 503);
    assert_eq!(get(&format!("{admin}/health/live")).0, 200);

    let (ok, out) = deploy(&admin, TOKEN, "wc", &guests::component("word-count"), &[]);
    assert!(ok, "{out}");
    assert!(out.contains("deployed wc version 1"), "{out}");
    let text = lines(10, 3000);
    send_lines(&input, 0, &text[..1000]);
    wait_for_counts(&output, &count(&text[..1000]));
    assert_eq!(get(&format!("{admin}/health/ready")).0, 200);

    // v2 mid-stream: input keeps arriving while the swap happens.
    let producer = feed_in_background(
        &input,
        1000,
        &text[1000..1800],
        50,
        Duration::from_millis(20),
    );
    let (ok, out) = deploy(
        &admin,
        TOKEN,
        "wc",
        &guests::component("word-count-v2"),
        &[],
    );
    assert!(ok, "{out}");
    assert!(out.contains("deployed wc version 2"), "{out}");
    producer.join().unwrap();
    wait_versions(&admin, 2);
    // Lines v2 surely processes (the ones above may all have gone before
    // the swap).
    send_lines(&input, 1800, &text[1800..2000]);
    // Counts continue from v1's state: exact, and no count repeated or skipped.
    wait_for_counts(&output, &count(&text[..2000]));
    assert_counts_are_sequences(&output);
    eventually(Duration::from_secs(30), "v2's new output", || {
        (!read_all(&loud).is_empty()).then_some(())
    });
    weir.wait_for_log("swapped processor version", Duration::from_secs(10));
    let (_, metrics) = get(&format!("{admin}/metrics"));
    assert!(
        metrics.as_str().unwrap().contains("weir_swaps_total 1"),
        "{metrics}"
    );

    let (_, listed) = get(&format!("{admin}/v1/topologies/wc"));
    assert_eq!(listed["live_version"], 2, "{listed}");
    assert_eq!(listed["versions"].as_array().unwrap().len(), 2);
    assert_eq!(
        listed["versions"][1]["topology"]["sinks"][1]["name"], "loud",
        "{listed}"
    );
    assert!(
        listed["versions"][0]["deployed_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    // Rollback: v1 behaviour again (no more loud output), state kept.
    let (ok, out) = cli(&[
        "rollback", "--admin", &admin, "--token", TOKEN, "--name", "wc",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("version 1 is live again"), "{out}");
    wait_versions(&admin, 1);
    let loud_before = read_all(&loud).len();
    send_lines(&input, 2000, &text[2000..2500]);
    wait_for_counts(&output, &count(&text[..2500]));
    assert_eq!(
        read_all(&loud).len(),
        loud_before,
        "v1 must not write the loud sink"
    );

    // A restart comes back on the live version without an upload, and does
    // not recompile it.
    let (status, log) = weir.terminate();
    assert!(status.success(), "{log}");
    let mut weir = app.start_instance("weir-test-0", None);
    let admin = weir.admin_url();
    weir.wait_running();
    wait_versions(&admin, 1);
    assert!(
        weir.log().contains("loaded compiled component from cache"),
        "{}",
        weir.log()
    );
    send_lines(&input, 2500, &text[2500..]);
    wait_for_counts(&output, &count(&text));
    assert_counts_are_sequences(&output);
    let (status, log) = weir.terminate();
    assert!(status.success(), "{log}");
}

#[test]
fn two_instances_of_one_application_both_switch() {
    let (input, output, loud) = (unique("dep2-in"), unique("dep2-out"), unique("dep2-loud"));
    create_topic(&input, 4);
    let app = deployable_app(&input, &output, &loud);
    let mut a = app.start_instance("weir-a", None);
    let mut b = app.start_instance("weir-b", None);
    let (admin_a, admin_b) = (a.admin_url(), b.admin_url());

    let (ok, out) = deploy(&admin_a, TOKEN, "wc", &guests::component("word-count"), &[]);
    assert!(ok, "{out}");
    a.wait_running();
    b.wait_running();
    let text = lines(11, 2000);
    send_lines(&input, 0, &text[..1000]);
    wait_for_counts(&output, &count(&text[..1000]));
    // The four tasks are split between the two instances.
    eventually(Duration::from_secs(60), "tasks on both instances", || {
        let (ta, tb) = (task_versions(&admin_a).len(), task_versions(&admin_b).len());
        (ta > 0 && tb > 0 && ta + tb == 4).then_some(())
    });

    // Deployed through B, picked up by both.
    let (ok, out) = deploy(
        &admin_b,
        TOKEN,
        "wc",
        &guests::component("word-count-v2"),
        &[],
    );
    assert!(ok, "{out}");
    wait_versions(&admin_a, 2);
    wait_versions(&admin_b, 2);
    send_lines(&input, 1000, &text[1000..]);
    wait_for_counts(&output, &count(&text));
    assert_counts_are_sequences(&output);
    for weir in [a, b] {
        let (status, log) = weir.terminate();
        assert!(status.success(), "{log}");
    }
}

#[test]
fn rejected_deploys_say_why_and_leave_the_live_version_running() {
    let (input, output, loud) = (unique("rej-in"), unique("rej-out"), unique("rej-loud"));
    create_topic(&input, 2);
    let mut app = deployable_app(&input, &output, &loud);
    app.extra
        .insert(2, "admin.max.component.bytes = 250000".into());
    let mut weir = app.start_instance("weir-test-0", Some(&guests::component("word-count")));
    let admin = weir.admin_url();
    weir.wait_running();
    let text = lines(12, 1000);
    send_lines(&input, 0, &text[..500]);
    wait_for_counts(&output, &count(&text[..500]));

    let rejected = |component: &str, extra: &[&str], expected: &str| {
        let (ok, out) = deploy(
            &admin,
            TOKEN,
            "word-count",
            &guests::component(component),
            extra,
        );
        assert!(!ok, "{component} should be refused:\n{out}");
        assert!(
            out.contains(expected),
            "{component}: expected {expected:?} in:\n{out}"
        );
    };
    rejected(
        "not-a-processor",
        &[],
        "does not fit this host's `weir:streams/processor` world (versions 0.3.0, 0.2.0)",
    );
    rejected(
        "future-version",
        &[],
        "it was built for weir:streams@0.9.0; rebuild it with a weir-sdk for @0.3.0",
    );
    rejected("describe-panics", &[], "describe is broken on purpose");
    rejected(
        "describe-loops",
        &[],
        "exceeded its CPU deadline (2000 ms per call) in describe",
    );
    rejected(
        "big-memory",
        &[],
        "cannot be instantiated: memory growth to",
    );
    rejected(
        "filter-map",
        &[],
        "store `counts` of the live version is missing; deploy with --allow-store-drop",
    );
    rejected(
        "filter-map",
        &["--allow-store-drop"],
        "sources change from [text-lines] to [numbers]",
    );
    rejected("two-sources", &["--allow-store-drop"], "sources change");

    let url = format!("{admin}/v1/topologies/word-count");
    let (status, body) = put(&url, Some(TOKEN), b"definitely not wasm");
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not a WebAssembly binary"),
        "{body}"
    );
    let (status, body) = put(&url, Some("wrong-token"), b"\0asm");
    assert_eq!(status, 401, "{body}");
    let (status, body) = put(&url, None, b"\0asm");
    assert_eq!(status, 401, "{body}");
    let big = vec![0u8; 400_000];
    let (status, body) = put(&url, Some(TOKEN), &big);
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("over admin.max.component.bytes (250000)"),
        "{body}"
    );
    let (ok, out) = deploy(
        &admin,
        TOKEN,
        "other-name",
        &guests::component("word-count-v2"),
        &[],
    );
    assert!(
        !ok && out.contains("runs topology `word-count`; delete it before deploying `other-name`"),
        "{out}"
    );

    // Nothing changed: still version 1, still counting.
    let (_, listed) = get(&url);
    assert_eq!(listed["live_version"], 1, "{listed}");
    assert_eq!(listed["versions"].as_array().unwrap().len(), 1, "{listed}");
    send_lines(&input, 500, &text[500..]);
    wait_for_counts(&output, &count(&text));
    assert_counts_are_sequences(&output);
    let (status, log) = weir.terminate();
    assert!(status.success(), "{log}");
}

/// An instance that cannot run the live version yet (here: its own topic
/// mapping names a source that does not exist) keeps retrying with
/// backoff, and starts the version once it can, instead of staying idle.
#[test]
fn a_rollout_that_failed_on_an_instance_is_retried() {
    let (input, output, loud) = (
        unique("retry-in"),
        unique("retry-out"),
        unique("retry-loud"),
    );
    let later = unique("retry-later");
    create_topic(&input, 2);
    let app_a = deployable_app(&input, &output, &loud);
    let mut app_b = deployable_app(&later, &output, &loud);
    app_b.application_id = app_a.application_id.clone();
    let mut a = app_a.start_instance("weir-a", None);
    let mut b = app_b.start_instance("weir-b", None);
    let admin = a.admin_url();
    b.admin_url();
    let (ok, out) = deploy(&admin, TOKEN, "wc", &guests::component("word-count"), &[]);
    assert!(ok, "{out}");
    a.wait_running();
    b.wait_for_log("cannot run this version here", Duration::from_secs(60));
    b.wait_for_log("retrying", Duration::from_secs(5));
    create_topic(&later, 2);
    b.wait_for_log("starting topology", Duration::from_secs(90));
    for w in [a, b] {
        let (status, log) = w.terminate();
        assert!(status.success(), "{log}");
    }
}

#[test]
fn concurrent_deploys_through_two_instances_one_wins_the_other_gets_409() {
    let (input, output, loud) = (
        unique("dep409-in"),
        unique("dep409-out"),
        unique("dep409-l"),
    );
    create_topic(&input, 4);
    let app = deployable_app(&input, &output, &loud);
    let mut a = app.start_instance("weir-a", None);
    let mut b = app.start_instance("weir-b", None);
    let (admin_a, admin_b) = (a.admin_url(), b.admin_url());

    // Two different components of topology `wc`, one through each
    // instance, at the same moment: each is validated against the empty
    // application, so whichever is written second was decided on a state
    // that no longer holds.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let attempts: Vec<_> = [
        (admin_a.clone(), "word-count"),
        (admin_b.clone(), "word-count-v2"),
    ]
    .into_iter()
    .map(|(admin, guest)| {
        let barrier = barrier.clone();
        let bytes = std::fs::read(guests::component(guest)).unwrap();
        std::thread::spawn(move || {
            barrier.wait();
            let (status, body) = put(&format!("{admin}/v1/topologies/wc"), Some(TOKEN), &bytes);
            (guest, status, body)
        })
    })
    .collect();
    let results: Vec<_> = attempts.into_iter().map(|t| t.join().unwrap()).collect();
    let winners: Vec<_> = results.iter().filter(|(_, s, _)| *s == 201).collect();
    let losers: Vec<_> = results.iter().filter(|(_, s, _)| *s == 409).collect();
    assert_eq!((winners.len(), losers.len()), (1, 1), "{results:?}");
    let (_, _, won) = winners[0];
    let (_, _, lost) = losers[0];
    assert_eq!(won["version"], 1, "{won}");
    let message = lost["error"].as_str().unwrap();
    assert!(
        message.contains("changed while this request was handled") && message.contains("version 1"),
        "{message}"
    );

    // Both instances agree on the live bytes, and every task runs them.
    let winner_sha = won["sha256"].as_str().unwrap().to_string();
    for admin in [&admin_a, &admin_b] {
        let (status, record) = get(&format!("{admin}/v1/topologies/wc"));
        assert_eq!(status, 200, "{record}");
        assert_eq!(record["live_version"], 1, "{record}");
        let versions = record["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 1, "one version written: {record}");
        assert_eq!(versions[0]["sha256"], winner_sha.as_str(), "{record}");
    }
    a.wait_running();
    b.wait_running();
    eventually(
        Duration::from_secs(60),
        "all four tasks on the winner",
        || {
            let mut components = Vec::new();
            for admin in [&admin_a, &admin_b] {
                let (_, tasks) = get(&format!("{admin}/v1/tasks"));
                for t in tasks["tasks"].as_array()? {
                    components.push(t["component"].as_str()?.to_string());
                }
            }
            (components.len() == 4 && components.iter().all(|c| c.contains(&winner_sha[..12])))
                .then_some(())
        },
    );
    for weir in [a, b] {
        let (status, log) = weir.terminate();
        assert!(status.success(), "{log}");
    }
}

/// Runs `trap-on-record`, deploys a version of it that traps on every
/// record, and sends input; returns the app (its temporary directory holds
/// the state), the running host, its admin URL and the output topic.
fn deploy_a_bad_version(auto_rollback: bool) -> (App, support::weir::Weir, String, String) {
    let (input, output) = (unique("canary-in"), unique("canary-out"));
    create_topic(&input, 2);
    let mut app = App::new(&unique("canary"));
    app.extra.insert(0, "admin.listen = \"127.0.0.1:0\"".into());
    app.extra.insert(1, format!("admin.token = \"{TOKEN}\""));
    app.extra
        .insert(2, format!("deploy.auto.rollback = {auto_rollback}"));
    app.extra.push(format!(
        "[topics]\ninput = \"{input}\"\noutput = \"{output}\""
    ));
    let mut weir = app.start(&guests::component("trap-on-record"));
    let admin = weir.admin_url();
    weir.wait_running();
    let first: Vec<(Option<i32>, &str, &[u8])> = (0..2)
        .flat_map(|p| [(Some(p), "a", b"1" as &[u8]), (Some(p), "b", b"1")])
        .collect();
    support::kafka::produce(&input, &first);
    wait_for_output(&output, 4);

    let (ok, out) = deploy(
        &admin,
        TOKEN,
        "trap-on-record",
        &guests::component("trap-on-record-v2"),
        &[],
    );
    assert!(ok, "{out}");
    wait_versions(&admin, 2);
    let second: Vec<(Option<i32>, &str, &[u8])> =
        (0..2).map(|p| (Some(p), "a", b"2" as &[u8])).collect();
    support::kafka::produce(&input, &second);
    (app, weir, admin, output)
}

fn wait_for_output(topic: &str, at_least: usize) -> Vec<(i32, String, String)> {
    eventually(
        Duration::from_secs(60),
        &format!("{at_least} outputs"),
        || {
            let all = read_all(topic);
            (all.len() >= at_least).then_some(all)
        },
    )
}

#[test]
fn a_version_that_fails_on_every_task_is_rolled_back_automatically() {
    let (_app, weir, admin, output) = deploy_a_bad_version(true);
    let record = eventually(Duration::from_secs(60), "an automatic rollback", || {
        let (_, record) = get(&format!("{admin}/v1/topologies/trap-on-record"));
        (record["live_version"] == 1).then_some(record)
    });
    let reason = record["change_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("version 2 failed on every one of its 2 task(s)")
            && reason.contains("deploy.canary.records")
            && reason.contains("refusing record"),
        "{record}"
    );
    assert!(
        record["changed_by"]
            .as_str()
            .unwrap()
            .contains("automatic rollback"),
        "{record}"
    );
    // Back on version 1, which processes what version 2 could not.
    wait_versions(&admin, 1);
    let outputs = wait_for_output(&output, 6);
    let a_counts: Vec<&str> = outputs
        .iter()
        .filter(|(_, k, _)| k == "a")
        .map(|(_, _, v)| v.as_str())
        .collect();
    assert_eq!(
        a_counts.iter().filter(|v| **v == "2").count(),
        2,
        "{outputs:?}"
    );
    let (_, health) = get(&format!("{admin}/health/ready"));
    let (status, log) = weir.terminate();
    assert!(status.success(), "{health} {log}");
    assert!(log.contains("rolled back automatically"), "{log}");
}

#[test]
fn with_auto_rollback_off_a_failing_version_stays_failed() {
    let (_app, mut weir, admin, _) = deploy_a_bad_version(false);
    weir.wait_for_log("failed processing", Duration::from_secs(60));
    // Long enough for a canary to have judged (it polls every 250 ms).
    std::thread::sleep(Duration::from_secs(5));
    let (_, record) = get(&format!("{admin}/v1/topologies/trap-on-record"));
    assert_eq!(record["live_version"], 2, "{record}");
    let (status, log) = weir.terminate();
    assert!(status.success(), "{log}");
    assert!(!log.contains("rolled back automatically"), "{log}");
}
