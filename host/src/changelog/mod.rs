//! Restoring stores from their changelog topics ([`ChangelogReader`]).
//!
//! A store with a recorded changelog offset (local RocksDB after a restart:
//! RocksDB has already replayed its WAL on open) reads only the tail after
//! that offset; a store without one (no local state, or in-memory) replays
//! the whole changelog. A recorded offset outside the changelog's current
//! range means the local copy cannot be trusted: the caller wipes it and
//! restores in full.
//!
//! One assign-only consumer per changelog topic (so an end-of-partition
//! event names an unambiguous partition), polled a bounded amount per stream
//! loop so a long restore never starves the group consumer. Owns no offsets
//! and writes no store: it hands records to the task manager. The consumer
//! is the seam [`ChangelogConsumer`]: rdkafka in production (`kafka.rs`),
//! a [`MemoryLog`](crate::commit::MemoryLog) without a broker (`memory.rs`).
//!
//! Standby tasks use a reader of their own in *tail* mode: a tailed
//! partition stays registered at its end (reporting `CaughtUp` once each
//! time it gets there) and keeps applying what the active writes.
//!
//! A table's store restored from its source topic reads that topic only up
//! to a limit, the group's committed offset (`register_until`); its
//! standby is held there, unfetched, until the limit moves (`set_until`).
//!
//! Broker faults are transient here: a read error (broker restarting, all
//! brokers down, metadata not yet propagated for a just-created changelog)
//! is logged and that topic is polled again after a backoff; finding a
//! changelog's offsets is retried for up to `WATERMARK_RETRY_FOR`.

#[cfg(feature = "server")]
mod kafka;
mod memory;
mod read;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::ClientError;

#[cfg(feature = "server")]
pub use kafka::KafkaChangelog;
pub use memory::MemoryChangelog;

#[cfg(feature = "server")]
use crate::config::Config;
use crate::store::Write;
use crate::topology::TaskId;

/// What one poll of a changelog consumer gave.
#[derive(Debug)]
pub enum Fetched {
    Record {
        partition: i32,
        offset: i64,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
    },
    /// The partition's end (`enable.partition.eof`): nothing more to read
    /// now. `next` is where reading goes on, past any transaction markers
    /// and aborted records after the last record.
    End { partition: i32, next: i64 },
}

/// One changelog topic's consumer, as the reader uses it: assign-only,
/// `read_committed`, reporting partition ends.
pub trait ChangelogConsumer: Send {
    /// The partition's low and high offsets (a broker request).
    fn watermarks(&self, partition: i32, timeout: Duration) -> Result<(i64, i64), ClientError>;
    /// Reads exactly these partitions from these offsets from now on.
    fn assign(&mut self, from: &[(i32, i64)]) -> Result<(), ClientError>;
    fn poll(&mut self, timeout: Duration) -> Option<Result<Fetched, ClientError>>;
    /// The high offset as last seen in a fetch answer (no broker request).
    fn cached_high_watermark(&self, partition: i32) -> Option<i64>;
}

/// Makes the consumer of one changelog topic.
pub type ChangelogConsumers =
    Arc<dyn Fn(&str) -> Result<Box<dyn ChangelogConsumer>, RestoreError> + Send + Sync>;

/// Changelog consumers on the Kafka cluster of `config`.
#[cfg(feature = "server")]
pub fn kafka_consumers(config: &Config, thread: usize) -> ChangelogConsumers {
    let config = config.clone();
    Arc::new(move |topic: &str| {
        KafkaChangelog::new(&config, thread, topic)
            .map(|c| Box::new(c) as Box<dyn ChangelogConsumer>)
            .map_err(|source| RestoreError::Create {
                topic: topic.to_string(),
                source: source.into(),
            })
    })
}

