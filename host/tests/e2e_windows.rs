//! Window stores end to end: the `windowed-count` example on the real
//! broker, over a generated stream with out-of-order timestamps and late
//! records, across a restart with its state directory and one without
//! (restored from the changelog); per-window results exact, segments past
//! retention dropped from the store.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::admin::{get, tasks};
use support::kafka::{create_topic, latest, produce_at, read_all};
use support::weir::App;
use support::{eventually, guests, unique};

const SIZE: i64 = 60_000;
/// An hour ago, on a minute boundary: timestamps near 1970 would be
/// deleted by the topics' time retention (the changelog's is 5 min + 1 day).
fn base() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        now - now % SIZE - 3_600_000
    })
}
const KEYS: usize = 6;

/// Events in order of production: (partition, key, timestamp). Timestamps
/// advance 500 ms per event with up to 4 s of jitter backwards (within the
/// 10 s grace, so never dropped whatever the batching); every 50th event
/// of a later phase is 200 s late (always dropped).
fn events(phase: usize, from: i64, n: usize, late: bool) -> Vec<(i32, String, i64)> {
    (0..n)
        .map(|i| {
            let k = (i * 7 + phase) % KEYS;
            let base = base() + from + i as i64 * 500;
            let jitter = ((i * 37 + phase * 11) % 9) as i64 * 500;
            // Late ones are odd, so they never equal an on-time timestamp.
            let ts = if late && i % 50 == 25 {
                base - 200_000 + 1
            } else {
                (base - jitter).max(self::base())
            };
            // Where Kafka's default partitioner (and so an interactive
            // query) puts the key.
            let key = format!("k{k}");
            (weir::kafka::partition_for_key(key.as_bytes(), 2), key, ts)
        })
        .collect()
}

fn produce(topic: &str, events: &[(i32, String, i64)]) {
    let records: Vec<(i32, &str, &[u8], i64)> = events
        .iter()
        .map(|(p, k, ts)| (*p, k.as_str(), b"x" as &[u8], *ts))
        .collect();
    produce_at(topic, &records);
}

/// Counts per `key@window start` of the events that are not late, given
/// that late ones are 200 s behind (and so always dropped).
fn expected(all: &[(i32, String, i64)], late: &[i64]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for (_, key, ts) in all {
        if late.contains(ts) {
            continue;
        }
        *counts
            .entry(format!("{key}@{}", ts - ts % SIZE))
            .or_insert(0u64) += 1;
    }
    counts
}

fn app(input: &str, output: &str) -> App {
    let mut app = App::new(&unique("windows"));
    app.extra.insert(0, "admin.listen = \"127.0.0.1:0\"".into());
    app.extra.push(format!(
        "[topics]\nevents = \"{input}\"\n\"windowed-counts\" = \"{output}\""
    ));
    app
}

