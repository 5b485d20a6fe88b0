//! The production [`Fetcher`]: a librdkafka consumer in `assign()` mode
//! that commits through the process's group membership, and the watch that
//! replaces it when librdkafka stops fetching partitions whose log has
//! records (a known librdkafka fault after a broker restart, see
//! `group::stall`).
//!
//! A replacement starts every partition where its task stands, which the
//! fetcher itself keeps track of: under exactly-once, the records since
//! the last commit belong to the open transaction. The test suite forces
//! replacements mid-transaction through `WEIR_TEST_REPLACE_SOURCE_CONSUMER_MS`.
//!
//! Must never subscribe: the group is this process's own membership.

use std::collections::BTreeMap;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::{Batches, BatchesBuilder, Fetcher};
use crate::client::ClientError;
use crate::config::Config;
use crate::group::{
    FetchWatch, GroupMetadata, GroupSource, QuietPartition, STALL_AFTER, SourceConsumer,
    SourceContext, StreamsGroup, TopicPartition, reset_offsets, stalled,
};
use crate::kafka::{BatchConsumer, Message};
use crate::member::{MembershipError, OffsetAndMetadata};
use crate::metrics::Metrics;
use crate::runtime::bindings::{Header, IncomingRecord};
use crate::task::TaskError;
use crate::topics::TopicPlan;

/// Bounds each broker round trip made to judge a quiet partition.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Fault injection for the test suite: replace the source consumer this
/// often (milliseconds), stalled or not, so that a replacement in the
/// middle of a transaction can be tested without a broker restart.
const FORCE_REPLACE_ENV: &str = "WEIR_TEST_REPLACE_SOURCE_CONSUMER_MS";

pub(crate) struct KafkaFetcher {
    index: usize,
    config: Arc<Config>,
    /// `auto.offset.reset`, as [`reset_policy`] reads it.
    reset: Option<Offset>,
    consumer: BatchConsumer<SourceContext>,
    group: Arc<StreamsGroup>,
    /// When each fetched partition last delivered (see `watch`).
    watch: FetchWatch,
    /// Per assigned partition, the offset its task reads next as this
    /// fetcher handed records over: where `add` started it, then one past
    /// the last record polled or the end reported. A replacement consumer
    /// and a resumed partition start there; the old consumer's position
    /// cannot say (it knows nothing of what an earlier consumer delivered,
    /// and counts a partition end as a record).
    next: Vec<(TopicPartition, Offset)>,
    metrics: Arc<Metrics>,
    /// [`FORCE_REPLACE_ENV`]'s period and when the consumer was last
    /// replaced by it.
    forced: Option<(Duration, Instant)>,
}

impl KafkaFetcher {
    pub(crate) fn new(
        index: usize,
        config: Arc<Config>,
        group: Arc<StreamsGroup>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, TaskError> {
        let consumer = new_source_consumer(&config, index)?;
        Ok(KafkaFetcher {
            index,
            reset: reset_policy(&config),
            config,
            consumer,
            group,
            watch: FetchWatch::new(Instant::now()),
            next: Vec::new(),
            metrics,
            forced: std::env::var(FORCE_REPLACE_ENV)
                .ok()
                .and_then(|ms| ms.parse().ok())
                .map(|ms| (Duration::from_millis(ms), Instant::now())),
        })
    }

    fn source(&self) -> GroupSource<'_, SourceContext> {
        GroupSource {
            consumer: &self.consumer,
            group: &self.group,
            reset: self.reset,
        }
    }

    /// Every assigned partition with the offset its task reads next: what
    /// this fetcher handed over (records, and ends past transaction
    /// markers); a logical offset where nothing was handed over and the
    /// start is librdkafka's to resolve.
    fn positions(&self) -> Result<TopicPartitionList, String> {
        let consumer = (self.consumer.position())
            .map_err(|e| format!("reading the source consumer's positions: {e}"))?;
        let mut positions = TopicPartitionList::with_capacity(consumer.count());
        for e in consumer.elements() {
            let handed = (self.next.iter())
                .find(|((t, p), _)| *p == e.partition() && t == e.topic())
                .map(|(_, o)| *o);
            (positions.add_partition_offset(
                e.topic(),
                e.partition(),
                next_offset(handed, e.offset()),
            ))
            .map_err(|e| e.to_string())?;
        }
        Ok(positions)
    }

