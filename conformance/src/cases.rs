//! The conformance cases, written once against [`Target`]. Each drives the
//! probe component (`guests/probe`) with commands and checks what comes out.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::PathBuf;
use std::time::Duration;

use crate::target::{Cmd, Out, Target};

const WAIT: Duration = Duration::from_secs(60);

/// What cases need besides the target.
pub struct Env {
    pub probe_v2: PathBuf,
    /// An address something listens on, for the guest to try to reach.
    pub listener: String,
}

pub struct Case {
    pub name: &'static str,
    /// Needs a real host process (restart, state directory).
    pub live_only: bool,
    pub run: fn(&mut dyn Target, &Env) -> Result<(), String>,
    /// The host's `max.task.idle.ms` for this case.
    pub max_task_idle_ms: u64,
}

pub const CASES: &[Case] = &[
    Case {
        name: "per-partition-order",
        live_only: false,
        run: order,
        max_task_idle_ms: 0,
    },
    Case {
        name: "read-your-writes",
        live_only: false,
        run: read_your_writes,
        max_task_idle_ms: 0,
    },
    Case {
        name: "task-isolation",
        live_only: false,
        run: isolation,
        max_task_idle_ms: 0,
    },
    Case {
        name: "range-and-prefix-scans",
        live_only: false,
        run: scans,
        max_task_idle_ms: 0,
    },
    Case {
        name: "sinks-headers-timestamps",
        live_only: false,
        run: sinks,
        max_task_idle_ms: 0,
    },
    Case {
        name: "stream-time-punctuation",
        live_only: false,
        run: stream_punctuation,
        max_task_idle_ms: 0,
    },
    Case {
        name: "wall-clock-punctuation",
        live_only: false,
        run: wall_punctuation,
        max_task_idle_ms: 0,
    },
    Case {
        name: "trap-fails-only-its-task",
        live_only: false,
        run: trap,
        max_task_idle_ms: 0,
    },
    Case {
        name: "memory-limit",
        live_only: false,
        run: memory,
        max_task_idle_ms: 0,
    },
    Case {
        name: "cpu-deadline",
        live_only: false,
        run: cpu,
        max_task_idle_ms: 0,
    },
    Case {
        name: "no-files-sockets-or-env",
        live_only: false,
        run: sandbox,
        max_task_idle_ms: 0,
    },
    Case {
        name: "no-ambient-clock-or-randomness",
        live_only: false,
        run: ambient,
        max_task_idle_ms: 0,
    },
    Case {
        name: "caps-on-handles",
        live_only: false,
        run: handle_cap,
        max_task_idle_ms: 0,
    },
    Case {
        name: "caps-on-schedules",
        live_only: false,
        run: schedule_cap,
        max_task_idle_ms: 0,
    },
    Case {
        name: "window-fetch-bounds",
        live_only: false,
        run: window_bounds,
        max_task_idle_ms: 0,
    },
    Case {
        name: "window-late-records-dropped",
        live_only: false,
        run: window_late,
        max_task_idle_ms: 0,
    },
    Case {
        name: "window-retention",
        live_only: false,
        run: window_retention,
        max_task_idle_ms: 0,
    },
    Case {
        name: "close-cannot-write",
        live_only: false,
        run: close_cannot_write,
        max_task_idle_ms: 0,
    },
    Case {
        name: "state-survives-restart",
        live_only: false,
        run: restart,
        max_task_idle_ms: 0,
    },
    Case {
        name: "stream-time-survives-restart",
        live_only: false,
        run: stream_time_restart,
        max_task_idle_ms: 0,
    },
    Case {
        name: "state-restored-from-changelog",
        live_only: false,
        run: wiped,
        max_task_idle_ms: 0,
    },
    Case {
        name: "redeploy-keeps-state",
        live_only: false,
        run: redeploy,
        max_task_idle_ms: 0,
    },
    Case {
        name: "inputs-in-timestamp-order",
        live_only: false,
        run: timestamp_order,
        max_task_idle_ms: IDLE.as_millis() as u64,
    },
];

