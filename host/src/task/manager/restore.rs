//! Restoring active tasks' stores from their changelogs, one step per
//! stream loop: read changelog records, write them into the stores, start
//! the tasks whose stores have caught up.
//!
//! A step reads and writes at once: while one batch is written to RocksDB
//! on scoped threads (one per task), the stream thread reads the next from
//! the changelog consumer (each is about half of a restore's CPU). The
//! batch read during a step's last write is kept in the reader for the
//! next step, so every write overlaps a read, across steps too. A batch's
//! records are written before any event that follows them in the read
//! (a store's end) is acted on, and no batch read is ever dropped: an
//! error is returned only after every batch read has been written (or
//! kept). A store whose changelog repeats keys holds the last write of
//! each across batches (`store::held`, within [`RESTORE_HOLD_BYTES`] for all
//! of a thread's restoring stores) and writes it when the hold is full or the
//! store has caught up, before its task starts.

use std::collections::BTreeMap;
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use super::{PUBLISH_EVERY, RESTORE_BATCH, TaskManager};
use crate::changelog::RestoreEvent;
use crate::group::SourceConsumer;
use crate::store::{RESTORE_HOLD_BYTES, Write};
use crate::task::{StreamTask, TaskError};
use crate::topology::TaskId;

/// Batches written per step, each while the next is read.
const BATCHES_PER_STEP: usize = 2;

impl TaskManager {
    /// Reads a step of changelog records into restoring tasks and starts
    /// tasks whose stores have caught up. Status is published when a task
    /// starts or fails, and otherwise at most every `PUBLISH_EVERY`:
    /// publishing opens store readers for queries, far too costly for
    /// every step of a restore.
    pub fn restore_step(&mut self, consumer: &dyn SourceConsumer, wait: Duration) {
        if self.failure.is_some() || self.reader.is_idle() {
            return;
        }
        let changed = match self.try_restore_step(consumer, wait) {
            Ok(changed) => changed,
            Err(e) => {
                self.handle(e);
                true
            }
        };
        if changed || self.restore_published.elapsed() >= PUBLISH_EVERY {
            self.restore_published = Instant::now();
            self.report_status();
        }
    }

    /// Returns whether a store finished restoring.
    fn try_restore_step(
        &mut self,
        consumer: &dyn SourceConsumer,
        wait: Duration,
    ) -> Result<bool, TaskError> {
        let mut changed = false;
        let mut events = self.reader.poll(RESTORE_BATCH, wait)?;
        for _ in 0..BATCHES_PER_STEP {
            if events.is_empty() {
                break;
            }
            let (writes, ends): (Vec<RestoreEvent>, Vec<RestoreEvent>) = events
                .into_iter()
                .partition(|e| matches!(e, RestoreEvent::Records { .. }));
            // Another batch only once this one's stores are written: a
            // store that ended in this one starts before more is read.
            let read_next = ends.is_empty();
            let (tasks, reader) = (&mut self.tasks, &mut self.reader);
            let (written, next) = std::thread::scope(|s| {
                let writers = spawn_writers(s, tasks, writes, None);
                let next = read_next.then(|| reader.poll(RESTORE_BATCH, Duration::ZERO));
                (join_writers(writers), next)
            });
            if let Err(e) = written {
                // Nothing read is lost to the other tasks: they get what
                // was read meanwhile, and their stores' ends, before the
                // failure is handled.
                if let Some(Ok(next)) = next {
                    let _ = write_restored(&mut self.tasks, next, e.task());
                }
                for end in ends.into_iter().filter(|end| Some(end.task()) != e.task()) {
                    self.store_ended(end, consumer)?;
                }
                return Err(e);
            }
            for end in ends {
                changed |= self.store_ended(end, consumer)?;
            }
            events = next.transpose()?.unwrap_or_default();
        }
        // Read during the last write: the next step writes it first.
        self.reader.keep(events);
        Ok(changed)
    }

    /// A store reached its changelog's end: the task starts once all its
    /// stores have.
    fn store_ended(
        &mut self,
        event: RestoreEvent,
        consumer: &dyn SourceConsumer,
    ) -> Result<bool, TaskError> {
        let RestoreEvent::Done { task, store } = event else {
            // Only tailed (standby) partitions report `CaughtUp`.
            return Ok(false);
        };
        let Some(t) = self.tasks.get_mut(&task) else {
            return Ok(true);
        };
        if t.store_restored(store, self.collector.as_mut())? {
            consumer.resume(&t.partitions()).map_err(|e| {
                TaskError::Consumer(format!("resuming partitions of task {task}: {e}"))
            })?;
        }
        Ok(true)
    }
}

/// What one task gets of a batch, in order: (store, records, next offset).
type TaskWrites = Vec<(usize, Vec<Write>, i64)>;

/// Starts writing changelog records into their tasks' stores, each task's
/// in order and on a thread of its own (a task's stores are its own RocksDB
/// instances). Records of a task no longer here are dropped (its next
/// owner restores them), and so are `skip`'s.
fn spawn_writers<'scope>(
    s: &'scope Scope<'scope, '_>,
    tasks: &'scope mut BTreeMap<TaskId, StreamTask>,
    writes: Vec<RestoreEvent>,
    skip: Option<TaskId>,
) -> Vec<ScopedJoinHandle<'scope, Result<(), TaskError>>> {
    let mut by_task: BTreeMap<TaskId, TaskWrites> = BTreeMap::new();
    for event in writes {
        if let RestoreEvent::Records {
            task,
            store,
            records,
            next_offset,
        } = event
            && skip != Some(task)
        {
            by_task
                .entry(task)
                .or_default()
                .push((store, records, next_offset));
        }
    }
    let restoring: usize = tasks.values().map(StreamTask::restoring_stores).sum();
    let hold = RESTORE_HOLD_BYTES / restoring.max(1);
    tasks
        .iter_mut()
        .filter_map(|(id, task)| by_task.remove(id).map(|w| (task, w)))
        .map(|(task, writes)| {
            s.spawn(move || {
                writes
                    .into_iter()
                    .try_for_each(|(store, records, next)| task.restore(store, records, next, hold))
            })
        })
        .collect()
}

/// Waits for every writer: each task gets all of its records even if
/// another's fail; the first failure is returned.
fn join_writers(
    writers: Vec<ScopedJoinHandle<'_, Result<(), TaskError>>>,
) -> Result<(), TaskError> {
    let mut failure = None;
    for writer in writers {
        let written = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        if let Err(e) = written {
            failure.get_or_insert(e);
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Writes changelog records into their tasks' stores and waits (see
/// [`spawn_writers`], [`join_writers`]).
fn write_restored(
    tasks: &mut BTreeMap<TaskId, StreamTask>,
    writes: Vec<RestoreEvent>,
    skip: Option<TaskId>,
) -> Result<(), TaskError> {
    std::thread::scope(|s| join_writers(spawn_writers(s, tasks, writes, skip)))
}