    /// Where each quiet partition stands: the offset its task reads next
    /// (from [`KafkaFetcher::positions`]; where librdkafka resolves the
    /// start, the committed offset or where `auto.offset.reset` starts) and
    /// the log's last stable offset.
    ///
    /// Asked of the source consumer first, then of a fresh one: a consumer
    /// that stopped fetching after a broker restart can also fail every
    /// lookup of its own partitions (librdkafka answered `Unknown
    /// partition` for minutes), and judged by itself alone it was never
    /// found stalled.
    fn locate(
        &self,
        quiet: &[TopicPartition],
        positions: &TopicPartitionList,
    ) -> Result<Vec<QuietPartition>, String> {
        let own = match self.locate_with(&self.consumer, quiet, positions) {
            Ok(located) => return Ok(located),
            Err(own) => own,
        };
        let both = |e: &dyn std::fmt::Display| format!("{own}; then a fresh consumer: {e}");
        let fresh = new_source_consumer(&self.config, self.index).map_err(|e| both(&e))?;
        let located = (self.locate_with(&fresh, quiet, positions)).map_err(|e| both(&e));
        if located.is_ok() {
            tracing::info!(error = %own, "the source consumer could not look up its quiet partitions; a fresh one could");
        }
        close_in_background(fresh.into_inner(), self.index);
        located
    }

