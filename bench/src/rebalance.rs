//! `weir bench --rebalance`: what a member joining costs. Three instances
//! of word count process a steady input; a fourth joins; the same scenario
//! runs on Kafka Streams 4.4 when its bench app is given.
//!
//! Measured from the output topic, identically for both systems: words are
//! re-keyed by the same murmur2 hash into the repartition topic and out to
//! the output topic, so output partition N is written only by task N, and
//! the output topic stamps records with the broker's clock
//! (`LogAppendTime`). Per task, the longest gap between two of its outputs
//! after the fourth instance starts is its pause. With 4 tasks going from
//! 3 to 4 instances one task moves: the task with the longest pause is
//! taken as the moved one; the next longest is "the longest pause of a
//! kept task". Also: the time from the fourth process's start until the
//! moved task's outputs resume (process start-up included).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::Serialize;

use super::workloads::create_topic_with;
use super::{BenchError, BenchOptions, err, unique};
use weir::kafka::EndOfPartitionExpected;

const PARTITIONS: i32 = 4;
/// Input lines per second (8 words each), spread over 10 ms ticks.
const LINES_PER_SECOND: u32 = 200;
/// How long the three instances run before the fourth joins.
const WARM_UP: Duration = Duration::from_secs(8);
/// How long after the join the outputs are watched.
const WINDOW: Duration = Duration::from_secs(25);

#[derive(Debug, Clone, Serialize)]
pub struct RebalanceFigure {
    pub system: &'static str,
    pub lines_per_second: u32,
    /// From the fourth process's start until the moved task's outputs
    /// resume on it.
    pub join_to_moved_task_running_seconds: f64,
    pub moved_task_pause_seconds: f64,
    pub kept_task_max_pause_seconds: f64,
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Produces a steady stream of word-count lines until stopped.
pub(super) struct Feeder {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<()>,
}

impl Feeder {
    pub(super) fn start(bootstrap: &str, topic: &str) -> Result<Feeder, BenchError> {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "2")
            .create()
            .map_err(err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, topic) = (stop.clone(), topic.to_string());
        let handle = std::thread::spawn(move || {
            let mut x: u64 = 0x2545_F491_4F6C_DD1D;
            let mut line = 0u64;
            let per_tick = (LINES_PER_SECOND / 100).max(1);
            while !flag.load(Ordering::Relaxed) {
                for _ in 0..per_tick {
                    let words: Vec<String> = (0..8)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            format!("w{}", x % 5_000)
                        })
                        .collect();
                    let key = format!("line-{line}");
                    let value = words.join(" ");
                    line += 1;
                    let _ = producer.send(BaseRecord::to(&topic).key(&key).payload(&value));
                }
                producer.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = producer.flush(Duration::from_secs(10));
        });
        Ok(Feeder { stop, handle })
    }

    pub(super) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
    }
}

/// One instance of the application under test.
pub(super) struct Member {
    child: Child,
}

impl Member {
    /// SIGKILL: no shutdown path at all.
    pub(super) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Ordered stop (SIGTERM for Weir, end of stdin for the Java app).
    pub(super) fn stop(mut self) {
        drop(self.child.stdin.take());
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) struct Scenario<'a> {
    pub opts: &'a BenchOptions,
    pub app: String,
    pub input: String,
    pub output: String,
    pub state: &'a Path,
    /// Extra `weir.toml` lines.
    pub weir_config: Vec<String>,
    /// Extra arguments of the Kafka Streams member.
    pub ks_args: Vec<String>,
}

