//! The Kafka side of [`ChangelogConsumer`]: one assign-only, `read_committed`
//! rdkafka consumer per changelog topic, reporting the end of each
//! partition. Knows nothing of tasks or stores.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{ChangelogConsumer, Fetched};
use crate::client::ClientError;
use crate::config::Config;
use crate::kafka::EndOfPartitionExpected;

pub struct KafkaChangelog {
    topic: String,
    consumer: BaseConsumer<EndOfPartitionExpected>,
}

impl KafkaChangelog {
    pub fn new(config: &Config, thread: usize, topic: &str) -> Result<Self, KafkaError> {
        let consumer = crate::kafka::restore_consumer(config, thread)
            .create_with_context(EndOfPartitionExpected)?;
        Ok(KafkaChangelog {
            topic: topic.to_string(),
            consumer,
        })
    }
}

impl ChangelogConsumer for KafkaChangelog {
    fn watermarks(&self, partition: i32, timeout: Duration) -> Result<(i64, i64), ClientError> {
        Ok(self
            .consumer
            .fetch_watermarks(&self.topic, partition, timeout)?)
    }

    fn assign(&mut self, from: &[(i32, i64)]) -> Result<(), ClientError> {
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in from {
            tpl.add_partition_offset(&self.topic, *partition, Offset::Offset(*offset))?;
        }
        Ok(self.consumer.assign(&tpl)?)
    }

    fn poll(&mut self, timeout: Duration) -> Option<Result<Fetched, ClientError>> {
        Some(match self.consumer.poll(timeout)? {
            Ok(message) => Ok(Fetched::Record {
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
            }),
            Err(KafkaError::PartitionEOF(partition)) => Ok(Fetched::End { partition }),
            Err(error) => Err(error.into()),
        })
    }

    fn position(&self, partition: i32) -> Option<i64> {
        match self
            .consumer
            .position()
            .ok()?
            .find_partition(&self.topic, partition)?
            .offset()
        {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }

    fn cached_high_watermark(&self, partition: i32) -> Option<i64> {
        crate::kafka::cached_high_watermark(&self.consumer, &self.topic, partition)
    }
}