/// `max.task.idle.ms` of `inputs-in-timestamp-order`.
const IDLE: Duration = Duration::from_secs(3);

/// Results by key, in arrival order, once `total` results exist.
fn results(t: &mut dyn Target, total: usize) -> Result<BTreeMap<String, Vec<String>>, String> {
    let outs = t.outputs("results", total, WAIT)?;
    if outs.len() < total {
        return Err(format!("{} of {total} results arrived", outs.len()));
    }
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in outs {
        by_key.entry(o.key).or_default().push(o.value);
    }
    Ok(by_key)
}

fn answer(results: &BTreeMap<String, Vec<String>>, key: &str) -> Result<String, String> {
    results
        .get(key)
        .and_then(|v| v.last().cloned())
        .ok_or_else(|| format!("no result for `{key}`"))
}

fn expect(what: &str, got: &str, wanted: &str) -> Result<(), String> {
    if got == wanted {
        Ok(())
    } else {
        Err(format!("{what}: got `{got}`, expected `{wanted}`"))
    }
}

/// Sends one command and waits for the `total`-th result.
fn step(
    t: &mut dyn Target,
    cmd: Cmd,
    total: usize,
) -> Result<BTreeMap<String, Vec<String>>, String> {
    t.send(&[cmd])?;
    results(t, total)
}

fn order(t: &mut dyn Target, _: &Env) -> Result<(), String> {
    let mut cmds = Vec::new();
    for i in 0..100 {
        cmds.push(Cmd::new("p0", &format!("seq {i}")).on(0));
        cmds.push(Cmd::new("p1", &format!("seq {i}")).on(1));
    }
    t.send(&cmds)?;
    let r = results(t, 200)?;
    let wanted: Vec<String> = (0..100).map(|i| format!("seq {i}")).collect();
    for key in ["p0", "p1"] {
        if r.get(key) != Some(&wanted) {
            return Err(format!("outputs of {key} out of order: {:?}", r.get(key)));
        }
    }
    Ok(())
}

fn read_your_writes(t: &mut dyn Target, _: &Env) -> Result<(), String> {
    t.send(&[
        Cmd::new("put", "put 6b31 v1"),
        Cmd::new("get", "get 6b31"),
        Cmd::new("put2", "put 6b31 v2"),
        Cmd::new("get2", "get 6b31"),
        Cmd::new("del", "delete 6b31"),
        Cmd::new("get3", "get 6b31"),
    ])?;
    let r = results(t, 6)?;
    expect("get after put", &answer(&r, "get")?, "value:v1")?;
    expect("get after overwrite", &answer(&r, "get2")?, "value:v2")?;
    expect("get after delete", &answer(&r, "get3")?, "none")
}

fn isolation(t: &mut dyn Target, _: &Env) -> Result<(), String> {
    t.send(&[
        Cmd::new("put", "put 6b32 x").on(0),
        Cmd::new("get-other", "get 6b32").on(1),
        Cmd::new("get-same", "get 6b32").on(0),
    ])?;
    let r = results(t, 3)?;
    expect("another task's store", &answer(&r, "get-other")?, "none")?;
    expect("the same task's store", &answer(&r, "get-same")?, "value:x")
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn parse_bound(b: &str) -> Bound<Vec<u8>> {
    match b.split_at(1) {
        ("[", k) => Bound::Included(unhex(k)),
        ("(", k) => Bound::Excluded(unhex(k)),
        _ => Bound::Unbounded,
    }
}

fn scans(t: &mut dyn Target, _: &Env) -> Result<(), String> {
    let keys = ["00", "00ff", "01", "61", "6162", "7f", "ff", "ffff", "ff00"];
    let mut cmds: Vec<Cmd> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Cmd::new(&format!("put-{i}"), &format!("put {k} v")))
        .collect();
    let queries = [
        "range * *",
        "range [00 (ff",
        "range (00 [ff",
        "range [61 [61",
        "range (61 (61",
        "range [6162 (61",
        "range [ff *",
        "prefix ff",
        "prefix 61",
        "prefix 00",
        "prefix 02",
    ];
    for (i, q) in queries.iter().enumerate() {
        cmds.push(Cmd::new(&format!("q-{i}"), q));
    }
    t.send(&cmds)?;
    let r = results(t, keys.len() + queries.len())?;
    let mut sorted: Vec<Vec<u8>> = keys.iter().map(|k| unhex(k)).collect();
    sorted.sort();
    let hex = |k: &Vec<u8>| k.iter().map(|b| format!("{b:02x}")).collect::<String>();
    for (i, q) in queries.iter().enumerate() {
        let words: Vec<&str> = q.split_whitespace().collect();
        let wanted: Vec<String> = sorted
            .iter()
            .filter(|k| match words[0] {
                "range" => std::ops::RangeBounds::contains(
                    &(parse_bound(words[1]), parse_bound(words[2])),
                    *k,
                ),
                _ => k.starts_with(&unhex(words[1])),
            })
            .map(hex)
            .collect();
        expect(
            q,
            &answer(&r, &format!("q-{i}"))?,
            &format!("keys:{}", wanted.join(",")),
        )?;
    }
    Ok(())
}

