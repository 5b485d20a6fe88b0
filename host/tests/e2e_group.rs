//! Weir's own streams group on the real broker: several `weir` processes
//! of one application share the word-count tasks (source and repartition
//! topic co-partitioned in one task), a static member restarts without a
//! rebalance, a joining member takes only what balance needs while the
//! others keep running, a killed member's tasks move after its session,
//! and a SIGKILL loop with input flowing loses and repeats nothing.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::kafka::create_topic;
use support::weir::{App, Weir};
use support::wordcount::{
    assert_counts_are_sequences, count, feed_in_background, lines, send_lines, wait_for_counts,
    word_count_app,
};
use support::{eventually, guests, unique};

const PARTITIONS: i32 = 4;

/// Task ids named by `what` ("tasks assigned", "tasks revoked") lines of a
/// log, in order.
fn logged_tasks(log: &str, what: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(what))
        .flat_map(|l| {
            l.split('"')
                .filter(|part| {
                    part.split_once('_')
                        .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok())
                })
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The tasks an instance runs now: assigned minus revoked, by its log.
fn running_tasks(weir: &Weir) -> BTreeSet<String> {
    let log = weir.log();
    let mut tasks = BTreeSet::new();
    for line in log.lines() {
        let add = line.contains("tasks assigned");
        let remove = line.contains("tasks revoked") || line.contains("tasks lost");
        if !add && !remove {
            continue;
        }
        for t in logged_tasks(line, if add { "tasks assigned" } else { "tasks " }) {
            if add {
                tasks.insert(t);
            } else {
                tasks.remove(&t);
            }
        }
    }
    tasks
}

fn start(app: &App, host: &str) -> Weir {
    app.start_instance(host, Some(&guests::component("word-count")))
}

/// Waits until the instances between them run every task exactly once.
fn wait_all_tasks_placed(instances: &[&Weir]) {
    eventually(Duration::from_secs(90), "every task placed once", || {
        let mut all: Vec<String> = instances.iter().flat_map(|w| running_tasks(w)).collect();
        all.sort();
        let expected: Vec<String> = (0..PARTITIONS).map(|p| format!("0_{p}")).collect();
        (all == expected).then_some(())
    });
}

/// Word count under exactly-once with a 6 s session (a stopped member's
/// tasks move quickly).
fn exactly_once_app(input: &str, output: &str) -> App {
    let mut app = word_count_app(input, output);
    app.extra
        .insert(0, "processing.guarantee = \"exactly_once_v2\"".into());
    fast_session(&mut app);
    app
}

/// Instances named `hosts` running every task between them, with `first`
/// counted.
fn running<const N: usize>(
    app: &App,
    hosts: [&str; N],
    input: &str,
    output: &str,
    first: &[String],
) -> [Weir; N] {
    let mut instances = hosts.map(|host| start(app, host));
    for w in &mut instances {
        w.wait_running();
    }
    wait_all_tasks_placed(&instances.each_ref());
    send_lines(input, 0, first);
    wait_for_counts(output, &count(first));
    instances
}

/// Three instances running every task between them, with `first` counted.
fn three_running(app: &App, input: &str, output: &str, first: &[String]) -> (Weir, Weir, Weir) {
    let [a, b, c] = running(app, ["weir-a", "weir-b", "weir-c"], input, output, first);
    (a, b, c)
}

fn fast_session(app: &mut App) {
    app.extra
        .insert(0, "kafka.\"session.timeout.ms\" = 6000".into());
    app.extra
        .insert(1, "kafka.\"heartbeat.interval.ms\" = 1000".into());
}

#[test]
fn three_instances_share_the_tasks_and_a_static_restart_moves_nothing() {
    let (input, output) = (unique("grp-in"), unique("grp-out"));
    create_topic(&input, PARTITIONS);
    let text = lines(21, 2400);
    let app = word_count_app(&input, &output);
    let (a, b, c) = three_running(&app, &input, &output, &text[..1200]);
    for w in [&a, &b, &c] {
        assert!(!running_tasks(w).is_empty(), "{}", w.log());
    }

    // Static member: a clean stop and a restart within the session
    // timeout gets the same tasks back, and the others see no rebalance.
    let before_c = running_tasks(&c);
    let assignments = |w: &Weir| w.log().matches("assignment received").count();
    let (seen_a, seen_b) = (assignments(&a), assignments(&b));
    let (status, log) = c.terminate();
    assert!(status.success(), "{log}");
    let mut c = start(&app, "weir-c");
    c.wait_running();
    eventually(Duration::from_secs(30), "c's tasks back", || {
        (running_tasks(&c) == before_c).then_some(())
    });
    send_lines(&input, 1200, &text[1200..]);
    wait_for_counts(&output, &count(&text));
    assert_eq!(assignments(&a), seen_a, "a saw a rebalance:\n{}", a.log());
    assert_eq!(assignments(&b), seen_b, "b saw a rebalance:\n{}", b.log());
    // Its local state was current: nothing was replayed.
    assert!(
        !c.log().contains("restoring store from changelog"),
        "{}",
        c.log()
    );
    for w in [a, b, c] {
        let (status, log) = w.terminate();
        assert!(status.success(), "{log}");
    }
    assert_counts_are_sequences(&output);
}

#[test]
fn a_joining_instance_takes_only_what_balance_needs_under_exactly_once() {
    let (input, output) = (unique("grp-in"), unique("grp-out"));
    create_topic(&input, PARTITIONS);
    let text = lines(22, 3000);
    let app = exactly_once_app(&input, &output);
    let (a, b, c) = three_running(&app, &input, &output, &text[..1000]);
    let revoked_before: usize = [&a, &b, &c]
        .iter()
        .map(|w| logged_tasks(&w.log(), "tasks revoked").len())
        .sum();

    // Input keeps flowing while a fourth instance joins.
    let feeder = feed_in_background(
        &input,
        1000,
        &text[1000..2000],
        50,
        Duration::from_millis(200),
    );
    let mut d = start(&app, "weir-d");
    d.wait_running();
    // The moved task is revoked first, then handed over in the follow-up.
    eventually(
        Duration::from_secs(60),
        "a task on the new instance",
        || (!running_tasks(&d).is_empty()).then_some(()),
    );
    wait_all_tasks_placed(&[&a, &b, &c, &d]);
    assert_eq!(running_tasks(&d).len(), 1, "{}", d.log());
    // Exactly the one task that moved was revoked; every other task kept
    // running through the rebalance.
    let revoked_after: usize = [&a, &b, &c]
        .iter()
        .map(|w| logged_tasks(&w.log(), "tasks revoked").len())
        .sum();
    assert_eq!(revoked_after - revoked_before, 1);
    feeder.join().unwrap();

    // And out again: d's task goes back after its session times out.
    let (status, log) = d.terminate();
    assert!(status.success(), "{log}");
    wait_all_tasks_placed(&[&a, &b, &c]);
    send_lines(&input, 2000, &text[2000..]);
    wait_for_counts(&output, &count(&text));
    for w in [a, b, c] {
        let (status, log) = w.terminate();
        assert!(status.success(), "{log}");
    }
    assert_counts_are_sequences(&output);
}

#[test]
fn a_killed_instance_s_tasks_move_after_its_session_under_exactly_once() {
    let (input, output) = (unique("grp-in"), unique("grp-out"));
    create_topic(&input, PARTITIONS);
    let text = lines(23, 3000);
    let app = exactly_once_app(&input, &output);
    let (a, b, c) = three_running(&app, &input, &output, &text[..1000]);

    let feeder = feed_in_background(&input, 1000, &text[1000..], 100, Duration::from_millis(100));
    std::thread::sleep(Duration::from_millis(500));
    b.kill();
    feeder.join().unwrap();
    wait_all_tasks_placed(&[&a, &c]);
    wait_for_counts(&output, &count(&text));
    for w in [a, c] {
        let (status, log) = w.terminate();
        assert!(status.success(), "{log}");
    }
    // read_committed: the killed instance's open transaction was aborted.
    assert_counts_are_sequences(&output);
}

#[test]
fn one_process_spreads_its_tasks_over_its_stream_threads() {
    let (input, output) = (unique("grp-thr-in"), unique("grp-thr-out"));
    create_topic(&input, PARTITIONS);
    let text = lines(24, 2000);
    let mut app = word_count_app(&input, &output);
    app.extra.insert(0, "num.stream.threads = 2".into());
    let mut weir = start(&app, "weir-a");
    weir.wait_running();
    wait_all_tasks_placed(&[&weir]);
    send_lines(&input, 0, &text);
    wait_for_counts(&output, &count(&text));
    let log = weir.log();
    for thread in ["thread=1", "thread=2"] {
        assert!(
            log.lines()
                .any(|l| l.contains("tasks assigned") && l.contains(thread)),
            "no tasks on {thread}:\n{log}"
        );
    }
    let (status, log) = weir.terminate();
    assert!(status.success(), "{log}");
    assert_counts_are_sequences(&output);
}

/// SIGKILL after SIGKILL with input flowing: two instances under
/// exactly-once, each killed in turn 0.3–0.7 s after the last kill and
/// started again at once (its stable identity back, its state dir as the
/// kill left it), so some kills land while it starts or restores. The
/// process that stays up never ends, and read_committed sees every count
/// once.
#[test]
fn a_sigkill_loop_with_input_flowing_counts_every_word_exactly_once() {
    let (input, output) = (unique("grp-kill-in"), unique("grp-kill-out"));
    create_topic(&input, PARTITIONS);
    let text = lines(25, 5000);
    let app = exactly_once_app(&input, &output);
    let [a, b] = running(&app, ["weir-a", "weir-b"], &input, &output, &text[..1000]);

    let feeder = feed_in_background(&input, 1000, &text[1000..], 50, Duration::from_millis(80));
    let mut instances = [Some(a), Some(b)];
    for round in 0..6 {
        std::thread::sleep(Duration::from_millis(300 + 200 * (round % 3) as u64));
        let (slot, host) = if round % 2 == 0 {
            (0, "weir-a")
        } else {
            (1, "weir-b")
        };
        instances[slot].take().expect("running").kill();
        let restarted = start(&app, host);
        instances[slot] = Some(restarted);
    }
    feeder.join().unwrap();
    let [Some(a), Some(b)] = instances else {
        unreachable!("both restarted")
    };
    wait_all_tasks_placed(&[&a, &b]);
    wait_for_counts(&output, &count(&text));
    for w in [a, b] {
        let (status, log) = w.terminate();
        assert!(status.success(), "{log}");
        assert!(!log.contains("to ERROR"), "{log}");
    }
    assert_counts_are_sequences(&output);
}
