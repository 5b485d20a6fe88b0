//! Kafka client settings: the one place that turns a [`Config`] into
//! librdkafka properties for the group consumer, the restore consumer, the
//! producer and the admin client. `kafka.*` keys from the config are applied
//! last, so an operator can override anything here. Reading consumers a
//! batch at a time is [`BatchConsumer`]'s (`batch`); producing through a
//! topic handle, [`TopicHandles`]' (`produce`).

use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};

use crate::config::{Config, ProcessingGuarantee};

mod batch;
mod produce;

pub use crate::partitioner::{murmur2, partition_for_key};
pub use batch::{BatchConsumer, Message};
pub use produce::{RawRecord, TopicHandles};

fn base(config: &Config, client_suffix: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap_servers);
    c.set("client.id", format!("{}{client_suffix}", config.client_id));
    c
}

fn overrides(mut c: ClientConfig, config: &Config) -> ClientConfig {
    for (k, v) in &config.kafka {
        c.set(k, v);
    }
    c
}

/// How long librdkafka waits before fetching again for a partition whose
/// local queue is above `queued.min.messages` (100,000). Its default,
/// 1000 ms, is longer than Weir takes to drain such a queue: a restore ran
/// at 150k records/s and sat idle most of each second; at 10 ms it read
/// 1.2M records/s on the same machine.
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// `queued.min.messages` of the source consumers: how many fetched records
/// librdkafka keeps ahead per partition. Its default, 100,000, is most of
/// a stateless processor's peak memory (each record a few hundred bytes
/// of librdkafka's own); 30,000 is still a tenth of a second's records per
/// partition at a million records/s, and filter-map ran as fast with it.
/// Restore consumers keep the default: a restore only reads.
const SOURCE_READ_AHEAD: &str = "30000";

/// `queue.buffering.max.messages` of the producers (librdkafka's default):
/// a producer ahead of its broker by more waits in [`serve_delivery_reports`]
/// instead of holding more records in memory.
const PRODUCER_QUEUE: &str = "100000";

/// How long one wait for delivery reports lasts in [`flush`] and
/// [`serve_delivery_reports`]: a poll of rust-rdkafka's `BaseProducer`
/// always runs its whole timeout, events or not.
const SERVE_STEP: Duration = Duration::from_millis(1);