fn sinks(t: &mut dyn Target, _: &Env) -> Result<(), String> {
    t.send(&[Cmd::new("multi", "multi").at(5_000).header("x", b"y")])?;
    results(t, 1)?;
    let a = t.outputs("a", 1, WAIT)?;
    let b = t.outputs("b", 1, WAIT)?;
    let (Some(a), Some(b)) = (a.first(), b.first()) else {
        return Err("a sink received nothing".into());
    };
    let check = |o: &Out, value: &str, ts: i64, headers: &[(&str, &[u8])]| -> Result<(), String> {
        expect("value", &o.value, value)?;
        if o.timestamp != Some(ts) {
            return Err(format!(
                "{value}: timestamp {:?}, expected {ts}",
                o.timestamp
            ));
        }
        for (k, v) in headers {
            if o.header(k) != Some(*v) {
                return Err(format!("{value}: header {k} is {:?}", o.header(k)));
            }
        }
        Ok(())
    };
    // Sink a: the input's timestamp and headers kept, one added.
    check(a, "to a", 5_000, &[("h", b"1"), ("x", b"y")])?;
    // Sink b: timestamp and headers set by the processor.
    check(b, "to b", 42, &[("from", b"probe")])?;
    if b.header("x").is_some() {
        return Err("sink b received the input's header".into());
    }
    Ok(())
}

fn punctuations(t: &mut dyn Target, total: usize, kind: &str) -> Result<Vec<i64>, String> {
    let r = results(t, total)?;
    Ok(r.get("punctuation")
        .into_iter()
        .flatten()
        .filter(|v| v.split_whitespace().nth(2) == Some(kind))
        .filter_map(|v| v.split_whitespace().nth(3)?.parse().ok())
        .collect())
}

fn stream_punctuation(t: &mut dyn Target, _: &Env) -> Result<(), String> {
    // Each record alone, so stream time advances record by record.
    step(t, Cmd::new("s0", "schedule stream 100").at(1_000), 2)?;
    step(t, Cmd::new("s1", "seq 1").at(1_050), 3)?;
    step(t, Cmd::new("s2", "seq 2").at(1_100), 5)?;
    step(t, Cmd::new("s3", "seq 3").at(1_350), 7)?;
    let fired = punctuations(t, 7, "stream")?;
    if fired != [1_000, 1_100, 1_350] {
        return Err(format!(
            "stream-time punctuations at {fired:?}, expected [1000, 1100, 1350]"
        ));
    }
    Ok(())
}