const WATERMARK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the offsets of a changelog are retried before a restore fails.
const WATERMARK_RETRY_FOR: Duration = Duration::from_secs(300);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("changelog `{topic}` partition {partition}: {source}")]
    Kafka {
        topic: String,
        partition: i32,
        source: ClientError,
    },
    #[error("cannot create the restore consumer for `{topic}`: {source}")]
    Create { topic: String, source: ClientError },
}

/// How a store's restoration begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreStart {
    /// Local state already matches the changelog's end.
    UpToDate,
    /// Records will follow from `poll`, then `Done`.
    Restoring { from: i64, end: i64 },
    /// The recorded offset lies outside the changelog: wipe and re-register
    /// with no offset.
    Corrupted { recorded: i64, low: i64, high: i64 },
}

/// What one poll produced for one (task, store).
#[derive(Debug)]
pub enum RestoreEvent {
    Records {
        task: TaskId,
        store: usize,
        records: Vec<Write>,
        next_offset: i64,
    },
    /// Restored to the end seen at registration (logged with its rate).
    Done { task: TaskId, store: usize },
    /// A tailed partition reached the changelog's end (again).
    CaughtUp { task: TaskId, store: usize },
}

impl RestoreEvent {
    /// The task it is for.
    pub fn task(&self) -> TaskId {
        match self {
            RestoreEvent::Records { task, .. }
            | RestoreEvent::Done { task, .. }
            | RestoreEvent::CaughtUp { task, .. } => *task,
        }
    }
}

struct Restoring {
    task: TaskId,
    store: usize,
    store_name: String,
    next: i64,
    end: i64,
    restored: u64,
    started: Instant,
    last_report: Instant,
    /// Standby mode: stays registered at the end and keeps reading.
    tail: bool,
    /// Tail mode: at the end since the last record.
    at_end: bool,
    /// Where the restore stops short of the log's end (a store restored
    /// from its source stops at the committed input offset).
    until: Option<i64>,
    /// Tail mode: held at `until`, so not fetched.
    held: bool,
}

struct TopicReader {
    consumer: Box<dyn ChangelogConsumer>,
    partitions: BTreeMap<i32, Restoring>,
    assigned: bool,
    /// After a read error: not polled before this, and the next backoff.
    backoff: Option<(Instant, Duration)>,
}

pub struct ChangelogReader {
    consumers: ChangelogConsumers,
    topics: HashMap<String, TopicReader>,
    /// Read but not handed out yet ([`ChangelogReader::keep`]): the next
    /// [`ChangelogReader::poll`] returns these first.
    read_ahead: Vec<RestoreEvent>,
}

impl ChangelogReader {
    pub fn new(consumers: ChangelogConsumers) -> Self {
        ChangelogReader {
            consumers,
            topics: HashMap::new(),
            read_ahead: Vec::new(),
        }
    }

    fn reader(&mut self, topic: &str) -> Result<&mut TopicReader, RestoreError> {
        if !self.topics.contains_key(topic) {
            let consumer = (self.consumers)(topic)?;
            self.topics.insert(
                topic.to_string(),
                TopicReader {
                    consumer,
                    partitions: BTreeMap::new(),
                    assigned: false,
                    backoff: None,
                },
            );
        }
        Ok(self.topics.get_mut(topic).expect("inserted above"))
    }

    /// Starts restoring a store from its changelog, after `recorded` if
    /// the store has an offset.
    pub fn register(
        &mut self,
        at: StorePosition<'_>,
        recorded: Option<i64>,
    ) -> Result<RestoreStart, RestoreError> {
        self.register_as(at, recorded, None, false)
    }

    /// As [`ChangelogReader::register`], but the restore stops before
    /// offset `until` (a source topic restored up to the committed offset:
    /// what follows is processed again). A store already past it is up to
    /// date.
    pub fn register_until(
        &mut self,
        at: StorePosition<'_>,
        recorded: Option<i64>,
        until: i64,
    ) -> Result<RestoreStart, RestoreError> {
        self.register_as(at, recorded, Some(until), false)
    }