impl Scenario<'_> {
    /// The input topic and the output topic (stamped by the broker).
    pub(super) fn create_topics(&self) -> Result<(), BenchError> {
        let bootstrap = &self.opts.bootstrap;
        create_topic_with(bootstrap, PARTITIONS, &self.input, &[])?;
        let stamped = [("message.timestamp.type", "LogAppendTime")];
        create_topic_with(bootstrap, PARTITIONS, &self.output, &stamped)
    }

    /// One instance: Kafka Streams given its bench app, Weir otherwise.
    pub(super) fn start(&self, ks: Option<&Path>, host: &str) -> Result<Member, BenchError> {
        match ks {
            Some(ks) => self.kafka_streams(ks, host),
            None => self.weir(host),
        }
    }

    pub(super) fn weir(&self, host: &str) -> Result<Member, BenchError> {
        let dir = self.state.join(&self.app).join(host);
        std::fs::create_dir_all(&dir).map_err(err)?;
        let config = format!(
            "application.id = \"{}\"\nbootstrap.servers = \"{}\"\nstate.dir = \"{}\"\ncommit.interval.ms = {}\n{}\n\
             [topics]\n\"text-lines\" = \"{}\"\n\"word-counts\" = \"{}\"\n",
            self.app,
            self.opts.bootstrap,
            dir.join("state").display(),
            self.opts.commit_interval_ms,
            self.weir_config.join("\n"),
            self.input,
            self.output
        );
        let path = dir.join("weir.toml");
        std::fs::write(&path, config).map_err(err)?;
        let log = std::fs::File::create(dir.join("weir.log")).map_err(err)?;
        let child = Command::new(&self.opts.weir)
            .arg("run")
            .arg("--config")
            .arg(&path)
            .arg("--component")
            .arg(self.opts.components.join("word_count.wasm"))
            .env("RUST_LOG", "info,rdkafka=warn")
            .env("NO_COLOR", "1")
            .env("HOSTNAME", host)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(err)?)
            .stderr(log)
            .spawn()
            .map_err(|e| err(format!("starting weir: {e}")))?;
        Ok(Member { child })
    }

    pub(super) fn kafka_streams(&self, ks: &Path, host: &str) -> Result<Member, BenchError> {
        let classpath = format!(
            "{}:{}/*",
            ks.join("target/classes").display(),
            ks.join("target/lib").display()
        );
        let child = Command::new("java")
            .args(["-Xmx1g", "-cp", &classpath, "dev.weir.bench.Bench"])
            .args(["--workload", "word-count", "--mode", "member"])
            .args(["--bootstrap", &self.opts.bootstrap, "--input", &self.input])
            .args(["--output", &self.output, "--application-id", &self.app])
            .arg("--state-dir")
            .arg(self.state.join(&self.app).join(host))
            .args([
                "--commit-interval-ms",
                &self.opts.commit_interval_ms.to_string(),
            ])
            .args(&self.ks_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| err(format!("starting java: {e}")))?;
        Ok(Member { child })
    }
}

/// Runs the scenario on Weir and, given its bench app, Kafka Streams.
pub fn run(opts: &BenchOptions, ks: Option<&Path>) -> Result<Vec<RebalanceFigure>, BenchError> {
    let state = std::env::temp_dir().join(unique("weir-bench-rebalance"));
    let mut figures = vec![scenario(opts, &state, "weir", None)?];
    if let Some(ks) = ks {
        figures.push(scenario(opts, &state, "kafka-streams", Some(ks))?);
    }
    let _ = std::fs::remove_dir_all(&state);
    Ok(figures)
}

fn scenario(
    opts: &BenchOptions,
    state: &Path,
    system: &'static str,
    ks: Option<&Path>,
) -> Result<RebalanceFigure, BenchError> {
    let app = unique(&format!("weir-bench-rebalance-{system}"));
    let s = Scenario {
        opts,
        input: format!("{app}-in"),
        output: format!("{app}-out"),
        app,
        state,
        weir_config: Vec::new(),
        ks_args: Vec::new(),
    };
    s.create_topics()?;
    let start = |host: &str| s.start(ks, host);
    eprintln!("bench: rebalance scenario on {system}: three instances, then a fourth");
    let feeder = Feeder::start(&opts.bootstrap, &s.input)?;
    let mut members = Vec::new();
    for host in ["bench-0", "bench-1", "bench-2"] {
        members.push(start(host)?);
    }
    wait_for_every_partition(&output_reader(&opts.bootstrap, &s.output)?, &s.output)?;
    std::thread::sleep(WARM_UP);
    let joined_at = now_ms();
    members.push(start("bench-3")?);
    std::thread::sleep(WINDOW);
    let until = now_ms();
    feeder.stop();
    for m in members {
        m.stop();
    }
    // A fresh reader: one assigned earlier has end-of-partition events
    // queued from before the outputs began.
    let stamps = append_times(&output_reader(&opts.bootstrap, &s.output)?, &s.output)?;
    Ok(figure(system, &stamps, joined_at, until))
}

