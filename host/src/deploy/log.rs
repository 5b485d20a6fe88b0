//! The deployment log: the compacted topic `<application.id>-deployments`
//! that every instance of the application reads, so a deploy to any one of
//! them reaches all, and a new or restarted instance starts on the live
//! version.
//!
//! Component bytes travel in the log itself, in 512 KiB chunks keyed
//! `component/<sha256>/<index>/<count>` (under Kafka's default 1 MiB message
//! limit, no shared blob store to run), followed by the topology record
//! keyed `topology/<name>` holding the whole version history as JSON.
//! Compaction keeps every chunk (distinct keys) and the latest history per
//! name. A reader thread tails the topic from the beginning, assembles
//! chunks into the local [`ComponentCache`], and publishes the records.
//! Must never decide what runs: it reports what the log says.
//!
//! Writes are linearizable. Every write is one transaction of a producer
//! with the application's fixed `transactional.id`
//! (`<application.id>-deployments-writer`): starting one fences any other
//! instance's write still in flight, and the writer then reads the log to
//! its end before deciding anything ([`DeploymentLog::begin_write`]). So
//! two writers never both commit a decision made on the same state.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::cache::ComponentCache;
use super::model::TopologyRecord;
use crate::config::Config;
use crate::kafka::EndOfPartitionExpected;

const CHUNK: usize = 512 * 1024;
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("deployment log `{topic}`: {reason}")]
    Kafka { topic: String, reason: String },
    #[error("deployment log `{topic}` was not read to its end within {timeout:?}")]
    NotCaughtUp { topic: String, timeout: Duration },
    /// Another instance began a write to the log while this one was under
    /// way, so this one was not committed.
    #[error(
        "deployment log `{topic}`: a concurrent write through another instance fenced this one"
    )]
    Fenced { topic: String },
}

#[derive(Debug, Default)]
struct State {
    topologies: BTreeMap<String, TopologyRecord>,
    /// Bumped on every change, so waiters can tell.
    revision: u64,
    caught_up: bool,
    /// The reader's position: every offset below it has been applied.
    position: i64,
    assembling: HashMap<String, Vec<Option<Vec<u8>>>>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct DeploymentLog {
    topic: String,
    /// Settings of each write's transactional producer.
    writer: ClientConfig,
    shared: Arc<Shared>,
}

/// One transaction on the log, begun by [`DeploymentLog::begin_write`].
/// Dropped without [`LogWrite::commit`], it writes nothing.
pub struct LogWrite<'a> {
    log: &'a DeploymentLog,
    producer: BaseProducer,
    committed: bool,
}

impl Drop for LogWrite<'_> {
    /// An unfinished write is aborted at once, so its open transaction does
    /// not hold every reader of the log back until it times out.
    fn drop(&mut self) {
        if !self.committed {
            let _ = self.producer.abort_transaction(Duration::from_secs(5));
        }
    }
}

impl Drop for DeploymentLog {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// The log's topic name for an application.
pub fn topic_name(application_id: &str) -> String {
    format!("{application_id}-deployments")
}

impl DeploymentLog {
    /// Creates the topic if needed and starts reading it from the beginning.
    pub fn open(config: &Config, cache: Arc<ComponentCache>) -> Result<Self, LogError> {
        let topic = topic_name(&config.application_id);
        let kafka = |reason: String| LogError::Kafka {
            topic: topic.clone(),
            reason,
        };
        crate::topics::ensure_internal(config, &topic).map_err(|e| kafka(e.to_string()))?;
        let mut writer = crate::kafka::admin(config);
        writer
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.max.bytes", "1000000")
            .set(
                "transactional.id",
                format!("{}-deployments-writer", config.application_id),
            )
            .set("transaction.timeout.ms", "60000");
        let consumer: BaseConsumer<EndOfPartitionExpected> = crate::kafka::admin(config)
            .set(
                "group.id",
                format!("{}-deployments-reader", config.application_id),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .create_with_context(EndOfPartitionExpected)
            .map_err(|e| kafka(e.to_string()))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)
            .map_err(|e| kafka(e.to_string()))?;
        consumer.assign(&tpl).map_err(|e| kafka(e.to_string()))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let reader = shared.clone();
        std::thread::Builder::new()
            .name("weir-deployments".into())
            .spawn(move || read(consumer, reader, cache))
            .map_err(|e| kafka(e.to_string()))?;
        Ok(DeploymentLog {
            topic,
            writer,
            shared,
        })
    }