    /// Starts tailing a standby's store from its changelog: as
    /// [`ChangelogReader::register`], but the partition stays registered
    /// once caught up.
    pub fn register_tail(
        &mut self,
        at: StorePosition<'_>,
        recorded: Option<i64>,
    ) -> Result<RestoreStart, RestoreError> {
        self.register_as(at, recorded, None, true)
    }

    /// As [`ChangelogReader::register_tail`], holding at offset `until`
    /// (a standby of a store restored from its source goes no further than
    /// the active has committed) until [`ChangelogReader::set_until`]
    /// moves it on.
    pub fn register_tail_until(
        &mut self,
        at: StorePosition<'_>,
        recorded: Option<i64>,
        until: i64,
    ) -> Result<RestoreStart, RestoreError> {
        self.register_as(at, recorded, Some(until), true)
    }

    /// Moves the limit of `task`'s `store` on to `until` (never back); a
    /// tailed partition held at its old limit is read again.
    pub fn set_until(&mut self, task: TaskId, store: usize, until: i64) {
        for reader in self.topics.values_mut() {
            for r in reader.partitions.values_mut() {
                if r.task != task || r.store != store || r.until.is_none_or(|u| u >= until) {
                    continue;
                }
                r.until = Some(until);
                if r.held {
                    r.held = false;
                    r.at_end = false;
                    reader.assigned = false;
                }
            }
        }
    }

    fn register_as(
        &mut self,
        at: StorePosition<'_>,
        recorded: Option<i64>,
        until: Option<i64>,
        tail: bool,
    ) -> Result<RestoreStart, RestoreError> {
        let StorePosition {
            task,
            store,
            store_name,
            topic,
            partition,
        } = at;
        let reader = self.reader(topic)?;
        let (low, high) = watermarks(reader.consumer.as_ref(), topic, partition)?;
        let from = match recorded {
            Some(r) if r > high || r < low => {
                return Ok(RestoreStart::Corrupted {
                    recorded: r,
                    low,
                    high,
                });
            }
            Some(r) => r,
            None => low,
        };
        let high = until.map_or(high, |until| until.min(high));
        if from >= high && !tail {
            return Ok(RestoreStart::UpToDate);
        }
        if tail {
            tracing::info!(
                task_id = %task, store = store_name, topic, partition, from, end = high,
                "standby tailing changelog ({} records behind at most)", (high - from).max(0)
            );
        } else {
            tracing::info!(
                task_id = %task, store = store_name, topic, partition, from, end = high,
                "restoring store from changelog ({} records at most)", high - from
            );
        }
        let now = Instant::now();
        // A tail already at its limit waits for it to move, unfetched.
        let held = tail && until.is_some_and(|until| from >= until);
        reader.partitions.insert(
            partition,
            Restoring {
                task,
                store,
                store_name: store_name.to_string(),
                next: from,
                end: high,
                restored: 0,
                started: now,
                last_report: now,
                tail,
                at_end: held,
                until,
                held,
            },
        );
        reader.assigned = false;
        if from >= high {
            return Ok(RestoreStart::UpToDate);
        }
        Ok(RestoreStart::Restoring { from, end: high })
    }

    /// Stops restoring everything of `task` (it was revoked mid-restore).
    pub fn unregister(&mut self, task: TaskId) {
        self.read_ahead.retain(|e| e.task() != task);
        for reader in self.topics.values_mut() {
            let before = reader.partitions.len();
            reader.partitions.retain(|_, r| r.task != task);
            if reader.partitions.len() != before {
                reader.assigned = false;
            }
        }
    }

    pub fn is_idle(&self) -> bool {
        self.read_ahead.is_empty() && self.topics.values().all(|r| r.partitions.is_empty())
    }