pub(super) type Reader = BaseConsumer<EndOfPartitionExpected>;

pub(super) fn output_reader(bootstrap: &str, topic: &str) -> Result<Reader, BenchError> {
    let consumer: Reader = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("weir-bench-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create_with_context(EndOfPartitionExpected)
        .map_err(err)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(err)?;
    }
    consumer.assign(&tpl).map_err(err)?;
    Ok(consumer)
}

pub(super) fn wait_for_every_partition(reader: &Reader, topic: &str) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let mut all = true;
        for p in 0..PARTITIONS {
            let (_, high) = reader
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map_err(err)?;
            all &= high > 0;
        }
        if all {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(err(format!(
                "no output on every partition of {topic} within 180 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every output record's append time, per partition.
pub(super) fn append_times(
    reader: &Reader,
    topic: &str,
) -> Result<BTreeMap<i32, Vec<i64>>, BenchError> {
    let mut stamps: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut at_end = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while at_end.len() < PARTITIONS as usize && Instant::now() < deadline {
        match reader.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                if let Some(ts) = m.timestamp().to_millis() {
                    stamps.entry(m.partition()).or_default().push(ts);
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => return Err(err(format!("reading {topic}: {e}"))),
            None => {}
        }
    }
    Ok(stamps)
}

/// Per partition, the longest gap between outputs within the window
/// (counting the window's edges) and where it ends, longest first.
pub(super) fn longest_gaps(
    stamps: &BTreeMap<i32, Vec<i64>>,
    from: i64,
    until: i64,
) -> Vec<(i64, i64)> {
    let mut gaps: Vec<(i64, i64)> = (0..PARTITIONS)
        .map(|p| {
            let mut times: Vec<i64> = stamps
                .get(&p)
                .map(|ts| {
                    ts.iter()
                        .copied()
                        .filter(|t| (from..=until).contains(t))
                        .collect()
                })
                .unwrap_or_default();
            times.sort_unstable();
            let mut edges = vec![from];
            edges.extend(times);
            edges.push(until);
            edges
                .windows(2)
                .map(|w| (w[1] - w[0], w[1]))
                .max()
                .unwrap_or((until - from, until))
        })
        .collect();
    gaps.sort_unstable_by(|a, b| b.cmp(a));
    gaps
}

fn figure(
    system: &'static str,
    stamps: &BTreeMap<i32, Vec<i64>>,
    from: i64,
    until: i64,
) -> RebalanceFigure {
    let gaps = longest_gaps(stamps, from, until);
    let (moved_gap, moved_resumed) = gaps[0];
    RebalanceFigure {
        system,
        lines_per_second: LINES_PER_SECOND,
        join_to_moved_task_running_seconds: (moved_resumed - from) as f64 / 1000.0,
        moved_task_pause_seconds: moved_gap as f64 / 1000.0,
        kept_task_max_pause_seconds: gaps.get(1).map_or(0.0, |g| g.0 as f64 / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_is_the_moved_task_and_the_next_a_kept_one() {
        let stamps: BTreeMap<i32, Vec<i64>> = [
            (0, vec![1000, 1010, 1020, 1030]),
            (1, vec![1000, 1500, 1510, 2000]),
            (
                2,
                vec![1000, 1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800, 1900],
            ),
            (3, vec![1000, 1010]),
        ]
        .into();
        let f = figure("weir", &stamps, 1000, 2000);
        // Partition 0 and 3 stop early: their gap runs to the window's end.
        assert_eq!(f.moved_task_pause_seconds, 0.99);
        assert_eq!(f.kept_task_max_pause_seconds, 0.97);
        assert_eq!(f.join_to_moved_task_running_seconds, 1.0);
    }
}
