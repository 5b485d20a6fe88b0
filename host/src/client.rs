//! A Kafka client's failure as it crosses the seams between the host's
//! parts ([`crate::changelog::ChangelogConsumer`], the commit
//! `Collector`, the group's `SourceConsumer`): said once, as text. The
//! seams and their in-memory implementations (the offline test driver's)
//! then build without librdkafka; only the rdkafka implementations make
//! one, from the client's own error.

/// What a Kafka client reported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    message: String,
}

impl ClientError {
    pub fn new(message: impl Into<String>) -> Self {
        ClientError {
            message: message.into(),
        }
    }
}

#[cfg(feature = "server")]
impl From<rdkafka::error::KafkaError> for ClientError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        ClientError::new(e.to_string())
    }
}