    /// [`KafkaFetcher::locate`], asking `consumer` for the log ends and
    /// where `auto.offset.reset` starts.
    fn locate_with(
        &self,
        consumer: &BaseConsumer<SourceContext>,
        quiet: &[TopicPartition],
        positions: &TopicPartitionList,
    ) -> Result<Vec<QuietPartition>, String> {
        let position = |(topic, partition): &TopicPartition| match positions
            .find_partition(topic, *partition)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(offset)) => Some(offset),
            _ => None,
        };
        let mut ask = TopicPartitionList::new();
        for (topic, partition) in quiet {
            ask.add_partition_offset(topic, *partition, Offset::End)
                .map_err(|e| e.to_string())?;
        }
        let ends = consumer
            .offsets_for_times(ask, LOOKUP_TIMEOUT)
            .map_err(|e| format!("listing the last stable offsets: {e}"))?;
        let unstarted: Vec<TopicPartition> = quiet
            .iter()
            .filter(|tp| position(tp).is_none())
            .cloned()
            .collect();
        let committed = if unstarted.is_empty() {
            Default::default()
        } else {
            self.group
                .membership()
                .fetch_offsets(&unstarted)
                .map_err(|e| e.to_string())?
        };
        let never_read: Vec<&TopicPartition> = unstarted
            .iter()
            .filter(|tp| committed.get(*tp).copied().flatten().is_none())
            .collect();
        // As `auto.offset.reset` starts them (`none` judged as `earliest`).
        let reset = self.reset.unwrap_or(Offset::Beginning);
        let starts = reset_offsets(consumer, reset, &never_read);
        let mut located = Vec::new();
        for tp in quiet {
            let Some(Offset::Offset(stable_end)) =
                ends.find_partition(&tp.0, tp.1).map(|e| e.offset())
            else {
                continue;
            };
            let next = match (position(tp), committed.get(tp).copied().flatten()) {
                (Some(next), _) | (None, Some(next)) => next,
                (None, None) => match starts.get(tp) {
                    Some(start) => *start,
                    // Not found now: judged at the next look.
                    None => continue,
                },
            };
            located.push(QuietPartition {
                partition: tp.clone(),
                next,
                stable_end,
            });
        }
        Ok(located)
    }

    /// A new source consumer in place of the current one, fetching the
    /// same partitions, each from `positions` (see
    /// [`KafkaFetcher::positions`]): under exactly-once the records since
    /// the last commit belong to the open transaction, so a start before
    /// it would process records twice and one after it would lose them.
    fn replace_consumer(&mut self, positions: &TopicPartitionList) -> Result<(), String> {
        let fresh = new_source_consumer(&self.config, self.index).map_err(|e| e.to_string())?;
        fresh
            .assign(positions)
            .map_err(|e| format!("assigning {} partition(s): {e}", positions.count()))?;
        let stalled = std::mem::replace(&mut self.consumer, fresh);
        close_in_background(stalled.into_inner(), self.index);
        self.next = (positions.elements().iter())
            .map(|e| ((e.topic().to_string(), e.partition()), e.offset()))
            .collect();
        crate::metrics::add(&self.metrics.source_consumer_restarts, 1);
        self.watch.restart_clocks(Instant::now());
        Ok(())
    }

    /// [`FORCE_REPLACE_ENV`]: replaces the consumer as a stall would.
    fn force_replacement(&mut self) {
        let replaced = (self.positions()).and_then(|positions| {
            tracing::info!(
                partitions = positions.count(),
                "{FORCE_REPLACE_ENV}: replacing the source consumer"
            );
            self.replace_consumer(&positions)
        });
        if let Err(e) = replaced {
            tracing::warn!(error = %e, "{FORCE_REPLACE_ENV}: replacing the source consumer failed");
        }
    }

    /// Those of `partitions` the consumer is assigned.
    fn assigned_among(&self, partitions: &[TopicPartition]) -> Result<Vec<TopicPartition>, String> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let assignment = (self.consumer.assignment())
            .map_err(|e| format!("reading the source consumer's assignment: {e}"))?;
        Ok(partitions
            .iter()
            .filter(|(t, p)| assignment.find_partition(t, *p).is_some())
            .cloned()
            .collect())
    }

    /// `topic`/`partition` was handed over up to `next` (exclusive).
    fn handed_over(&mut self, topic: &str, partition: i32, next: i64) {
        let tracked = (self.next.iter_mut()).find(|((t, p), _)| *p == partition && t == topic);
        if let Some((_, at)) = tracked {
            *at = match *at {
                Offset::Offset(known) => Offset::Offset(known.max(next)),
                _ => Offset::Offset(next),
            };
        }
    }

    /// Records `partitions` as started at the offsets given, or forgets
    /// them (`None`).
    fn track(
        &mut self,
        partitions: &[TopicPartition],
        started: Option<Vec<(TopicPartition, Offset)>>,
    ) {
        self.next.retain(|(tp, _)| !partitions.contains(tp));
        self.next.extend(started.into_iter().flatten());
    }
}

impl SourceConsumer for KafkaFetcher {
    fn commit_offsets(
        &self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<(), MembershipError> {
        self.source().commit_offsets(offsets)
    }

    fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>, MembershipError> {
        self.source().committed(partitions)
    }

    fn group_metadata(&self) -> Option<GroupMetadata> {
        self.source().group_metadata()
    }

    /// Pauses `partitions`, each to resume where its task stands: librdkafka
    /// resumes a partition at its position, which a partition end read in a
    /// batch puts one past the end, and the record there would be skipped.
    fn pause(&self, partitions: &[TopicPartition]) -> Result<(), ClientError> {
        self.source().pause(partitions)?;
        let positions = self.consumer.position()?;
        let mut seek = TopicPartitionList::new();
        for (tp, next) in &self.next {
            let Offset::Offset(next) = *next else {
                continue;
            };
            let position = positions.find_partition(&tp.0, tp.1).map(|e| e.offset());
            // A position is only known once the partition delivered.
            if partitions.contains(tp) && matches!(position, Some(Offset::Offset(p)) if p != next) {
                seek.add_partition_offset(&tp.0, tp.1, Offset::Offset(next))?;
            }
        }
        if seek.count() > 0 {
            // Asynchronous: queued behind the pause and ahead of the
            // resume on each partition's own queue, never blocking this
            // thread on a broker thread that may be stuck. It can only
            // fail where a fetch start is under way, which starts at the
            // tracked offset anyway (`add`).
            self.consumer.seek_partitions(seek, Duration::ZERO)?;
        }
        Ok(())
    }

    fn resume(&self, partitions: &[TopicPartition]) -> Result<(), ClientError> {
        self.source().resume(partitions)
    }
}

impl Fetcher for KafkaFetcher {
    fn add(&mut self, partitions: &[TopicPartition]) -> Result<(), String> {
        // Still fetched (a removal that failed): librdkafka refuses to
        // assign them again, and they would go on from where they were, not
        // from the commit. Removed first.
        let fetched = self.assigned_among(partitions)?;
        self.remove(&fetched)?;
        let started = self.source().add(partitions).map_err(|e| e.to_string())?;
        self.track(partitions, Some(started));
        Ok(())
    }