fn wall_punctuation(t: &mut dyn Target, _: &Env) -> Result<(), String> {
    step(t, Cmd::new("w0", "schedule wall 200"), 1)?;
    t.advance_wall_clock(Duration::from_millis(300))?;
    let first = punctuations(t, 2, "wall")?;
    if first.is_empty() {
        return Err("no wall-clock punctuation 300 ms after scheduling every 200 ms".into());
    }
    t.advance_wall_clock(Duration::from_millis(1_000))?;
    let later = punctuations(t, first.len() + 2, "wall")?;
    if later.len() <= first.len() {
        return Err(format!(
            "no further wall-clock punctuation after 1 s more ({later:?})"
        ));
    }
    if later.windows(2).any(|w| w[1] <= w[0]) {
        return Err(format!(
            "wall-clock punctuation times do not increase: {later:?}"
        ));
    }
    Ok(())
}

fn expect_failure(t: &mut dyn Target, needles: &[&str]) -> Result<String, String> {
    let failure = t.failure(WAIT).ok_or("the host reported no failure")?;
    for n in needles {
        if !failure.contains(n) {
            return Err(format!("the failure does not mention `{n}`: {failure}"));
        }
    }
    Ok(failure)
}

fn trap(t: &mut dyn Target, _: &Env) -> Result<(), String> {
    t.send(&[Cmd::new("p1-put", "put 6b35 kept").on(1)])?;
    results(t, 1)?;
    t.send(&[Cmd::new("boom", "panic").on(0)])?;
    expect_failure(t, &["probe@sha256:", "task 0_0", "probe panics on purpose"])?;
    // The other task still answers where the host keeps running; a live
    // host commits it and stops (its answer above was delivered).
    if t.other_tasks_continue() {
        t.send(&[Cmd::new("p1-get", "get 6b35").on(1)])?;
        let r = results(t, 2)?;
        expect(
            "the other task after the trap",
            &answer(&r, "p1-get")?,
            "value:kept",
        )?;
    }
    Ok(())
}

fn memory(t: &mut dyn Target, _: &Env) -> Result<(), String> {
    t.send(&[Cmd::new("alloc", "alloc 400")])?;
    expect_failure(t, &["probe@sha256:", "memory cap"]).map(drop)
}

fn cpu(t: &mut dyn Target, _: &Env) -> Result<(), String> {
    t.send(&[Cmd::new("spin", "spin")])?;
    expect_failure(t, &["probe@sha256:", "CPU deadline"]).map(drop)
}

fn sandbox(t: &mut dyn Target, env: &Env) -> Result<(), String> {
    // Both exist: only a denial keeps the guest out.
    t.send(&[
        Cmd::new("file", "read-file /etc/hostname"),
        Cmd::new("env", "env"),
        Cmd::new("net", &format!("connect {}", env.listener)),
    ])?;
    let r = results(t, 3)?;
    for key in ["file", "net"] {
        let got = answer(&r, key)?;
        if !got.starts_with("denied") {
            return Err(format!("{key}: the guest got `{got}`"));
        }
    }
    expect("environment variables", &answer(&r, "env")?, "vars: 0")
}

/// WASI's clocks stand still and its randomness has a fixed seed: time
/// comes through `context`, and two tasks (two instances) given the same
/// commands compute the same hashes.
fn ambient(t: &mut dyn Target, _: &Env) -> Result<(), String> {
    t.send(&[
        Cmd::new("clock", "clock"),
        Cmd::new("r0", "random").on(0),
        Cmd::new("r1", "random").on(1),
    ])?;
    let r = results(t, 3)?;
    expect("WASI wall clock", &answer(&r, "clock")?, "wall clock: 0")?;
    expect(
        "randomness across instances",
        &answer(&r, "r1")?,
        &answer(&r, "r0")?,
    )
}

fn handle_cap(t: &mut dyn Target, _: &Env) -> Result<(), String> {
    // A few handles are fine (they are dropped); leaking past the cap
    // fails the task with the cap named.
    step(t, Cmd::new("few", "leak-iterators 10"), 1)?;
    t.send(&[Cmd::new("many", "leak-iterators 5000")])?;
    expect_failure(t, &["task 0_0", "wasm.max.handles (1024)"])?;
    Ok(())
}

