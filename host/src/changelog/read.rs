//! One poll of one changelog topic's consumer, turned into restore
//! events: records batched per partition, a partition's end or limit
//! reached, progress logged. The reader's bookkeeping is `super`'s.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{
    BACKOFF_FIRST, BACKOFF_MAX, Fetched, PROGRESS_EVERY, RestoreError, RestoreEvent, Restoring,
    TopicReader,
};
use crate::store::Write;
use crate::topology::TaskId;

/// Key and value bytes after which one read stops, whatever its record
/// count allows: what a restore holds in memory stays bounded with large
/// values too.
const MAX_READ_BYTES: usize = 16 << 20;

/// `r` (of `partition`) reached its limit: a restore is finished; a tail
/// is held there, caught up. Returns whether the topic must be assigned
/// again (to stop fetching a newly held partition).
fn at_limit(
    r: &mut Restoring,
    partition: i32,
    finished: &mut Vec<i32>,
    caught_up: &mut Vec<(TaskId, usize)>,
) -> bool {
    if !r.tail {
        if !finished.contains(&partition) {
            finished.push(partition);
        }
        return false;
    }
    if r.held {
        return false;
    }
    r.held = true;
    if !r.at_end {
        r.at_end = true;
        r.end = r.next;
        caught_up.push((r.task, r.store));
    }
    true
}

pub(super) fn read_topic(
    topic: &str,
    reader: &mut TopicReader,
    max_records: usize,
    wait: Duration,
    events: &mut Vec<RestoreEvent>,
) -> Result<(), RestoreError> {
    let mut batches: BTreeMap<i32, Vec<Write>> = BTreeMap::new();
    let mut finished = Vec::new();
    let mut caught_up = Vec::new();
    let mut reassign = false;
    let mut timeout = wait;
    let (mut read, mut bytes) = (0, 0);
    while read < max_records && bytes < MAX_READ_BYTES {
        let Some(result) = reader.consumer.poll(timeout) else {
            break;
        };
        timeout = Duration::ZERO;
        match result {
            Ok(Fetched::Record {
                partition,
                offset,
                key,
                value,
            }) => {
                let Some(r) = reader.partitions.get_mut(&partition) else {
                    continue;
                };
                if offset < r.next {
                    continue;
                }
                if r.until.is_some_and(|until| offset >= until) {
                    reassign |= at_limit(r, partition, &mut finished, &mut caught_up);
                    continue;
                }
                r.next = offset + 1;
                r.end = r.end.max(r.next);
                r.at_end = false;
                r.restored += 1;
                read += 1;
                if let Some(key) = key {
                    bytes += key.len() + value.as_ref().map_or(0, Vec::len);
                    batches.entry(partition).or_default().push((key, value));
                }
                if r.until.is_some_and(|until| r.next >= until) {
                    reassign |= at_limit(r, partition, &mut finished, &mut caught_up);
                }
            }
            Ok(Fetched::End { partition, next }) => {
                // Past the last record may lie transaction markers and
                // aborted records: the store records the end itself, so a
                // later restore from it (a promoted standby's) has nothing
                // left to wait for.
                if let Some(r) = reader.partitions.get_mut(&partition)
                    && let end = r.until.map_or(next, |until| next.min(until))
                    && end > r.next
                {
                    r.next = end;
                    batches.entry(partition).or_default();
                }
                match reader.partitions.get_mut(&partition) {
                    Some(r) if r.tail && !r.at_end => {
                        r.at_end = true;
                        r.end = r.next;
                        caught_up.push((r.task, r.store));
                    }
                    Some(r) if !r.tail && !finished.contains(&partition) => {
                        finished.push(partition)
                    }
                    _ => {}
                }
            }
            Err(error) => {
                // librdkafka reconnects and refetches by itself; wait a
                // little before asking again so a long outage is not a
                // busy loop of errors.
                let next = reader
                    .backoff
                    .map_or(BACKOFF_FIRST, |(_, last)| (last * 2).min(BACKOFF_MAX));
                tracing::warn!(topic, %error, retry_in_ms = next.as_millis() as u64,
                    "reading the changelog failed; retrying");
                reader.backoff = Some((Instant::now() + next, next));
                break;
            }
        }
    }
    if read > 0 {
        reader.backoff = None;
    }
    if reassign {
        // Held partitions are left out of the assignment.
        reader.assigned = false;
    }
    for (partition, records) in batches {
        let r = &reader.partitions[&partition];
        events.push(RestoreEvent::Records {
            task: r.task,
            store: r.store,
            records,
            next_offset: r.next,
        });
    }
    for (task, store) in caught_up {
        events.push(RestoreEvent::CaughtUp { task, store });
    }
    for (partition, r) in reader.partitions.iter_mut() {
        if r.tail
            && !r.at_end
            && let Some(high) = reader.consumer.cached_high_watermark(*partition)
        {
            r.end = r.end.max(r.until.map_or(high, |until| high.min(until)));
        }
    }
    for r in reader.partitions.values_mut() {
        if !r.at_end && r.last_report.elapsed() >= PROGRESS_EVERY {
            r.last_report = Instant::now();
            let secs = r.started.elapsed().as_secs_f64().max(0.001);
            tracing::info!(
                task_id = %r.task, store = %r.store_name, restored = r.restored,
                remaining = (r.end - r.next).max(0), rate = (r.restored as f64 / secs) as u64,
                "restore progress (records, records/s)"
            );
        }
    }
    for partition in finished {
        if let Some(r) = reader.partitions.remove(&partition) {
            let elapsed = r.started.elapsed();
            let rate = r.restored as f64 / elapsed.as_secs_f64().max(0.001);
            tracing::info!(
                task_id = %r.task, store = %r.store_name, restored = r.restored,
                elapsed_ms = elapsed.as_millis() as u64, rate = rate as u64,
                "restore complete"
            );
            events.push(RestoreEvent::Done {
                task: r.task,
                store: r.store,
            });
            reader.assigned = false;
        }
    }
    Ok(())
}