/// Waits until every record `producer` sent is acknowledged and its
/// delivery report served, or `timeout` passes. Not rust-rdkafka's own
/// `flush`: that serves reports in 100 ms polls which always run their
/// full length, so every flush, and with it every commit, took at least
/// 100 ms (a processor swap paused processing ~104 ms, ~100 of them here).
///
/// librdkafka sends lingering records at once only while a call of its
/// `rd_kafka_flush` is under way, and with delivery reports as events (as
/// rust-rdkafka has them) that call only waits; serving the reports is
/// this thread's. So a helper thread holds one such call open for the
/// whole wait while this one serves the reports. With a zero-length call
/// per step instead, brokers woken after it returned waited out
/// `linger.ms` first: a commit's flush took 5–28 ms against 2–10 ms now
/// (a local broker under a steady input), most of a processor swap's
/// pause. The helper is a thread per flush, so once per commit.
pub fn flush<C: ProducerContext>(
    producer: &BaseProducer<C>,
    timeout: Duration,
) -> Result<(), KafkaError> {
    if producer.in_flight_count() == 0 {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    let native = NativeProducer(producer.client().native_ptr());
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    std::thread::scope(|s| {
        s.spawn(move || native.hold_flush(timeout_ms));
        while producer.in_flight_count() > 0 {
            if Instant::now() >= deadline {
                return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
            }
            producer.poll(SERVE_STEP);
        }
        // The helper's call returns as the count of records reaches zero.
        Ok(())
    })
}

/// A producer's librdkafka handle, for the helper thread of [`flush`].
struct NativeProducer(*mut rdkafka::bindings::rd_kafka_t);

// SAFETY: librdkafka handles are thread-safe; `flush` keeps the producer
// alive until the helper thread using this has been joined.
unsafe impl Send for NativeProducer {}

impl NativeProducer {
    /// One `rd_kafka_flush` call: brokers send what lingers while it
    /// lasts; it returns when no record is left unreported, or at
    /// `timeout_ms`.
    fn hold_flush(self, timeout_ms: i32) {
        // SAFETY: a live producer handle (see the `Send` impl); the call
        // only waits on the record count and wakes the broker threads.
        unsafe {
            rdkafka::bindings::rd_kafka_flush(self.0, timeout_ms);
        }
    }
}

/// Serves delivery reports for a moment: what a producer whose queue is
/// full waits on before sending again.
pub fn serve_delivery_reports<C: ProducerContext>(producer: &BaseProducer<C>) {
    producer.poll(SERVE_STEP);
}

/// The source consumer of stream thread `thread`: `assign()` mode only
/// (Weir's own group membership decides which partitions it fetches, and
/// from which offsets), with `group.id` set because librdkafka has a
/// consumer queue to read in batches only then. It never joins the group
/// and never commits: offsets go through the membership with the
/// generation.
pub fn source_consumer(config: &Config, thread: usize) -> ClientConfig {
    let mut c = base(config, &format!("-StreamThread-{}-consumer", thread + 1));
    c.set("group.id", &config.application_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Each partition's end, reported as it is reached: a task with
        // several sources waits for one still being read (`max.task.idle.ms`).
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation(config))
        .set("queued.min.messages", SOURCE_READ_AHEAD)
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
    overrides(c, config)
}

/// `group.instance.id` of a stream thread: the configured id, suffixed by
/// the thread number when there are several.
pub fn instance_id(config: &Config, thread: usize) -> String {
    if config.num_stream_threads == 1 {
        config.group_instance_id.clone()
    } else {
        format!("{}-{}", config.group_instance_id, thread + 1)
    }
}

/// An assign-only consumer for changelog restoration, reporting the end of
/// each partition. Its `group.id` is never joined: it gives the consumer
/// the queue a batch read needs.
pub fn restore_consumer(config: &Config, thread: usize) -> ClientConfig {
    let mut c = base(
        config,
        &format!("-StreamThread-{}-restore-consumer", thread + 1),
    );
    c.set("group.id", format!("{}-restore", config.application_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        // The end of a changelog (only transaction markers left) shows at
        // the next fetch's answer: keep the broker's wait short.
        .set("fetch.wait.max.ms", "100")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
    overrides(c, config)
}

/// The producer of stream thread `thread`: idempotent, partitioning keys as
/// Kafka's Java clients do (murmur2) so co-partitioning holds across
/// languages; transactional under exactly-once.
pub fn producer(config: &Config, thread: usize) -> ClientConfig {
    let mut c = base(config, &format!("-StreamThread-{}-producer", thread + 1));
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.messages", PRODUCER_QUEUE)
        .set("message.timeout.ms", "120000");
    if config.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2 {
        // Config validated both against the commit interval; librdkafka
        // requires message.timeout.ms <= transaction.timeout.ms.
        let timeout = config.transaction_timeout.as_millis().to_string();
        c.set("transactional.id", transactional_id(config, thread))
            .set("transaction.timeout.ms", &timeout)
            .set("message.timeout.ms", &timeout);
    }
    overrides(c, config)
}

/// Stable per thread, so a restarted instance fences its own zombie.
pub fn transactional_id(config: &Config, thread: usize) -> String {
    format!(
        "{}-{}-{}",
        config.application_id,
        instance_id(config, thread),
        thread + 1
    )
}

pub fn admin(config: &Config) -> ClientConfig {
    overrides(base(config, "-admin"), config)
}

fn isolation(config: &Config) -> &'static str {
    match config.processing_guarantee {
        ProcessingGuarantee::AtLeastOnce => "read_uncommitted",
        ProcessingGuarantee::ExactlyOnceV2 => "read_committed",
    }
}

/// Context of the assign-only consumers that read to the end of a
/// partition (restore, deployment log): reaching the end is how they know
/// they are done, so librdkafka's "end of partition" report is not logged
/// as an error.
pub struct EndOfPartitionExpected;

/// Whether `error` is librdkafka's report of a partition's end (as a
/// message's error, or in its `Global` form through a client's error
/// callback), which is news for a reader, not a fault.
pub fn is_partition_end(error: &KafkaError) -> bool {
    matches!(error, KafkaError::PartitionEOF(_))
        || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF)
}

impl ClientContext for EndOfPartitionExpected {
    fn error(&self, error: KafkaError, reason: &str) {
        if !is_partition_end(&error) {
            tracing::warn!(%error, reason, "kafka client error");
        }
    }
}

impl ConsumerContext for EndOfPartitionExpected {}

/// The high watermark of `topic`/`partition` as `consumer` last saw it in
/// a fetch response (no request to the broker), if it has seen one.
pub fn cached_high_watermark<C: ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    use rdkafka::bindings as rd;
    use rdkafka::consumer::Consumer;
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is live for the call (borrowed from
    // `consumer`), the topic string outlives it, and librdkafka only writes
    // the two out-parameters.
    let error = unsafe {
        rd::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (error == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

/// A consumer only for reading offsets (the group leader's view of each
/// changelog's end): no group, nothing fetched.
pub fn offsets_consumer(config: &Config) -> ClientConfig {
    let mut c = base(config, "-leader-offsets");
    c.set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    overrides(c, config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kafka: &str) -> Config {
        let text = format!(
            "application.id = \"wc\"\nbootstrap.servers = \"127.0.0.1:9092\"\n[kafka]\n{kafka}"
        );
        Config::from_map(crate::config::parse_toml(&text).unwrap(), Some("wc-0")).unwrap()
    }

    /// Weir's memory defaults hold unless `[kafka]` says otherwise, and
    /// only where they are meant to: restores keep librdkafka's read-ahead.
    #[test]
    fn read_ahead_and_producer_queue_default_and_yield_to_kafka_overrides() {
        let c = config("");
        let source = source_consumer(&c, 0);
        assert_eq!(source.get("queued.min.messages"), Some(SOURCE_READ_AHEAD));
        assert_eq!(restore_consumer(&c, 0).get("queued.min.messages"), None);
        assert_eq!(
            producer(&c, 0).get("queue.buffering.max.messages"),
            Some(PRODUCER_QUEUE)
        );
        let c = config(
            "\"queued.min.messages\" = \"5000\"\n\"queue.buffering.max.messages\" = \"7\"\n",
        );
        assert_eq!(
            source_consumer(&c, 0).get("queued.min.messages"),
            Some("5000")
        );
        assert_eq!(
            producer(&c, 0).get("queue.buffering.max.messages"),
            Some("7")
        );
    }
}
