//! Weir's own paths into librdkafka, against the real broker: records
//! produced through topic handles (`weir::kafka::TopicHandles`, with a
//! queue small enough to fill) and read back a batch at a time
//! (`weir::kafka::BatchConsumer`), every field compared, delivery reports
//! carrying each record's opaque, a partition's end naming the offset
//! reading goes on from, and librdkafka's partitioner agreeing with the
//! host's own placement of keyed records.

mod support;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message as _, Offset, TopicPartitionList};
use support::kafka::{bootstrap, create_topic};
use support::unique;
use weir::kafka::{BatchConsumer, RawRecord, TopicHandles};

const RECORDS: usize = 600;

/// Delivery reports by opaque: (partition, offset).
#[derive(Default)]
struct Reports(Mutex<BTreeMap<usize, (i32, i64)>>);

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let message = result.as_ref().expect("every record is delivered");
        let mut reports = self.0.lock().unwrap();
        reports.insert(opaque, (message.partition(), message.offset()));
    }
}

/// What record `i` is sent with.
struct Expected {
    /// Chosen (even `i`: partition 1), or by key hash.
    partition: Option<i32>,
    key: String,
    /// Null on every fifth.
    value: Option<Vec<u8>>,
    /// On every third.
    headers: Vec<(String, Vec<u8>)>,
    timestamp: i64,
}

fn expected(i: usize) -> Expected {
    Expected {
        partition: i.is_multiple_of(2).then_some(1),
        key: format!("key-{i}"),
        value: (!i.is_multiple_of(5)).then(|| format!("value-{i}").into_bytes()),
        headers: match i % 3 {
            0 => vec![
                ("h1".to_string(), vec![i as u8]),
                ("h2".to_string(), Vec::new()),
            ],
            _ => Vec::new(),
        },
        timestamp: 1_700_000_000_000 + i as i64,
    }
}

#[test]
fn records_produced_through_topic_handles_read_back_in_batches_field_for_field() {
    let topic = unique("raw-clients");
    create_topic(&topic, 2);

    let producer: BaseProducer<Reports> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("queue.buffering.max.messages", "10")
        .set("linger.ms", "1")
        .create_with_context(Reports::default())
        .unwrap();
    let mut handles = TopicHandles::new(&producer).unwrap();
    let mut queue_full = 0;
    for i in 0..RECORDS {
        let want = expected(i);
        let pairs: Vec<(&str, &[u8])> = (want.headers.iter())
            .map(|(k, v)| (k.as_str(), &v[..]))
            .collect();
        let record = RawRecord {
            topic: &topic,
            partition: want.partition,
            key: Some(want.key.as_bytes()),
            value: want.value.as_deref(),
            headers: &pairs,
            timestamp: Some(want.timestamp),
            opaque: i + 1,
        };
        loop {
            match handles.send(&record) {
                Ok(()) => break,
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    queue_full += 1;
                    producer.poll(Duration::from_millis(10));
                }
                Err(e) => panic!("record {i}: {e}"),
            }
        }
    }
    weir::kafka::flush(&producer, Duration::from_secs(30)).unwrap();
    producer.poll(Duration::ZERO);
    assert!(queue_full > 0, "a queue of 10 never filled");
    let reports = std::mem::take(&mut *producer.context().0.lock().unwrap());
    assert_eq!(
        reports.len(),
        RECORDS,
        "one report per record, by its opaque"
    );
    assert!(reports.keys().copied().eq(1..=RECORDS));
    drop(handles);

    let consumer: BaseConsumer<DefaultConsumerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("raw-clients-reader"))
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut consumer = BatchConsumer::new(consumer).unwrap();
    let mut read = Vec::new();
    let mut ends = BTreeMap::new();
    let started = Instant::now();
    while ends.len() < 2 && started.elapsed() < Duration::from_secs(30) {
        consumer.read(Duration::from_millis(200), 100, |m| match m.error() {
            None => read.push((
                m.topic().to_string(),
                m.partition(),
                m.offset(),
                m.key().map(<[u8]>::to_vec),
                m.payload().map(<[u8]>::to_vec),
                (m.headers().into_iter())
                    .map(|(k, v)| (k, v.unwrap_or_default().to_vec()))
                    .collect::<Vec<_>>(),
                m.timestamp(),
            )),
            Some(KafkaError::PartitionEOF(p)) => {
                ends.insert(p, m.offset());
            }
            Some(e) => panic!("consumer error: {e}"),
        });
    }
    assert!(consumer.client_errors().is_empty());
    assert_eq!(ends.len(), 2, "both partitions' ends reported");
    assert_eq!(read.len(), RECORDS);
    for (t, partition, offset, key, value, headers, timestamp) in read {
        assert_eq!(t, topic);
        let i: usize = String::from_utf8(key.unwrap())
            .unwrap()
            .trim_start_matches("key-")
            .parse()
            .unwrap();
        let want = expected(i);
        if let Some(chosen) = want.partition {
            assert_eq!(partition, chosen, "record {i}");
        }
        assert_eq!(
            reports[&(i + 1)],
            (partition, offset),
            "record {i}'s report"
        );
        assert_eq!(value, want.value, "record {i}");
        assert_eq!(headers, want.headers, "record {i}");
        assert_eq!(timestamp, want.timestamp, "record {i}");
        assert!(
            offset < ends[&partition],
            "record {i} before its partition's end"
        );
    }
    // librdkafka counts an end read in a batch as a record: its position
    // then lies one past the end, where a pause would resume it. The
    // source fetcher pauses from what it handed over instead
    // (`thread::kafka`); this shows the behaviour it works around.
    // (A list from librdkafka holds its partitions: dropped before the
    // consumer, whose destruction waits for them.)
    let positions = consumer.position().unwrap();
    for (partition, end) in &ends {
        let position = positions.find_partition(&topic, *partition).unwrap();
        assert_eq!(
            position.offset(),
            Offset::Offset(end + 1),
            "partition {partition}'s position"
        );
    }
    drop(positions);
    for (partition, end) in ends {
        let last = reports
            .values()
            .filter(|(p, _)| *p == partition)
            .map(|(_, o)| *o)
            .max();
        assert_eq!(
            Some(end),
            last.map(|o| o + 1),
            "partition {partition}'s end"
        );
    }
    let back = consumer.into_inner();
    drop(back);
}