    /// Waits until `done` holds for the reader's state; false on timeout.
    fn wait_until(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> bool {
        let state = self.shared.lock();
        let (state, _) = self
            .shared
            .changed
            .wait_timeout_while(state, timeout, |s| !done(s))
            .unwrap_or_else(|p| p.into_inner());
        done(&state)
    }

    /// Waits until the reader has reached the end of the log once.
    pub fn wait_caught_up(&self, timeout: Duration) -> Result<(), LogError> {
        if self.wait_until(timeout, |s| s.caught_up) {
            Ok(())
        } else {
            Err(LogError::NotCaughtUp {
                topic: self.topic.clone(),
                timeout,
            })
        }
    }

    /// The current records and the revision they are at.
    pub fn snapshot(&self) -> (u64, BTreeMap<String, TopologyRecord>) {
        let state = self.shared.lock();
        (state.revision, state.topologies.clone())
    }

    /// Waits until the revision passes `seen` or `timeout` elapses.
    pub fn wait_for_change(&self, seen: u64, timeout: Duration) -> u64 {
        let state = self.shared.lock();
        let (state, _) = self
            .shared
            .changed
            .wait_timeout_while(state, timeout, |s| s.revision <= seen)
            .unwrap_or_else(|p| p.into_inner());
        state.revision
    }

    fn kafka_error(&self, e: impl std::fmt::Display) -> LogError {
        LogError::Kafka {
            topic: self.topic.clone(),
            reason: e.to_string(),
        }
    }

    /// Begins a write: a transaction that fences any other instance's
    /// write in flight, then the log read to its end, so a [`snapshot`]
    /// taken now shows every write committed before this one.
    ///
    /// [`snapshot`]: DeploymentLog::snapshot
    pub fn begin_write(&self) -> Result<LogWrite<'_>, LogError> {
        let producer: BaseProducer = self.writer.create().map_err(|e| self.kafka_error(e))?;
        producer
            .init_transactions(SEND_TIMEOUT)
            .map_err(|e| self.kafka_error(e))?;
        producer
            .begin_transaction()
            .map_err(|e| self.kafka_error(e))?;
        let (_, end) = producer
            .client()
            .fetch_watermarks(&self.topic, 0, SEND_TIMEOUT)
            .map_err(|e| self.kafka_error(e))?;
        if !self.wait_until(SEND_TIMEOUT, |s| s.caught_up && s.position >= end) {
            return Err(LogError::NotCaughtUp {
                topic: self.topic.clone(),
                timeout: SEND_TIMEOUT,
            });
        }
        Ok(LogWrite {
            log: self,
            producer,
            committed: false,
        })
    }
}

/// A failure of the write's own transaction: fenced by a concurrent
/// writer, or a Kafka error.
fn write_error(topic: &str, e: KafkaError) -> LogError {
    use rdkafka::types::RDKafkaErrorCode as Code;
    match e.rdkafka_error_code() {
        // Once fenced, librdkafka fails every later call with `_FATAL`: for
        // this producer, whose transactional id only writers of this log
        // use, fencing is what makes it fatal.
        Some(Code::Fenced | Code::ProducerFenced | Code::InvalidProducerEpoch | Code::Fatal) => {
            LogError::Fenced {
                topic: topic.to_string(),
            }
        }
        _ => LogError::Kafka {
            topic: topic.to_string(),
            reason: e.to_string(),
        },
    }
}

impl LogWrite<'_> {
    fn send(&self, key: &str, value: &[u8]) -> Result<(), LogError> {
        let topic = &self.log.topic;
        let mut record = BaseRecord::to(topic).key(key).payload(value);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    back,
                )) => {
                    crate::kafka::serve_delivery_reports(&self.producer);
                    record = back;
                }
                Err((e, _)) => return Err(write_error(topic, e)),
            }
        }
    }

    /// Writes a component's bytes, in chunks.
    pub fn publish_component(&self, sha: &str, bytes: &[u8]) -> Result<(), LogError> {
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            self.send(&format!("component/{sha}/{i}/{}", chunks.len()), chunk)?;
        }
        Ok(())
    }

    /// Writes `record`, commits the transaction and waits until this
    /// instance's reader has seen it, so what the caller reports next is
    /// what the log says.
    pub fn commit(mut self, record: &TopologyRecord) -> Result<(), LogError> {
        let log = self.log;
        let json = serde_json::to_vec(record).map_err(|e| log.kafka_error(e))?;
        self.send(&format!("topology/{}", record.name), &json)?;
        self.producer
            .commit_transaction(SEND_TIMEOUT)
            .map_err(|e| write_error(&log.topic, e))?;
        self.committed = true;
        // This record, or a later write's (revisions only grow).
        if log.wait_until(SEND_TIMEOUT, |s| {
            s.topologies
                .get(&record.name)
                .is_some_and(|r| r.revision >= record.revision)
        }) {
            Ok(())
        } else {
            Err(log.kafka_error("the record was written but not read back"))
        }
    }
}

