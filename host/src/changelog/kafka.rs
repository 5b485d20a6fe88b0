//! The Kafka side of [`ChangelogConsumer`]: one assign-only, `read_committed`
//! rdkafka consumer per changelog topic, reporting the end of each
//! partition, read a batch of messages per librdkafka call. Knows nothing
//! of tasks or stores.

use std::collections::VecDeque;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::{ChangelogConsumer, Fetched};
use crate::client::ClientError;
use crate::config::Config;
use crate::kafka::{BatchConsumer, EndOfPartitionExpected};

/// Messages read from librdkafka at a time.
const READ: usize = 1024;

pub struct KafkaChangelog {
    topic: String,
    consumer: BatchConsumer<EndOfPartitionExpected>,
    /// Read from librdkafka, not yet polled.
    read: VecDeque<Result<Fetched, ClientError>>,
}

impl KafkaChangelog {
    pub fn new(config: &Config, thread: usize, topic: &str) -> Result<Self, KafkaError> {
        let consumer = crate::kafka::restore_consumer(config, thread)
            .create_with_context(EndOfPartitionExpected)?;
        Ok(KafkaChangelog {
            topic: topic.to_string(),
            consumer: BatchConsumer::new(consumer)?,
            read: VecDeque::with_capacity(READ),
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
        // What was read for the old assignment is of no use to the reader,
        // which skips records of partitions it no longer reads.
        self.read.clear();
        Ok(self.consumer.assign(&tpl)?)
    }

    fn poll(&mut self, timeout: Duration) -> Option<Result<Fetched, ClientError>> {
        if self.read.is_empty() {
            let read = &mut self.read;
            self.consumer.read(timeout, READ, |message| {
                read.push_back(match message.error() {
                    None => Ok(Fetched::Record {
                        partition: message.partition(),
                        offset: message.offset(),
                        key: message.key().map(<[u8]>::to_vec),
                        value: message.payload().map(<[u8]>::to_vec),
                    }),
                    Some(KafkaError::PartitionEOF(partition)) => Ok(Fetched::End {
                        partition,
                        next: message.offset(),
                    }),
                    Some(error) => Err(error.into()),
                });
            });
            read.extend(
                (self.consumer.client_errors().into_iter()).map(|e| Err(ClientError::new(e))),
            );
        }
        self.read.pop_front()
    }

    fn cached_high_watermark(&self, partition: i32) -> Option<i64> {
        crate::kafka::cached_high_watermark(&self.consumer, &self.topic, partition)
    }
}
