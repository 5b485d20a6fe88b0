//! `weir bench --failover`: what losing an instance costs, with and without
//! a standby. Three instances of word count hold a large store (distinct
//! words loaded first) and process a steady input; one is SIGKILLed; its
//! tasks move once its session expires. Run on Weir with
//! `num.standby.replicas` 0 and 1 and, given its bench app, on Kafka
//! Streams 4.4 with one standby.
//!
//! Measured from the output topic as `--rebalance` is (output partition N
//! is written only by task N, stamped with the broker's clock): the
//! longest gap of a partition after the kill ends when the last moved task
//! resumes. The session timeout is the same for both systems and is
//! subtracted to give the time from the rebalance to the moved tasks
//! running again.

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use serde::Serialize;

use super::rebalance::{
    Feeder, Reader, Scenario, append_times, longest_gaps, now_ms, output_reader,
    wait_for_every_partition,
};
use super::workloads::Loader;
use super::{BenchError, BenchOptions, err, unique};

const PARTITIONS: i32 = 4;
/// Distinct words loaded before the kill: the store's size.
const STORE_KEYS: u64 = 200_000;
const SESSION_TIMEOUT_MS: u64 = 6_000;
/// How long after loading before the kill (standbys catch up).
const SETTLE: Duration = Duration::from_secs(8);
/// How long after the kill the outputs are watched.
const WINDOW: Duration = Duration::from_secs(40);

#[derive(Debug, Clone, Serialize)]
pub struct FailoverFigure {
    pub system: &'static str,
    pub standby_replicas: u32,
    pub store_keys: u64,
    pub session_timeout_seconds: f64,
    /// From the SIGKILL until the killed instance's tasks all produce
    /// output again elsewhere (session timeout included).
    pub kill_to_moved_running_seconds: f64,
    /// The same without the session timeout: rebalance, restore, resume.
    pub rebalance_to_moved_running_seconds: f64,
}

/// Runs Weir without and with a standby, then Kafka Streams with one.
pub fn run(opts: &BenchOptions, ks: Option<&Path>) -> Result<Vec<FailoverFigure>, BenchError> {
    let state = std::env::temp_dir().join(unique("weir-bench-failover"));
    let mut figures = vec![
        scenario(opts, &state, "weir", 0, None)?,
        scenario(opts, &state, "weir", 1, None)?,
    ];
    if let Some(ks) = ks {
        figures.push(scenario(opts, &state, "kafka-streams", 1, Some(ks))?);
    }
    let _ = std::fs::remove_dir_all(&state);
    Ok(figures)
}

fn scenario(
    opts: &BenchOptions,
    state: &Path,
    system: &'static str,
    standbys: u32,
    ks: Option<&Path>,
) -> Result<FailoverFigure, BenchError> {
    let app = unique(&format!("weir-bench-failover-{system}-{standbys}"));
    let s = Scenario {
        opts,
        input: format!("{app}-in"),
        output: format!("{app}-out"),
        app,
        state,
        weir_config: vec![
            format!("num.standby.replicas = {standbys}"),
            format!("kafka.\"session.timeout.ms\" = {SESSION_TIMEOUT_MS}"),
            "kafka.\"heartbeat.interval.ms\" = 1000".into(),
        ],
        ks_args: vec![
            "--standbys".into(),
            standbys.to_string(),
            "--session-timeout-ms".into(),
            SESSION_TIMEOUT_MS.to_string(),
        ],
    };
    s.create_topics()?;
    let start = |host: &str| s.start(ks, host);
    eprintln!(
        "bench: failover on {system}, {standbys} standby replica(s): three instances, {STORE_KEYS} keys, one killed"
    );
    let mut members = Vec::new();
    for host in ["bench-0", "bench-1", "bench-2"] {
        members.push(start(host)?);
    }
    let reader = output_reader(&opts.bootstrap, &s.output)?;
    load_distinct_words(&opts.bootstrap, &s.input)?;
    wait_for_outputs(&reader, &s.output, STORE_KEYS as i64)?;
    wait_for_every_partition(&reader, &s.output)?;
    let feeder = Feeder::start(&opts.bootstrap, &s.input)?;
    std::thread::sleep(SETTLE);
    let killed_at = now_ms();
    members.remove(1).kill();
    std::thread::sleep(WINDOW);
    let until = now_ms();
    feeder.stop();
    for m in members {
        m.stop();
    }
    let stamps = append_times(&output_reader(&opts.bootstrap, &s.output)?, &s.output)?;
    let (_, resumed) = longest_gaps(&stamps, killed_at, until)[0];
    let kill_to_running = (resumed - killed_at) as f64 / 1000.0;
    let session = SESSION_TIMEOUT_MS as f64 / 1000.0;
    Ok(FailoverFigure {
        system,
        standby_replicas: standbys,
        store_keys: STORE_KEYS,
        session_timeout_seconds: session,
        kill_to_moved_running_seconds: kill_to_running,
        rebalance_to_moved_running_seconds: (kill_to_running - session).max(0.0),
    })
}

/// Lines of eight words never used before, `STORE_KEYS` words in all.
fn load_distinct_words(bootstrap: &str, topic: &str) -> Result<(), BenchError> {
    let loader = Loader::new(bootstrap)?;
    for line in 0..STORE_KEYS / 8 {
        let value: Vec<String> = (0..8).map(|w| format!("k{}", line * 8 + w)).collect();
        loader.send(
            topic,
            format!("load-{line}").as_bytes(),
            value.join(" ").as_bytes(),
        );
    }
    loader.flush()
}

/// Waits until `topic` holds at least `n` records.
fn wait_for_outputs(reader: &Reader, topic: &str, n: i64) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut total = 0;
        for p in 0..PARTITIONS {
            let (_, high) = reader
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map_err(err)?;
            total += high;
        }
        if total >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(err(format!(
                "only {total} of {n} outputs in {topic} after 300 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
