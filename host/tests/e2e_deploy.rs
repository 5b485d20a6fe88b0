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
    assert_counts_are_sequences, count, lines, send_lines, wait_for_counts, word_count_app,
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
    let (producer_input, rest) = (input.clone(), text[1000..2000].to_vec());
    let producer = std::thread::spawn(move || {
        for (i, chunk) in rest.chunks(50).enumerate() {
            send_lines(&producer_input, 1000 + i * 50, chunk);
            std::thread::sleep(Duration::from_millis(20));
        }
    });
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
        .insert(2, "admin.max.component.bytes = 160000".into());
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
        "does not fit this host's `weir:streams/processor@0.1.0` world",
    );
    rejected(
        "future-version",
        &[],
        "no exported instance named `weir:streams/handler@0.1.0`",
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
    let big = vec![0u8; 200_000];
    let (status, body) = put(&url, Some(TOKEN), &big);
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("over admin.max.component.bytes (160000)"),
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