/// The host places a repartition's keyed records itself with
/// `partition_for_key`; librdkafka's `murmur2_random`, which its producer
/// is configured with, must put them in the same partition (else records
/// of one key would reach two tasks depending on the path).
#[test]
fn keyed_records_land_where_partition_for_key_says() {
    const PARTITIONS: i32 = 7;
    let topic = unique("raw-partitioner");
    create_topic(&topic, PARTITIONS);
    let producer: BaseProducer<Reports> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "1")
        .create_with_context(Reports::default())
        .unwrap();
    let mut handles = TopicHandles::new(&producer).unwrap();
    let keys: Vec<String> = (0..300)
        .map(|i| format!("w{}", i * 7919 % 50_000))
        .collect();
    for (i, key) in keys.iter().enumerate() {
        let record = RawRecord {
            topic: &topic,
            partition: None,
            key: Some(key.as_bytes()),
            value: Some(b"1"),
            headers: &[],
            timestamp: None,
            opaque: i + 1,
        };
        handles.send(&record).unwrap();
    }
    weir::kafka::flush(&producer, Duration::from_secs(30)).unwrap();
    producer.poll(Duration::ZERO);
    let reports = std::mem::take(&mut *producer.context().0.lock().unwrap());
    assert_eq!(reports.len(), keys.len());
    let mut used = std::collections::BTreeSet::new();
    for (i, key) in keys.iter().enumerate() {
        let (partition, _) = reports[&(i + 1)];
        assert_eq!(
            partition,
            weir::kafka::partition_for_key(key.as_bytes(), PARTITIONS),
            "key {key}"
        );
        used.insert(partition);
    }
    assert_eq!(
        used.len(),
        PARTITIONS as usize,
        "keys spread over every partition"
    );
}

/// A commit's flush (`weir::kafka::flush`) makes the producer send what
/// would otherwise linger for a minute, longer than the flush may take, and returns with every delivery
/// report served, none left for a later poll: it sleeps on librdkafka's
/// wake-up for the report queue rather than polling in a loop.
#[test]
fn a_flush_sends_what_lingers_and_returns_with_every_report_served() {
    let topic = unique("raw-flush");
    create_topic(&topic, 2);
    let producer: BaseProducer<Reports> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("linger.ms", "60000")
        .create_with_context(Reports::default())
        .unwrap();
    let mut handles = TopicHandles::new(&producer).unwrap();
    for round in 0..3 {
        for i in 0..200 {
            let opaque = round * 200 + i + 1;
            let record = RawRecord {
                topic: &topic,
                partition: Some((i % 2) as i32),
                key: Some(b"k"),
                value: Some(b"v"),
                headers: &[],
                timestamp: None,
                opaque,
            };
            handles.send(&record).unwrap();
        }
        weir::kafka::flush(&producer, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("flush {round}: {e}"));
        assert_eq!(producer.in_flight_count(), 0, "flush {round}");
        let reports = producer.context().0.lock().unwrap();
        assert_eq!(
            reports.len(),
            (round + 1) * 200,
            "flush {round}: every report served by the flush itself"
        );
    }
}

/// librdkafka refuses a whole incremental unassign that names one partition
/// the consumer does not have, and the others stay assigned: why the
/// source fetcher removes only partitions still assigned (`thread::kafka`).
#[test]
fn an_unassign_naming_one_unassigned_partition_is_refused_whole() {
    let topic = unique("unassign");
    create_topic(&topic, 3);
    let consumer: BaseConsumer<DefaultConsumerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("unassign-group"))
        .create()
        .unwrap();
    let mut two = TopicPartitionList::new();
    for p in [0, 1] {
        two.add_partition_offset(&topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.incremental_assign(&two).unwrap();
    let mut stale = TopicPartitionList::new();
    stale.add_partition(&topic, 1);
    stale.add_partition(&topic, 2);
    assert!(consumer.incremental_unassign(&stale).is_err());
    let still: Vec<i32> = {
        // (Dropped before the consumer: see the test above.)
        let assignment = consumer.assignment().unwrap();
        assignment
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect()
    };
    assert_eq!(still, vec![0, 1], "nothing was unassigned");
}