    /// Whether some partition has not reached its end and can be read now
    /// (tailed partitions at their end count as caught up).
    pub fn is_behind(&self) -> bool {
        // A topic waiting out a read error's backoff has nothing to read
        // now: counting it would spin the thread's loop.
        let now = Instant::now();
        self.topics
            .values()
            .filter(|r| r.backoff.is_none_or(|(until, _)| now >= until))
            .flat_map(|r| r.partitions.values())
            .any(|p| !p.at_end)
    }

    /// Records `task` is behind its changelogs' ends, summed over its
    /// partitions: exact at the end, from the last known end otherwise.
    pub fn lag(&self, task: TaskId) -> i64 {
        self.topics
            .values()
            .flat_map(|r| r.partitions.values())
            .filter(|p| p.task == task && !p.at_end)
            .map(|p| (p.end - p.next).max(0))
            .sum()
    }

    /// Records still to restore, summed over every partition (an upper
    /// bound: compaction leaves gaps).
    pub fn remaining(&self) -> i64 {
        self.topics
            .values()
            .flat_map(|r| r.partitions.values())
            .map(|p| (p.end - p.next).max(0))
            .sum()
    }

    /// Hands `events` (read, not yet applied) back: the next
    /// [`ChangelogReader::poll`] returns them, less those of a task
    /// unregistered meanwhile. A restore step reads its next batch while
    /// it writes the last one and keeps it for the next step.
    pub fn keep(&mut self, events: Vec<RestoreEvent>) {
        debug_assert!(self.read_ahead.is_empty(), "kept twice");
        self.read_ahead = events;
    }

    /// Reads up to `max_records` changelog records across all restoring
    /// partitions, waiting at most `wait` for the first; what was
    /// [kept](ChangelogReader::keep) comes back first, without reading.
    pub fn poll(
        &mut self,
        max_records: usize,
        wait: Duration,
    ) -> Result<Vec<RestoreEvent>, RestoreError> {
        if !self.read_ahead.is_empty() {
            return Ok(std::mem::take(&mut self.read_ahead));
        }
        let mut events = Vec::new();
        for (topic, reader) in self.topics.iter_mut() {
            if reader.partitions.is_empty() {
                continue;
            }
            if reader
                .backoff
                .is_some_and(|(until, _)| Instant::now() < until)
            {
                continue;
            }
            if !reader.assigned {
                let from: Vec<(i32, i64)> = reader
                    .partitions
                    .iter()
                    .filter(|(_, r)| !r.held)
                    .map(|(p, r)| (*p, r.next))
                    .collect();
                reader
                    .consumer
                    .assign(&from)
                    .map_err(|source| RestoreError::Kafka {
                        topic: topic.clone(),
                        partition: -1,
                        source,
                    })?;
                reader.assigned = true;
            }
            read::read_topic(topic, reader, max_records, wait, &mut events)?;
        }
        Ok(events)
    }
}

/// A store of a task and the changelog partition it is restored from.
#[derive(Debug, Clone, Copy)]
pub struct StorePosition<'a> {
    pub task: TaskId,
    /// The store's index in the task's topology.
    pub store: usize,
    pub store_name: &'a str,
    pub topic: &'a str,
    pub partition: i32,
}

/// The low and high offsets of a changelog partition, retried with backoff
/// while the broker is away.
fn watermarks(
    consumer: &dyn ChangelogConsumer,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), RestoreError> {
    let started = Instant::now();
    let mut backoff = BACKOFF_FIRST;
    loop {
        match consumer.watermarks(partition, WATERMARK_TIMEOUT) {
            Ok(w) => return Ok(w),
            Err(source) if started.elapsed() >= WATERMARK_RETRY_FOR => {
                return Err(RestoreError::Kafka {
                    topic: topic.to_string(),
                    partition,
                    source,
                });
            }
            Err(error) => {
                tracing::warn!(topic, partition, %error, retry_in_ms = backoff.as_millis() as u64,
                    "cannot read the changelog's offsets; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}