    /// Only the partitions still assigned: librdkafka refuses a whole
    /// removal that names one it does not have (a failed task's, removed
    /// already), and the others would go on being fetched.
    fn remove(&mut self, partitions: &[TopicPartition]) -> Result<(), String> {
        let assigned = self.assigned_among(partitions)?;
        self.source().remove(&assigned).map_err(|e| e.to_string())?;
        self.track(partitions, None);
        Ok(())
    }

    fn poll(&mut self, wait: Duration, max: usize, plan: &TopicPlan) -> Batches {
        let mut wait = wait;
        let mut batches = BatchesBuilder::new(plan);
        // Where each end was reported: the records before it were handed
        // over, and so were any transaction markers.
        let mut ends = Vec::new();
        while batches.count() < max {
            let read = self.consumer.read(wait, max - batches.count(), |message| {
                match message.error() {
                    None => batches.push(message.topic(), message.partition(), |source| {
                        incoming(&message, source)
                    }),
                    Some(KafkaError::PartitionEOF(partition)) => {
                        batches.reached_end(message.topic(), partition);
                        ends.push((message.topic().to_string(), partition, message.offset()));
                    }
                    Some(e) => tracing::warn!(error = %e, "consumer error"),
                }
            });
            if read == 0 {
                break;
            }
            wait = Duration::ZERO;
        }
        for error in self.consumer.client_errors() {
            tracing::warn!(%error, "source consumer error");
        }
        let batches = batches.finish();
        let now = Instant::now();
        for (topic, partition, records) in &batches {
            let Some(last) = records.last() else {
                continue;
            };
            self.watch.received(topic, *partition, now);
            self.handed_over(topic, *partition, last.offset + 1);
        }
        for (topic, partition, end) in ends {
            self.handed_over(&topic, partition, end);
        }
        batches
    }

    /// Replaces the source consumer when librdkafka has stopped fetching
    /// partitions whose log has records for them: the new consumer starts
    /// every partition at the offset its task reads next.
    fn watch(&mut self, restoring: bool) {
        let now = Instant::now();
        if restoring {
            // Partitions are paused while their task restores.
            self.watch.restart_clocks(now);
            return;
        }
        if let Some((every, last)) = self.forced
            && now.duration_since(last) >= every
        {
            self.forced = Some((every, now));
            return self.force_replacement();
        }
        if !self.watch.due(now) {
            return;
        }
        let positions = match self.positions() {
            Ok(positions) => positions,
            Err(e) => return tracing::warn!(error = %e, "checking for a stalled consumer"),
        };
        let assigned: Vec<TopicPartition> = positions
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let quiet = self.watch.quiet(&assigned, now);
        if quiet.is_empty() {
            return;
        }
        let quiet = match self.locate(&quiet, &positions) {
            Ok(quiet) => quiet,
            Err(e) => {
                tracing::warn!(error = %e, "checking quiet source partitions failed; checking again later");
                return;
            }
        };
        let stalled = stalled(&quiet);
        if stalled.is_empty() {
            return;
        }
        let named: Vec<String> = stalled
            .iter()
            .map(|q| {
                format!(
                    "{}-{} at {} (stable end {})",
                    q.partition.0, q.partition.1, q.next, q.stable_end
                )
            })
            .collect();
        tracing::warn!(partitions = ?named,
            "the source consumer delivered nothing for {}s from partitions that have records: replacing it",
            STALL_AFTER.as_secs());
        if let Err(e) = self.replace_consumer(&positions) {
            tracing::warn!(error = %e, "replacing the source consumer failed; trying again later")
        }
    }

