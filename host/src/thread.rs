//! A stream thread: one group consumer and its poll loop. Each pass polls a
//! batch of records (rebalance callbacks run inside the poll), then lets the
//! task manager restore, process, punctuate and maybe commit. On shutdown it
//! closes its tasks (committing unless something failed) and then the
//! consumer.
//!
//! Blocking work (Wasm calls, RocksDB) happens here, on a dedicated OS
//! thread, never on an async reactor.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};

use crate::app::Target;
use crate::config::Config;
use crate::group::GroupContext;
use crate::lifecycle::{Lifecycle, ThreadStatus};
use crate::runtime::bindings::{Header, IncomingRecord};
use crate::task::{TaskError, TaskManager, TaskManagerSetup, TaskSetup};
use crate::topics::TopicPlan;

const IDLE_POLL: Duration = Duration::from_millis(100);

type Batches = Vec<(String, i32, Vec<IncomingRecord>)>;

pub(crate) struct StreamThread {
    index: usize,
    config: Arc<Config>,
    tasks: Arc<Mutex<TaskManager>>,
    consumer: BaseConsumer<GroupContext<TaskManager>>,
    lifecycle: Arc<Lifecycle>,
    plan: Arc<TopicPlan>,
    target: Arc<Target>,
    /// The release generation this thread runs.
    generation: u64,
}

fn lock(tasks: &Mutex<TaskManager>) -> MutexGuard<'_, TaskManager> {
    tasks.lock().unwrap_or_else(|p| p.into_inner())
}

impl StreamThread {
    pub(crate) fn new(
        index: usize,
        config: Arc<Config>,
        setup: TaskSetup,
        lifecycle: Arc<Lifecycle>,
        target: Arc<Target>,
    ) -> Result<Self, TaskError> {
        let plan = setup.plan.clone();
        let manager = TaskManager::new(TaskManagerSetup {
            config: config.clone(),
            thread: index,
            tasks: setup,
            lifecycle: lifecycle.clone(),
        })?;
        let tasks = Arc::new(Mutex::new(manager));
        let consumer: BaseConsumer<GroupContext<TaskManager>> =
            crate::kafka::group_consumer(&config, index, plan.sources.len())
                .create_with_context(GroupContext::new(tasks.clone()))
                .map_err(|e| {
                    TaskError::Consumer(format!("cannot create the group consumer: {e}"))
                })?;
        Ok(StreamThread {
            index,
            config,
            tasks,
            consumer,
            lifecycle,
            plan,
            target,
            generation: 0,
        })
    }

    /// Runs until shutdown is requested or a task fails.
    pub(crate) fn run(mut self) -> Result<(), TaskError> {
        let span = tracing::info_span!("stream_thread", thread = self.index + 1);
        let _entered = span.enter();
        self.lifecycle
            .thread_status(self.index, ThreadStatus::Rebalancing);
        let topics: Vec<&str> = self.plan.sources.iter().map(String::as_str).collect();
        self.consumer
            .subscribe(&topics)
            .map_err(|e| TaskError::Consumer(format!("cannot subscribe to {topics:?}: {e}")))?;
        tracing::info!(topics = ?topics, group = %self.config.application_id, "stream thread started");

        while !self.lifecycle.shutdown_requested() && !self.target.stop_requested() {
            if let Some((generation, release)) = self.target.newer_than(self.generation) {
                lock(&self.tasks).swap_to(
                    release.version,
                    release.component.clone(),
                    release.plan.clone(),
                    &self.consumer,
                );
                self.generation = generation;
                self.target.applied(self.index, Some(generation));
            }
            let batches = self.poll_records();
            let mut tasks = lock(&self.tasks);
            if tasks.has_failed() {
                break;
            }
            tasks.restore_step(&self.consumer, Duration::ZERO);
            tasks.process(batches);
            tasks.punctuate_wall_clock();
            tasks.maybe_commit(&self.consumer);
            if tasks.has_failed() {
                break;
            }
        }

        let failed = lock(&self.tasks).has_failed();
        tracing::info!(
            failed,
            "stream thread shutting down: committing and closing tasks"
        );
        // The task manager decides what a failure still allows to commit.
        lock(&self.tasks).close_all(&self.consumer, true);
        let failure = lock(&self.tasks).take_failure();
        // Closing the consumer runs the final revoke callback (a no-op now)
        // and, with static membership, leaves the group by session timeout so
        // a quick restart gets the same partitions back without a rebalance.
        drop(self.consumer);
        self.lifecycle.thread_status(self.index, ThreadStatus::Dead);
        self.target.applied(self.index, None);
        match failure {
            Some(e) => Err(e),
            None => {
                tracing::info!("stream thread stopped");
                Ok(())
            }
        }
    }

    /// Polls up to `max.poll.records` records, grouped by partition in
    /// arrival (offset) order. Waits only if nothing is restoring.
    fn poll_records(&self) -> Batches {
        let restoring = lock(&self.tasks).is_restoring();
        let mut wait = if restoring { Duration::ZERO } else { IDLE_POLL };
        let mut batches: Batches = Vec::new();
        // The declared source of each batch, by batch index.
        let mut sources: Vec<&str> = Vec::new();
        let mut count = 0;
        while count < self.config.max_poll_records {
            let Some(result) = self.consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            match result {
                Ok(message) => {
                    count += 1;
                    let (topic, partition) = (message.topic(), message.partition());
                    // Few partitions per poll: a scan beats allocating a key.
                    let slot = match batches
                        .iter()
                        .rposition(|(t, p, _)| *p == partition && t == topic)
                    {
                        Some(slot) => slot,
                        None => {
                            batches.push((topic.to_string(), partition, Vec::new()));
                            sources.push(self.plan.source_name(topic).unwrap_or(""));
                            batches.len() - 1
                        }
                    };
                    let source = if sources[slot].is_empty() {
                        topic
                    } else {
                        sources[slot]
                    };
                    batches[slot].2.push(incoming(&message, source));
                }
                Err(e) => tracing::warn!(error = %e, "consumer error"),
            }
        }
        batches
    }
}

fn incoming(m: &BorrowedMessage<'_>, source: &str) -> IncomingRecord {
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header {
                    key: h.key.to_string(),
                    value: h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    IncomingRecord {
        source: source.to_string(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers,
        timestamp: m.timestamp().to_millis().unwrap_or(-1),
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
    }
}
