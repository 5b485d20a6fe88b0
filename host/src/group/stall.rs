//! Notices source partitions librdkafka has stopped fetching.
//!
//! After a broker restart, a consumer in `assign()` mode sometimes never
//! fetches a partition again (librdkafka issue #5153, still open for 2.12):
//! the records sit in the log, the task waits for them forever, and no
//! error is reported. Only a new consumer fetches again. [`FetchWatch`]
//! keeps, per assigned partition, when a record last arrived; the stream
//! thread asks it every few seconds which partitions have been quiet for
//! [`STALL_AFTER`], and [`stalled`] keeps those whose log holds records past
//! the offset the task expects.
//!
//! Must never judge by time alone: a quiet input is normal. Only records
//! the broker has (below its last stable offset) and the consumer does not
//! deliver make a stall.

use std::time::{Duration, Instant};

use super::TopicPartition;

/// How long a partition must deliver nothing, while its log has records
/// for it, before its consumer counts as stalled. Long enough that a busy
/// thread or a slow reconnect is not mistaken for one.
pub const STALL_AFTER: Duration = Duration::from_secs(20);

/// How often the quiet partitions are looked for (each look that finds
/// some costs one ListOffsets round trip).
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// When each assigned source partition of one thread last delivered.
#[derive(Debug)]
pub struct FetchWatch {
    /// A thread fetches few partitions: a scan beats hashing (and
    /// allocating) a key for every batch.
    last_record: Vec<(TopicPartition, Instant)>,
    next_check: Instant,
}

impl FetchWatch {
    pub fn new(now: Instant) -> Self {
        FetchWatch {
            last_record: Vec::new(),
            next_check: now + CHECK_EVERY,
        }
    }

    /// A record of `topic`/`partition` arrived.
    pub fn received(&mut self, topic: &str, partition: i32, now: Instant) {
        match self
            .last_record
            .iter_mut()
            .find(|((t, p), _)| *p == partition && t == topic)
        {
            Some((_, at)) => *at = now,
            None => self.last_record.push(((topic.to_string(), partition), now)),
        }
    }

    /// Starts every clock again: while partitions are paused for a restore,
    /// or after the consumer was replaced, quiet is expected.
    pub fn restart_clocks(&mut self, now: Instant) {
        for (_, at) in &mut self.last_record {
            *at = now;
        }
    }

    /// Whether a look for quiet partitions is due (cheap: call it before
    /// gathering what [`FetchWatch::quiet`] needs).
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next_check
    }

    /// The partitions of `assigned` quiet for [`STALL_AFTER`], when a look
    /// is due (empty otherwise). Partitions newly assigned start their clock
    /// now; those no longer assigned are forgotten.
    pub fn quiet(&mut self, assigned: &[TopicPartition], now: Instant) -> Vec<TopicPartition> {
        if now < self.next_check {
            return Vec::new();
        }
        self.next_check = now + CHECK_EVERY;
        self.last_record.retain(|(tp, _)| assigned.contains(tp));
        let mut quiet = Vec::new();
        for tp in assigned {
            let at = match self.last_record.iter().find(|(known, _)| known == tp) {
                Some((_, at)) => *at,
                None => {
                    self.last_record.push((tp.clone(), now));
                    now
                }
            };
            if now.duration_since(at) >= STALL_AFTER {
                quiet.push(tp.clone());
            }
        }
        quiet
    }
}

/// Where a quiet partition stands: the offset its task reads next and the
/// log's last stable offset (what a `read_committed` fetch can reach).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuietPartition {
    pub partition: TopicPartition,
    pub next: i64,
    pub stable_end: i64,
}

/// The quiet partitions whose log holds records the consumer has not
/// delivered: stalled ones.
pub fn stalled(quiet: &[QuietPartition]) -> Vec<&QuietPartition> {
    quiet.iter().filter(|q| q.stable_end > q.next).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        ("in".to_string(), p)
    }

    #[test]
    fn only_partitions_quiet_for_the_whole_window_are_reported_and_only_when_a_look_is_due() {
        let t0 = Instant::now();
        let mut watch = FetchWatch::new(t0);
        let assigned = [tp(0), tp(1)];
        // Not due yet.
        assert!(watch.quiet(&assigned, t0).is_empty());
        // First look starts both clocks.
        assert!(watch.quiet(&assigned, t0 + CHECK_EVERY).is_empty());
        watch.received("in", 1, t0 + STALL_AFTER);
        let later = t0 + CHECK_EVERY + STALL_AFTER;
        assert_eq!(watch.quiet(&assigned, later), vec![tp(0)]);
        // The next look waits its turn.
        assert!(
            watch
                .quiet(&assigned, later + Duration::from_secs(1))
                .is_empty()
        );
    }

    #[test]
    fn a_partition_assigned_again_or_a_restart_of_the_clocks_is_not_quiet() {
        let t0 = Instant::now();
        let mut watch = FetchWatch::new(t0);
        assert!(watch.quiet(&[tp(0)], t0 + CHECK_EVERY).is_empty());
        let t1 = t0 + CHECK_EVERY + STALL_AFTER;
        // Unassigned at the look: forgotten; assigned again: a new clock.
        assert!(watch.quiet(&[], t1).is_empty());
        assert!(watch.quiet(&[tp(0)], t1 + CHECK_EVERY).is_empty());
        let t2 = t1 + CHECK_EVERY + STALL_AFTER;
        watch.restart_clocks(t2);
        assert!(watch.quiet(&[tp(0)], t2 + CHECK_EVERY).is_empty());
        assert_eq!(
            watch.quiet(&[tp(0)], t2 + CHECK_EVERY + STALL_AFTER),
            vec![tp(0)]
        );
    }

    #[test]
    fn a_quiet_partition_is_stalled_only_if_its_log_has_records_past_the_next_offset() {
        let q = |p, next, stable_end| QuietPartition {
            partition: tp(p),
            next,
            stable_end,
        };
        // Caught up; behind an open transaction (stable end not past next);
        // records waiting.
        let quiet = [q(0, 100, 100), q(1, 50, 40), q(2, 7, 9)];
        let stalled: Vec<i32> = stalled(&quiet).iter().map(|q| q.partition.1).collect();
        assert_eq!(stalled, vec![2]);
    }
}