#[test]
fn windowed_counts_are_exact_across_restarts_and_old_segments_are_dropped() {
    let (input, output) = (unique("win-in"), unique("win-out"));
    create_topic(&input, 2);
    let app = app(&input, &output);
    let component = guests::component("windowed-count");

    // Phase 1, then a clean restart on the same state directory.
    let mut all = events(1, 0, 600, false);
    produce(&input, &all);
    let weir = app.start(&component);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while latest(&output).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no window emitted in 90 s:\n{}",
            weir.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, log) = weir.terminate();
    assert!(status.success(), "{log}");

    let phase2 = events(2, 300_000, 600, true);
    let late: Vec<i64> = phase2
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 50 == 25)
        .map(|(_, e)| e.2)
        .collect();
    let mut weir = app.start(&component);
    weir.wait_running();
    produce(&input, &phase2);
    all.extend(phase2);
    eventually(
        Duration::from_secs(90),
        "windows of phase 2 emitted",
        || {
            let e = latest(&output);
            e.keys()
                .any(|k| {
                    k.ends_with(&format!("@{}", base() + 480_000))
                        || k.ends_with(&format!("@{}", base() + 540_000))
                })
                .then_some(())
        },
    );
    let (status, log) = weir.terminate();
    assert!(status.success(), "{log}");

    // Without the state directory: restored from the changelogs.
    std::fs::remove_dir_all(app.state_dir()).unwrap();
    let mut weir = app.start(&component);
    let admin = weir.admin_url();
    weir.wait_running();
    let phase3 = events(3, 600_000, 400, false);
    produce(&input, &phase3);
    all.extend(phase3);
    // Windows early in the stream are still in the store (retention is
    // 10 min back from the newest window start)...
    let early = format!(
        "{admin}/v1/stores/counts/windows/k0?from={}&to={}",
        base() + 480_000,
        base() + 600_000
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get(&early);
        if status == 200 && body["windows"].as_array().is_some_and(|w| !w.is_empty()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "k0's windows not readable: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eventually(
        Duration::from_secs(90),
        "windows of phase 3 emitted",
        || {
            latest(&output)
                .keys()
                .any(|k| k.ends_with(&format!("@{}", base() + 720_000)))
                .then_some(())
        },
    );
    // An event per partition 100 s past the last closes every window.
    let closing: Vec<(i32, String, i64)> = (0..2)
        .map(|p| (p, format!("close-{p}"), base() + 900_000))
        .collect();
    produce(&input, &closing);
    let want = expected(&all, &late);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let got = latest(&output);
        let wrong: Vec<(&String, &u64, Option<&String>)> = want
            .iter()
            .filter(|(k, n)| got.get(*k) != Some(&n.to_string()))
            .map(|(k, n)| (k, n, got.get(k)))
            .collect();
        if wrong.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} windows wrong (window, want, got; base {}): {:?}\n{}",
            wrong.len(),
            want.len(),
            base(),
            &wrong[..wrong.len().min(20)],
            weir.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let got = latest(&output);
    let unexpected: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(unexpected.is_empty(), "windows nobody sent: {unexpected:?}");

    // Then one 30 minutes on: the newest window start passes retention
    // (10 min) of every earlier segment, which is dropped from the store.
    let far: Vec<(i32, String, i64)> = (0..2)
        .map(|p| (p, format!("far-{p}"), base() + 2_700_000))
        .collect();
    produce(&input, &far);
    eventually(Duration::from_secs(60), "old segments dropped", || {
        let (status, body) = get(&early);
        (status == 200 && body["windows"].as_array()?.is_empty()).then_some(())
    });
    let (_, metrics) = get(&format!("{admin}/metrics"));
    let metrics = metrics.as_str().unwrap().to_string();
    let (status, log) = weir.terminate();
    assert!(status.success(), "{log}");
    // The late events were dropped and counted (in this run or an earlier
    // one: at least the ones this process saw are counted here).
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("weir_dropped_records_total ")),
        "{metrics}"
    );
}

#[test]
fn a_killed_instance_s_windows_go_on_from_their_standbys_exactly_once() {
    let (input, output) = (unique("win-sb-in"), unique("win-sb-out"));
    create_topic(&input, 2);
    let mut app = app(&input, &output);
    for (i, line) in [
        "processing.guarantee = \"exactly_once_v2\"",
        "num.standby.replicas = 1",
        "kafka.\"session.timeout.ms\" = 6000",
        "kafka.\"heartbeat.interval.ms\" = 1000",
    ]
    .into_iter()
    .enumerate()
    {
        app.extra.insert(i, line.to_string());
    }
    let component = guests::component("windowed-count");
    let mut a = app.start_instance("weir-a", Some(&component));
    let mut b = app.start_instance("weir-b", Some(&component));
    a.wait_running();
    b.wait_running();
    let admin_b = b.admin_url();
    // Both instances hold tasks and standbys before the kill.
    eventually(Duration::from_secs(60), "a standby on b", || {
        tasks(&admin_b)
            .iter()
            .any(|t| t.state == "STANDBY")
            .then_some(())
    });

    let mut all = events(4, 0, 400, false);
    produce(&input, &all);
    eventually(
        Duration::from_secs(90),
        "windows emitted before the kill",
        || (!latest(&output).is_empty()).then_some(()),
    );
    // SIGKILL one instance with input flowing: its tasks continue on b
    // from their standbys (exactly-once: nothing counted twice).
    let more = events(5, 200_000, 400, false);
    produce(&input, &more[..200]);
    a.kill();
    produce(&input, &more[200..]);
    all.extend(more);
    let closing: Vec<(i32, String, i64)> = (0..2)
        .map(|p| (p, format!("close-{p}"), base() + 500_000))
        .collect();
    produce(&input, &closing);

    let want = expected(&all, &[]);
    eventually(
        Duration::from_secs(180),
        "every window's final count",
        || {
            let got = latest(&output);
            want.iter()
                .all(|(k, n)| got.get(k) == Some(&n.to_string()))
                .then_some(())
        },
    );
    // Each window emitted once.
    let records = read_all(&output);
    let mut seen = std::collections::BTreeSet::new();
    for (_, key, _) in &records {
        assert!(seen.insert(key.clone()), "{key} emitted twice");
    }
    let (status, log) = b.terminate();
    assert!(status.success(), "{log}");
}
