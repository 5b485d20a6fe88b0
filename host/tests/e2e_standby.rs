//! Standby and warm-up replicas on the real broker, word count under
//! exactly-once:
//! - with `num.standby.replicas = 1`, every task has a standby on another
//!   instance; SIGKILL an instance while input flows and each of its tasks
//!   becomes active where its standby was, restoring only a short tail;
//! - scaling out from one instance with a large store, the tasks keep
//!   running on the old owner while warm-ups catch up on the new ones, and
//!   move (as warm copies) at a probing rebalance.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use support::admin::get;
use support::kafka::create_topic;
use support::weir::{App, Weir};
use support::wordcount::{
    assert_counts_are_sequences, count, feed_in_background, lines, send_lines, wait_for_counts,
    word_count_app,
};
use support::{eventually, guests, unique};

const PARTITIONS: i32 = 4;

fn start(app: &App, host: &str) -> (Weir, String) {
    let mut weir = app.start_instance(host, Some(&guests::component("word-count")));
    weir.wait_running();
    let admin = weir.admin_url();
    (weir, admin)
}

/// Word count, exactly-once, a 6 s session, an admin API; `extra` lines
/// replace those of the same key.
fn app(input: &str, output: &str, extra: &[&str]) -> App {
    let mut app = word_count_app(input, output);
    let mut lines = vec![
        "processing.guarantee = \"exactly_once_v2\"",
        "kafka.\"session.timeout.ms\" = 6000",
        "kafka.\"heartbeat.interval.ms\" = 1000",
        "admin.listen = \"127.0.0.1:0\"",
    ];
    let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_string();
    lines.retain(|l| !extra.iter().any(|e| key(e) == key(l)));
    lines.extend_from_slice(extra);
    for (i, line) in lines.into_iter().enumerate() {
        app.extra.insert(i, line.to_string());
    }
    app
}

/// (task id → state) of an instance, from `GET /v1/tasks`.
fn tasks(admin: &str) -> BTreeMap<String, String> {
    support::admin::tasks(admin)
        .into_iter()
        .map(|t| (t.task_id, t.state.into_owned()))
        .collect()
}

/// Waits until the instances run every task once as active and, with
/// `standbys`, keep one standby of every task on another instance.
fn wait_placed(admins: &[&str], standbys: bool) -> Vec<BTreeMap<String, String>> {
    eventually(
        Duration::from_secs(120),
        "every task active once (and standing by once)",
        || {
            let views: Vec<BTreeMap<String, String>> = admins.iter().map(|a| tasks(a)).collect();
            let with = |state: &str| {
                let mut ids: Vec<String> = views
                    .iter()
                    .flat_map(|v| {
                        v.iter()
                            .filter(|(_, s)| *s == state)
                            .map(|(t, _)| t.clone())
                    })
                    .collect();
                ids.sort();
                ids
            };
            let all: Vec<String> = (0..PARTITIONS).map(|p| format!("0_{p}")).collect();
            let standby_ok = !standbys || with("STANDBY") == all;
            (with("RUNNING") == all && standby_ok).then_some(views)
        },
    )
}

