//! Kafka client settings: the one place that turns a [`Config`] into
//! librdkafka properties for the group consumer, the restore consumer, the
//! producer and the admin client. `kafka.*` keys from the config are applied
//! last, so an operator can override anything here. Reading consumers a
//! batch at a time is [`BatchConsumer`]'s (`batch`); producing through a
//! topic handle, [`TopicHandles`]' (`produce`).

use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};

use crate::config::{Config, ProcessingGuarantee};

mod batch;
mod flush;
mod produce;

pub use crate::partitioner::{murmur2, partition_for_key};
pub use batch::{BatchConsumer, Message};
pub use flush::{flush, serve_delivery_reports};
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
/// languages; transactional under exactly-once, where it sends everything
/// and reports every delivery. Under at-least-once it sends outputs and
/// repartition records and reports only failures: serving a report per
/// record (each a cache miss on a record the broker thread last touched)
/// was a tenth of word count's stream thread. Changelog records, whose
/// acknowledged offsets the commit needs, then go through
/// [`changelog_producer`].
pub fn producer(config: &Config, thread: usize) -> ClientConfig {
    let mut c = producer_named(config, &format!("-StreamThread-{}-producer", thread + 1));
    match config.processing_guarantee {
        ProcessingGuarantee::AtLeastOnce => {
            c.set("delivery.report.only.error", "true");
        }
        ProcessingGuarantee::ExactlyOnceV2 => {
            // Config validated both against the commit interval; librdkafka
            // requires message.timeout.ms <= transaction.timeout.ms.
            let timeout = config.transaction_timeout.as_millis().to_string();
            c.set("transactional.id", transactional_id(config, thread))
                .set("transaction.timeout.ms", &timeout)
                .set("message.timeout.ms", &timeout);
        }
    }
    overrides(c, config)
}

/// At-least-once only: the changelog producer of stream thread `thread`,
/// reporting every delivery (see [`producer`]).
pub fn changelog_producer(config: &Config, thread: usize) -> ClientConfig {
    let suffix = format!("-StreamThread-{}-changelog-producer", thread + 1);
    overrides(producer_named(config, &suffix), config)
}

fn producer_named(config: &Config, client_suffix: &str) -> ClientConfig {
    let mut c = base(config, client_suffix);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.messages", PRODUCER_QUEUE)
        .set("message.timeout.ms", "120000");
    c
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

    /// At-least-once: outputs report only failures, changelog records every
    /// delivery (their offsets are the commit's); exactly-once: one
    /// transactional producer reporting everything.
    #[test]
    fn only_the_changelog_reports_every_delivery_under_at_least_once() {
        let c = config("");
        let (records, changelog) = (producer(&c, 0), changelog_producer(&c, 0));
        assert_eq!(records.get("delivery.report.only.error"), Some("true"));
        assert_eq!(changelog.get("delivery.report.only.error"), None);
        assert_eq!(changelog.get("enable.idempotence"), Some("true"));
        assert_ne!(records.get("client.id"), changelog.get("client.id"));
        assert_eq!(records.get("transactional.id"), None);

        let mut c = config("");
        c.processing_guarantee = ProcessingGuarantee::ExactlyOnceV2;
        let records = producer(&c, 0);
        assert_eq!(records.get("delivery.report.only.error"), None);
        assert_eq!(
            records.get("transactional.id"),
            Some(transactional_id(&c, 0).as_str())
        );
    }
}