fn schedule_cap(t: &mut dyn Target, _: &Env) -> Result<(), String> {
    t.send(&[Cmd::new("many", "schedules 5000")])?;
    expect_failure(t, &["task 0_0", "wasm.max.schedules (1024)"])?;
    Ok(())
}

fn window_bounds(t: &mut dyn Target, _: &Env) -> Result<(), String> {
    for (i, cmd) in [
        "wput 6b 0 a",
        "wput 6b 10000 b",
        "wput 6b 20000 c",
        "wput 6a 10000 d",
        "wput 6b6b 10000 e",
    ]
    .iter()
    .enumerate()
    {
        let r = step(t, Cmd::new(&format!("w{i}"), cmd), i + 1)?;
        expect(cmd, &answer(&r, &format!("w{i}"))?, "ok")?;
    }
    // Time bounds are inclusive; another key sharing the prefix is not in.
    t.send(&[
        Cmd::new("in", "wfetch 6b 10000 20000"),
        Cmd::new("between", "wfetch 6b 10001 19999"),
        Cmd::new("all", "wall 10000 10000"),
    ])?;
    let r = results(t, 8)?;
    expect(
        "fetch [10000, 20000]",
        &answer(&r, "in")?,
        "windows:10000=b,20000=c",
    )?;
    expect("fetch (10000, 20000)", &answer(&r, "between")?, "windows:")?;
    expect(
        "fetch-all at 10000",
        &answer(&r, "all")?,
        // Byte order of key ++ window start: `kk` before `k`.
        "windows:6a@10000=d,6b6b@10000=e,6b@10000=b",
    )
}

fn window_late(t: &mut dyn Target, _: &Env) -> Result<(), String> {
    // Stream time 100 s. Window [80 s, 90 s) with 5 s grace closed at 95 s;
    // [90 s, 100 s) closes at 105 s.
    step(t, Cmd::new("tick", "seq 1").at(100_000), 1)?;
    let r = step(t, Cmd::new("late", "wput 6b 80000 x").at(100_000), 2)?;
    expect(
        "a write to a closed window",
        &answer(&r, "late")?,
        "dropped",
    )?;
    let r = step(t, Cmd::new("open", "wput 6b 90000 y").at(100_000), 3)?;
    expect("a write within grace", &answer(&r, "open")?, "ok")?;
    let r = step(t, Cmd::new("read", "wfetch 6b 0 100000").at(100_000), 4)?;
    expect("what was kept", &answer(&r, "read")?, "windows:90000=y")
}

fn window_retention(t: &mut dyn Target, _: &Env) -> Result<(), String> {
    step(t, Cmd::new("old", "wput 6b 0 old"), 1)?;
    step(t, Cmd::new("mid", "wput 6b 80000 mid").at(80_000), 2)?;
    // With 120 s retention, a newest window start of 199.999 s keeps starts
    // from 80 s on: the one at 0 is gone, the one at 80 s is kept...
    step(t, Cmd::new("new", "wput 6b 199999 new").at(200_000), 3)?;
    let r = step(t, Cmd::new("read", "wfetch 6b 0 300000").at(200_000), 4)?;
    expect(
        "windows within retention",
        &answer(&r, "read")?,
        "windows:80000=mid,199999=new",
    )?;
    // ...until the newest start moves 1 ms on.
    step(t, Cmd::new("newer", "wput 6b 200000 newer").at(200_000), 5)?;
    let r = step(t, Cmd::new("again", "wfetch 6b 0 300000").at(200_000), 6)?;
    expect(
        "after the newest start moved 1 ms",
        &answer(&r, "again")?,
        "windows:199999=new,200000=newer",
    )
}

fn close_cannot_write(t: &mut dyn Target, env: &Env) -> Result<(), String> {
    step(t, Cmd::new("arm", "arm-close"), 1)?;
    // The swap closes the old version's instance: its write is refused,
    // so the new version does not see it.
    t.redeploy(&env.probe_v2)?;
    t.send(&[
        Cmd::new("v2", "version"),
        Cmd::new("get", "get 636c6f736564"),
    ])?;
    let r = results(t, 3)?;
    expect("after the redeploy", &answer(&r, "v2")?, "probe-v2")?;
    expect("a write made in close", &answer(&r, "get")?, "none")
}