fn metric(admin: &str, name: &str) -> f64 {
    let (_, body) = get(&format!("{admin}/metrics"));
    let text = body.as_str().unwrap_or_default().to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

/// Task ids named in `log` lines containing `what`, after byte `after`.
fn tasks_logged(log: &str, after: usize, what: &str) -> BTreeSet<String> {
    log[after.min(log.len())..]
        .lines()
        .filter(|l| l.contains(what))
        .filter_map(|l| {
            let rest = &l[l.find("task_id=")? + "task_id=".len()..];
            Some(rest.split([' ', '}']).next()?.to_string())
        })
        .collect()
}

/// End offset of each changelog partition.
fn changelog_ends(app: &App) -> BTreeMap<String, i64> {
    let topic = format!("{}-counts-changelog", app.application_id);
    (0..PARTITIONS)
        .map(|p| (format!("0_{p}"), support::kafka::end_offset(&topic, p)))
        .collect()
}

/// `hosts` instances with one standby per task; the second is SIGKILLed
/// while input flows.
fn standbys_take_over_a_killed_instance(hosts: &[&str]) {
    let (input, output) = (unique("sb-in"), unique("sb-out"));
    create_topic(&input, PARTITIONS);
    let text = lines(41, 6000);
    // This changelog is far below the default acceptable.recovery.lag
    // (10000), under which a process with no state at all would count as
    // caught up and balance could move a task there cold: only real copies
    // count here.
    let app = app(
        &input,
        &output,
        &["num.standby.replicas = 1", "acceptable.recovery.lag = 0"],
    );
    let mut instances: Vec<(Weir, String)> = hosts.iter().map(|h| start(&app, h)).collect();
    let admins = |instances: &[(Weir, String)]| -> Vec<String> {
        instances.iter().map(|(_, a)| a.clone()).collect()
    };
    let all = admins(&instances);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    wait_placed(&all, true);
    send_lines(&input, 0, &text[..3000]);
    wait_for_counts(&output, &count(&text[..3000]));
    let views = wait_placed(&all, true);
    let victims: BTreeSet<String> = views[1]
        .iter()
        .filter(|(_, s)| *s == "RUNNING")
        .map(|(t, _)| t.clone())
        .collect();
    assert!(!victims.is_empty(), "the victim runs some task: {views:?}");
    // Every survivor standing by for a task has applied records to it
    // (the standby reads the changelog on its own schedule, so this is
    // waited for; with three instances one of them may hold no standby).
    for (i, (_, admin)) in instances.iter().enumerate() {
        if i != 1 && views[i].values().any(|s| s == "STANDBY") {
            eventually(Duration::from_secs(30), "standbys applied records", || {
                (metric(admin, "weir_standby_records_total") > 0.0).then_some(())
            });
        }
    }
    let (victim, _) = instances.remove(1);
    let marks: Vec<usize> = instances.iter().map(|(w, _)| w.log().len()).collect();

    let feeder = feed_in_background(&input, 3000, &text[3000..], 100, Duration::from_millis(100));
    std::thread::sleep(Duration::from_millis(700));
    victim.kill();
    feeder.join().unwrap();
    wait_for_counts(&output, &count(&text));
    let survivors = admins(&instances);
    wait_placed(
        &survivors.iter().map(String::as_str).collect::<Vec<_>>(),
        false,
    );

    let ends = changelog_ends(&app);
    let mut promoted = BTreeSet::new();
    let mut restored: BTreeMap<String, u64> = BTreeMap::new();
    let mut logs = String::new();
    for ((w, _), mark) in instances.iter().zip(&marks) {
        let log = w.log();
        promoted.extend(tasks_logged(&log, *mark, "promoted to active"));
        for (task, n) in support::restored_per_task(&log, *mark, None) {
            *restored.entry(task).or_default() += n;
        }
        logs.push_str(&log);
    }
    assert!(
        victims.is_subset(&promoted),
        "every task of the killed instance became active on its standby: victims {victims:?}, promoted {promoted:?}\n{logs}"
    );
    for task in &victims {
        let n = restored.get(task).copied().unwrap_or(0);
        assert!(
            n * 10 <= ends[task] as u64,
            "task {task} restored {n} of its changelog's {} records: a tail only",
            ends[task]
        );
    }
    for (w, _) in instances {
        let (status, log) = w.terminate();
        assert!(status.success(), "{log}");
    }
    assert_counts_are_sequences(&output);
}

/// Asserts that every task `name` (admin `admin`) runs as active came from
/// a warm copy (a promoted standby or warm-up) and that none of its active
/// restores read more than a tenth of the task's changelog.
fn assert_only_warm_actives(name: &str, weir: &Weir, admin: &str, ends: &BTreeMap<String, i64>) {
    let log = weir.log();
    let promoted = tasks_logged(&log, 0, "promoted to active");
    let running: BTreeSet<String> = tasks(admin)
        .into_iter()
        .filter(|(_, s)| s == "RUNNING")
        .map(|(t, _)| t)
        .collect();
    assert!(
        running.is_subset(&promoted),
        "{name} runs {running:?} but only {promoted:?} came from warm copies:\n{log}"
    );
    for (task, n) in support::restored_per_task(&log, 0, None) {
        assert!(
            n * 10 <= ends[&task] as u64,
            "{name} restored {n} of task {task}'s {} changelog records as active: it started cold\n{log}",
            ends[&task]
        );
    }
}

/// `expected` counts plus those of `more`.
fn add_counts(expected: &mut BTreeMap<String, String>, more: &[String]) {
    for (word, n) in count(more) {
        let before = expected.get(&word).map_or(0, |v| v.parse::<u64>().unwrap());
        expected.insert(word, (before + n.parse::<u64>().unwrap()).to_string());
    }
}

#[test]
fn with_two_instances_a_killed_one_s_tasks_become_active_on_their_standbys() {
    standbys_take_over_a_killed_instance(&["weir-a", "weir-b"]);
}

#[test]
fn with_three_instances_a_killed_one_s_tasks_become_active_on_their_standbys() {
    standbys_take_over_a_killed_instance(&["weir-a", "weir-b", "weir-c"]);
}

#[test]
fn an_instance_restarted_on_an_empty_disk_gets_warm_copies_not_cold_tasks() {
    let (input, output) = (unique("eph-in"), unique("eph-out"));
    create_topic(&input, PARTITIONS);
    // 16k distinct keys: 4k changelog records per task, over the lag below.
    let load = distinct_lines(0, 2_000);
    let app = app(
        &input,
        &output,
        &[
            "num.standby.replicas = 1",
            "acceptable.recovery.lag = 1000",
            "probing.rebalance.interval.ms = 3000",
            "kafka.\"session.timeout.ms\" = 30000",
        ],
    );
    let (a, admin_a) = start(&app, "weir-a");
    let (b, admin_b) = start(&app, "weir-b");
    wait_placed(&[&admin_a, &admin_b], true);
    send_lines(&input, 0, &load);
    let mut expected = count(&load);
    wait_for_counts(&output, &expected);

    // The pod restarts on a new, empty disk within its session: the
    // broker still holds its assignment.
    b.kill();
    let state = app.dir.path().join("state-weir-b");
    std::fs::remove_dir_all(&state).unwrap();
    let (b, admin_b) = start(&app, "weir-b");
    let more = lines(43, 1000);
    for (i, chunk) in more.chunks(100).enumerate() {
        send_lines(&input, 2_000 + i * 100, chunk);
        std::thread::sleep(Duration::from_millis(100));
    }
    add_counts(&mut expected, &more);
    wait_for_counts(&output, &expected);
    wait_placed(&[&admin_a, &admin_b], true);

    let ends = changelog_ends(&app);
    let log = b.log();
    assert!(
        log.contains("asking the leader to place its tasks on warm copies"),
        "the restarted instance handed back the cached tasks:\n{log}"
    );
    assert_only_warm_actives("b", &b, &admin_b, &ends);
    for w in [a, b] {
        let (status, log) = w.terminate();
        assert!(status.success(), "{log}");
    }
    assert_counts_are_sequences(&output);
}

/// Lines of eight words never seen before: every word is a new key.
fn distinct_lines(first: usize, n: usize) -> Vec<String> {
    (first..first + n)
        .map(|i| {
            (0..8)
                .map(|w| format!("k{:07}", i * 8 + w))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn scaling_out_with_a_large_store_moves_tasks_only_once_their_warm_ups_caught_up() {
    let (input, output) = (unique("warm-in"), unique("warm-out"));
    create_topic(&input, PARTITIONS);
    // 200k distinct keys: 50k per task, far over acceptable.recovery.lag.
    let big = distinct_lines(0, 25_000);
    let app = app(
        &input,
        &output,
        &[
            "acceptable.recovery.lag = 1000",
            "probing.rebalance.interval.ms = 5000",
        ],
    );
    let (a, admin_a) = start(&app, "weir-a");
    wait_placed(&[&admin_a], false);
    send_lines(&input, 0, &big);
    let mut expected = count(&big);
    wait_for_counts(&output, &expected);
    let mark = a.log().len();

    let (b, admin_b) = start(&app, "weir-b");
    let (c, admin_c) = start(&app, "weir-c");
    // Input keeps flowing while the tasks move.
    let more = lines(42, 2000);
    for (i, chunk) in more.chunks(200).enumerate() {
        send_lines(&input, 25_000 + i * 200, chunk);
        std::thread::sleep(Duration::from_millis(200));
    }
    eventually(
        Duration::from_secs(180),
        "the tasks spread over three instances",
        || {
            let views: Vec<_> = [&admin_a, &admin_b, &admin_c]
                .iter()
                .map(|a| tasks(a))
                .collect();
            let running =
                |v: &BTreeMap<String, String>| v.values().filter(|s| *s == "RUNNING").count();
            views.iter().all(|v| running(v) >= 1).then_some(())
        },
    );
    add_counts(&mut expected, &more);
    wait_for_counts(&output, &expected);

    let ends = changelog_ends(&app);
    let log_a = a.log();
    assert!(
        tasks(&admin_a).len() < PARTITIONS as usize,
        "a gave tasks away:\n{log_a}"
    );
    assert!(
        tasks_logged(&log_a, mark, "restore complete").is_empty(),
        "a kept its tasks running, no restore:\n{log_a}"
    );
    assert_only_warm_actives("b", &b, &admin_b, &ends);
    assert_only_warm_actives("c", &c, &admin_c, &ends);
    for w in [a, b, c] {
        let (status, log) = w.terminate();
        assert!(status.success(), "{log}");
    }
    assert_counts_are_sequences(&output);
}