    fn close(self: Box<Self>) {
        close_in_background(self.consumer.into_inner(), self.index);
    }
}

/// Where a partition's task reads next: what the fetcher `handed` over (or
/// where it started it, a logical offset librdkafka resolves again when
/// nothing was handed over yet), else the consumer's `position`. The
/// position is not trusted where the fetcher knows: a batch read puts it
/// one past any error it reports, a partition end included (librdkafka
/// counts the report as a record).
fn next_offset(handed: Option<Offset>, position: Offset) -> Offset {
    handed.unwrap_or(position)
}

/// Destroys a source consumer off the stream thread: destroying one that
/// librdkafka stopped fetching for can wait forever on its broker threads
/// (seen after a broker restart). If no thread can be had, it is leaked.
fn close_in_background(consumer: BaseConsumer<SourceContext>, thread: usize) {
    let consumer = ManuallyDrop::new(consumer);
    let closer = std::thread::Builder::new()
        .name(format!("weir-close-{}", thread + 1))
        .spawn(move || drop(ManuallyDrop::into_inner(consumer)));
    if let Err(e) = closer {
        tracing::warn!(error = %e, "cannot start a thread to close the source consumer; leaking it");
    }
}

/// Where `auto.offset.reset` starts a partition nothing was committed
/// for, as librdkafka spells its values (`earliest`, Weir's default, if
/// unset); `None` for `none`/`error`, which librdkafka applies itself.
fn reset_policy(config: &Config) -> Option<Offset> {
    match config.kafka.get("auto.offset.reset").map(String::as_str) {
        None | Some("earliest" | "smallest" | "beginning") => Some(Offset::Beginning),
        Some("latest" | "largest" | "end") => Some(Offset::End),
        Some(_) => None,
    }
}

fn new_source_consumer(
    config: &Config,
    thread: usize,
) -> Result<BatchConsumer<SourceContext>, TaskError> {
    crate::kafka::source_consumer(config, thread)
        .create_with_context(SourceContext)
        .and_then(BatchConsumer::new)
        .map_err(|e| TaskError::Consumer(format!("cannot create the source consumer: {e}")))
}

fn incoming(m: &Message<'_>, source: &str) -> IncomingRecord {
    let headers = (m.headers().into_iter())
        .map(|(key, value)| Header {
            key,
            value: value.map(<[u8]>::to_vec).unwrap_or_default(),
        })
        .collect();
    IncomingRecord {
        source: source.to_string(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers,
        timestamp: m.timestamp(),
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_starts_again_where_its_records_were_handed_over() {
        // A consumer that delivered nothing yet knows no position: what the
        // earlier one handed over counts, not the group's last commit.
        assert_eq!(
            next_offset(Some(Offset::Offset(40)), Offset::Invalid),
            Offset::Offset(40)
        );
        // One past the end after a partition end read in a batch.
        assert_eq!(
            next_offset(Some(Offset::Offset(40)), Offset::Offset(41)),
            Offset::Offset(40)
        );
        assert_eq!(
            next_offset(Some(Offset::Offset(40)), Offset::Offset(12)),
            Offset::Offset(40)
        );
        // Started by librdkafka and nothing handed over yet: librdkafka's to resolve.
        assert_eq!(
            next_offset(Some(Offset::Stored), Offset::Invalid),
            Offset::Stored
        );
        assert_eq!(
            next_offset(Some(Offset::Stored), Offset::Offset(7)),
            Offset::Stored
        );
        assert_eq!(next_offset(None, Offset::Invalid), Offset::Invalid);
    }
}
