//! Kafka client settings: the one place that turns a [`Config`] into
//! librdkafka properties for the group consumer, the restore consumer, the
//! producer and the admin client. `kafka.*` keys from the config are applied
//! last, so an operator can override anything here.

use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};

use crate::config::{Config, ProcessingGuarantee};

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

/// The source consumer of stream thread `thread`: `assign()` mode only
/// (Weir's own group membership decides which partitions it fetches), with
/// `group.id` set so assigned partitions start from the group's committed
/// offsets. It never joins the group and never commits: offsets go through
/// the membership with the generation.
pub fn source_consumer(config: &Config, thread: usize) -> ClientConfig {
    let mut c = base(config, &format!("-StreamThread-{}-consumer", thread + 1));
    c.set("group.id", &config.application_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", isolation(config));
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

/// An assign-only consumer for changelog restoration: no group, reports the
/// end of each partition.
pub fn restore_consumer(config: &Config, thread: usize) -> ClientConfig {
    let mut c = base(
        config,
        &format!("-StreamThread-{}-restore-consumer", thread + 1),
    );
    c.set("group.id", format!("{}-restore", config.application_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
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
        .set("queue.buffering.max.messages", "500000")
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

impl ClientContext for EndOfPartitionExpected {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::warn!(%error, reason, "kafka client error");
        }
    }
}

impl ConsumerContext for EndOfPartitionExpected {}
