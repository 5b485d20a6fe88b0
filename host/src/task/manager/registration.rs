//! Where an active task begins: its logged stores registered with the
//! changelog reader (a store restored from its source stops at the
//! group's committed offset) and its partitions paused while any is
//! behind, or the task started at once. Never reads a record itself.

use std::time::{Duration, Instant};

use super::TaskManager;
use crate::changelog::{ChangelogReader, RestoreStart, StorePosition};
use crate::group::SourceConsumer;
use crate::member::Recovery;
use crate::task::state::ChangelogStart;
use crate::task::{StreamTask, TaskError};
use crate::topology::TaskId;

/// How long reading the committed offset a table restores up to is retried.
const COMMITTED_RETRY_FOR: Duration = Duration::from_secs(10);

impl TaskManager {
    /// Registers the restore of `task`'s logged stores (all, or `only`
    /// these indices) and pauses its partitions while any is behind its
    /// changelog; starts the task if none is.
    pub(super) fn restore_or_start(
        &mut self,
        task: &mut StreamTask,
        only: Option<&[usize]>,
        consumer: &dyn SourceConsumer,
    ) -> Result<(), TaskError> {
        let id = task.id();
        let mut restoring = false;
        for ChangelogStart {
            store,
            name,
            topic,
            recorded,
            from_source,
        } in task.changelog_starts()?
        {
            if only.is_some_and(|only| !only.contains(&store)) {
                continue;
            }
            let at = StorePosition {
                task: id,
                store,
                store_name: &name,
                topic: &topic,
                partition: id.partition,
            };
            let until = match from_source {
                true => Some(committed_offset(consumer, &topic, id)?),
                false => None,
            };
            let restore = |reader: &mut ChangelogReader, recorded| match until {
                Some(until) => reader.register_until(at, recorded, until),
                None => reader.register(at, recorded),
            };
            let mut start = restore(&mut self.reader, recorded)?;
            if let RestoreStart::Corrupted {
                recorded,
                low,
                high,
            } = start
            {
                tracing::warn!(
                    task_id = %id, store = %name, recorded, low, high,
                    "local state does not match changelog `{topic}`: wiping it and restoring in full"
                );
                task.wipe_store(store)?;
                start = restore(&mut self.reader, None)?;
            }
            if let RestoreStart::Restoring { .. } = start {
                task.begin_restore(store);
                restoring = true;
            }
        }
        if restoring {
            consumer.pause(&task.partitions()).map_err(|e| {
                TaskError::Consumer(format!("pausing partitions of task {id}: {e}"))
            })?;
        } else {
            // Paused if it was restoring before a swap; a no-op otherwise.
            consumer.resume(&task.partitions()).map_err(|e| {
                TaskError::Consumer(format!("resuming partitions of task {id}: {e}"))
            })?;
            task.start(self.collector.as_mut())?;
        }
        Ok(())
    }
}

/// Where task `id` resumes its source `topic`: the group's committed offset,
/// or 0 when nothing is committed (the source is read from its start, so
/// nothing of a table restored from it is restored first). A coordinator
/// moving or loading is waited out for up to `COMMITTED_RETRY_FOR`.
fn committed_offset(
    consumer: &dyn SourceConsumer,
    topic: &str,
    id: TaskId,
) -> Result<i64, TaskError> {
    let partition = (topic.to_string(), id.partition);
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        match consumer.committed(std::slice::from_ref(&partition)) {
            Ok(committed) => {
                return Ok(committed
                    .get(&partition)
                    .cloned()
                    .flatten()
                    .map_or(0, |c| c.offset));
            }
            Err(e)
                if e.recovery() != Recovery::Fatal && started.elapsed() < COMMITTED_RETRY_FOR =>
            {
                tracing::warn!(task_id = %id, topic, error = %e, retry_in_ms = backoff.as_millis() as u64,
                    "cannot read the committed offset a table restores up to; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(e) => {
                return Err(TaskError::Consumer(format!(
                    "reading the committed offset of `{topic}` partition {} for task {id}: {e}",
                    id.partition
                )));
            }
        }
    }
}