fn read(
    consumer: BaseConsumer<EndOfPartitionExpected>,
    shared: Arc<Shared>,
    cache: Arc<ComponentCache>,
) {
    while !shared.stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(message)) => {
                let next = message.offset() + 1;
                let key = message
                    .key()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default()
                    .into_owned();
                apply(&shared, &cache, &key, message.payload());
                let mut state = shared.lock();
                state.position = state.position.max(next);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {
                // At the end, past any transaction markers.
                let position = consumer
                    .position()
                    .ok()
                    .and_then(|tpl| tpl.elements().first().map(|e| e.offset()))
                    .and_then(|o| o.to_raw());
                let mut state = shared.lock();
                if let Some(p) = position {
                    state.position = state.position.max(p);
                }
                state.caught_up = true;
                state.revision += 1;
                shared.changed.notify_all();
            }
            Some(Err(e)) => tracing::warn!(error = %e, "reading the deployment log"),
        }
    }
}

fn apply(shared: &Shared, cache: &ComponentCache, key: &str, value: Option<&[u8]>) {
    let mut state = shared.lock();
    if let Some(name) = key.strip_prefix("topology/") {
        match value.map(serde_json::from_slice::<TopologyRecord>) {
            None => {
                state.topologies.remove(name);
            }
            Some(Ok(record)) => {
                state.topologies.insert(name.to_string(), record);
            }
            Some(Err(e)) => {
                tracing::warn!(key, error = %e, "ignoring an unreadable deployment record");
                return;
            }
        }
    } else if let Some(rest) = key.strip_prefix("component/") {
        let parts: Vec<&str> = rest.split('/').collect();
        let (Some(sha), Some(Ok(index)), Some(Ok(count))) = (
            parts.first(),
            parts.get(1).map(|i| i.parse::<usize>()),
            parts.get(2).map(|c| c.parse::<usize>()),
        ) else {
            tracing::warn!(key, "ignoring an unreadable component chunk");
            return;
        };
        if cache.has(sha) || index >= count || count == 0 {
            return;
        }
        let chunks = state
            .assembling
            .entry(sha.to_string())
            .or_insert_with(|| vec![None; count]);
        if chunks.len() != count {
            return;
        }
        chunks[index] = value.map(<[u8]>::to_vec);
        if chunks.iter().any(Option::is_none) {
            return;
        }
        let bytes: Vec<u8> = state
            .assembling
            .remove(*sha)
            .into_iter()
            .flatten()
            .flatten()
            .flatten()
            .collect();
        match cache.store(&bytes) {
            Ok(stored) if stored == *sha => {}
            Ok(other) => {
                tracing::warn!(expected = sha, got = %other, "component chunks do not match their hash")
            }
            Err(e) => tracing::warn!(sha, error = %e, "cannot store a component from the log"),
        }
    } else {
        return;
    }
    state.revision += 1;
    shared.changed.notify_all();
}