fn restart(t: &mut dyn Target, _: &Env) -> Result<(), String> {
    step(t, Cmd::new("put", "put 6b36 kept"), 1)?;
    t.restart(false)?;
    let r = step(t, Cmd::new("get", "get 6b36"), 2)?;
    expect("after a restart", &answer(&r, "get")?, "value:kept")
}

/// Stream time is committed with the offsets and resumed after a restart
/// (as Kafka Streams does with partition time): a record older than the
/// newest before the restart does not move it back to its own time.
fn stream_time_restart(t: &mut dyn Target, _: &Env) -> Result<(), String> {
    step(t, Cmd::new("late", "stream-time").at(90_000), 1)?;
    t.restart(false)?;
    let r = step(t, Cmd::new("early", "stream-time").at(5_000), 2)?;
    expect(
        "stream time after a restart, then an older record",
        &answer(&r, "early")?,
        "stream time 90000",
    )
}

fn wiped(t: &mut dyn Target, _: &Env) -> Result<(), String> {
    step(t, Cmd::new("put", "put 6b37 kept").on(1), 1)?;
    t.restart(true)?;
    let r = step(t, Cmd::new("get", "get 6b37").on(1), 2)?;
    expect(
        "after wiping the state directory",
        &answer(&r, "get")?,
        "value:kept",
    )
}

fn redeploy(t: &mut dyn Target, env: &Env) -> Result<(), String> {
    step(t, Cmd::new("put", "put 6b38 kept"), 1)?;
    let r = step(t, Cmd::new("v1", "version"), 2)?;
    expect("before", &answer(&r, "v1")?, "probe-v1")?;
    t.redeploy(&env.probe_v2)?;
    t.send(&[Cmd::new("v2", "version"), Cmd::new("get", "get 6b38")])?;
    let r = results(t, 4)?;
    expect("after the redeploy", &answer(&r, "v2")?, "probe-v2")?;
    expect(
        "state after the redeploy",
        &answer(&r, "get")?,
        "value:kept",
    )
}

/// A task's two co-partitioned inputs are processed in timestamp order,
/// and while one has nothing fetched the other waits for it up to
/// `max.task.idle.ms` (Kafka Streams' semantics). After a record on each
/// input (so a live host is fetching both), l1 and l3 wait for `side`; r2
/// goes between them; l3 then waits out the idle time. (Weir's wait is
/// not lag-aware: an input with nothing fetched is waited for even if the
/// broker has nothing for it either.)
fn timestamp_order(t: &mut dyn Target, _: &Env) -> Result<(), String> {
    t.send(&[Cmd::new("ts", "seq w0").at(100)])?;
    t.send(&[Cmd::new("ts", "seq w1").at(200).on_side()])?;
    // w1 waits for `commands`, empty once w0 is processed.
    t.advance_wall_clock(IDLE)?;
    results(t, 2)?;
    t.send(&[
        Cmd::new("ts", "seq l1").at(1_000),
        Cmd::new("ts", "seq l3").at(3_000),
    ])?;
    t.advance_wall_clock(IDLE / 2)?;
    let early: Vec<String> = t
        .outputs("results", 0, Duration::ZERO)?
        .into_iter()
        .map(|o| o.value)
        .skip(2)
        .collect();
    if !early.is_empty() {
        return Err(format!(
            "processed {early:?} without waiting for the empty input `side` \
             (max.task.idle.ms = {} ms)",
            IDLE.as_millis()
        ));
    }
    t.send(&[Cmd::new("ts", "seq r2").at(2_000).on_side()])?;
    t.advance_wall_clock(IDLE)?;
    let r = results(t, 5)?;
    let got = r.get("ts").cloned().unwrap_or_default();
    let wanted = "seq w0, seq w1, seq l1, seq r2, seq l3";
    expect("order across the inputs", &got.join(", "), wanted)
}
