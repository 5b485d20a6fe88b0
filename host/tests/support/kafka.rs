//! The real broker: `WEIR_TEST_BOOTSTRAP`, or one started by
//! `scripts/kafka` for this test process (and stopped when it exits), plus
//! small rdkafka helpers to create topics, produce and read back.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

pub fn bootstrap() -> &'static str {
    static BOOTSTRAP: OnceLock<String> = OnceLock::new();
    BOOTSTRAP.get_or_init(|| {
        if let Ok(b) = std::env::var("WEIR_TEST_BOOTSTRAP")
            && !b.is_empty()
        {
            return b;
        }
        let pid = std::process::id().to_string();
        let stdout = scripts_kafka(&["start", "--stop-with", &pid]);
        stdout.lines().last().unwrap().trim().to_string()
    })
}

/// Runs `scripts/kafka ARGS` on the test broker's directory
/// (`WEIR_KAFKA_DIR`, else `<target>/test-kafka`); returns its stdout.
fn scripts_kafka(args: &[&str]) -> String {
    let out = scripts_kafka_with_input(args, "");
    assert!(
        out.status.success(),
        "scripts/kafka {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `scripts/kafka ARGS` with `input` on its stdin, on the test
/// broker's directory; returns what it did, failed or not.
pub fn scripts_kafka_with_input(args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write as _;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let dir = std::env::var("WEIR_KAFKA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or(repo.join("target"))
                .join("test-kafka")
        });
    let mut child = Command::new(repo.join("scripts/kafka"))
        .args(args)
        .env("WEIR_KAFKA_DIR", &dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running scripts/kafka");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().expect("running scripts/kafka")
}

/// Stops the test broker, keeps it down for `down`, and starts it again on
/// the same data directory and port (a broker restart, as in production).
pub fn restart_broker(down: Duration) {
    bootstrap();
    scripts_kafka(&["stop"]);
    std::thread::sleep(down);
    scripts_kafka(&["start"]);
}

fn client() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap());
    c
}

pub fn create_topic(topic: &str, partitions: i32) {
    create_topic_with(topic, partitions, &[]);
}

/// Creates `topic` with topic configs, e.g. `("cleanup.policy", "delete")`.
pub fn create_topic_with(topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = client().create().unwrap();
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        new = new.set(key, value);
    }
    let results =
        futures_executor::block_on(admin.create_topics([&new], &AdminOptions::new())).unwrap();
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
    }
}

/// Produces `(partition, key, value)` records and waits for them.
pub fn produce(topic: &str, records: &[(Option<i32>, &str, &[u8])]) {
    send_all(records.iter().map(|(partition, key, value)| {
        let record = BaseRecord::to(topic).key(*key).payload(*value);
        match partition {
            Some(p) => record.partition(*p),
            None => record,
        }
    }));
}

/// Produces `(partition, key, value, timestamp ms)` records and waits.
#[allow(dead_code)]
pub fn produce_at(topic: &str, records: &[(i32, &str, &[u8], i64)]) {
    send_all(records.iter().map(|(partition, key, value, timestamp)| {
        BaseRecord::to(topic)
            .key(*key)
            .payload(*value)
            .partition(*partition)
            .timestamp(*timestamp)
    }));
}

fn send_all<'a>(records: impl Iterator<Item = BaseRecord<'a, str, [u8]>>) {
    let producer: BaseProducer = client().set("linger.ms", "5").create().unwrap();
    for mut record in records {
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(_), back)) => {
                    producer.poll(Duration::from_millis(50));
                    record = back;
                }
                Err((e, _)) => panic!("produce: {e}"),
            }
        }
    }
    // Not rust-rdkafka's flush, which waits 100 ms a step.
    weir::kafka::flush(&producer, Duration::from_secs(30)).unwrap();
}

/// Every committed record of `topic` as `(partition, key, value)`, in
/// offset order per partition.
pub fn read_all(topic: &str) -> Vec<(i32, String, String)> {
    let consumer: BaseConsumer = client()
        .set("group.id", "weir-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions = metadata.topics()[0].partitions().len();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut at_end = 0;
    let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
    // A broker that has just restarted: librdkafka reports the dropped
    // connection and reconnects by itself.
    let reconnect_by = std::time::Instant::now() + Duration::from_secs(30);
    while at_end < partitions {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => out.push((m.partition(), text(m.key()), text(m.payload()))),
            Some(Err(KafkaError::PartitionEOF(_))) => at_end += 1,
            Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown,
            ))) if std::time::Instant::now() < reconnect_by => {}
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => panic!("reading {topic}: no end of partition within 10 s"),
        }
    }
    out
}

/// The last value per key of a `key -> value` topic (a changelog view).
pub fn latest(topic: &str) -> BTreeMap<String, String> {
    read_all(topic)
        .into_iter()
        .map(|(_, k, v)| (k, v))
        .collect()
}

/// The group's committed offset of `topic`/`partition`, if any.
pub fn committed_offset(group: &str, topic: &str, partition: i32) -> Option<i64> {
    let consumer: BaseConsumer = client().set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    match committed.find_partition(topic, partition)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

/// Whether the broker has `topic` (listing all topics, so asking never
/// creates it).
pub fn topic_exists(topic: &str) -> bool {
    let consumer: BaseConsumer = client().create().unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    metadata.topics().iter().any(|t| t.name() == topic)
}

/// The sum of `topic`'s partitions' end offsets (0 if it does not exist).
pub fn end_offsets(topic: &str) -> i64 {
    let consumer: BaseConsumer = client().create().unwrap();
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) else {
        return 0;
    };
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    (0..partitions as i32)
        .filter_map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .ok()
        })
        .map(|(_, high)| high)
        .sum()
}

/// The end offset of `topic`/`partition` (0 if unknown).
pub fn end_offset(topic: &str, partition: i32) -> i64 {
    let consumer: BaseConsumer = client().create().unwrap();
    consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .map_or(0, |(_, high)| high)
}
