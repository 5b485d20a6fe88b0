//! The task manager's standby tasks: which ones this thread keeps, opening
//! and closing them as assignments change, and the tailing step that keeps
//! them behind the actives' changelog writes. Promotion and demotion (the
//! hand-over of open stores) happen where actives are created and revoked.
//!
//! A standby never fails the thread: one that cannot be opened or applied
//! is logged and dropped, and the next assignment tries again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::{PUBLISH_EVERY, STANDBY_BATCH, TaskManager};
use crate::changelog::{ChangelogReader, RestoreEvent, RestoreStart, StorePosition};
use crate::group::{SourceConsumer, TopicPartition};
use crate::task::state::ChangelogStart;
use crate::task::{StandbyTask, TaskError};
use crate::topology::TaskId;

impl TaskManager {
    /// The standbys (and warm-ups) the latest assignment gives this
    /// thread. Call before applying the assignment's active changes, so a
    /// revoked active that stays as a standby keeps its stores open; then
    /// [`TaskManager::apply_standbys`].
    pub fn set_standby_target(&mut self, standbys: BTreeSet<TaskId>) {
        self.standby_target = standbys;
    }

    /// Opens the targeted standbys this thread lacks and closes those no
    /// longer targeted. A standby that cannot be opened is logged and left
    /// out: the active is unaffected, and the next assignment tries again.
    pub fn apply_standbys(&mut self) {
        let target = self.standby_target.clone();
        self.close_standbys(|id| !target.contains(&id));
        for id in target {
            if self.standbys.contains_key(&id) || self.tasks.contains_key(&id) {
                continue;
            }
            let opened =
                StandbyTask::new(id, &self.setup).and_then(|standby| self.add_standby(standby));
            if let Err(e) = opened {
                tracing::warn!(task_id = %id, error = %e, "cannot keep a standby of this task");
            }
        }
        self.report_status();
    }

    pub(super) fn close_standbys(&mut self, which: impl Fn(TaskId) -> bool) {
        let ids: Vec<TaskId> = self
            .standbys
            .keys()
            .copied()
            .filter(|id| which(*id))
            .collect();
        for id in ids {
            self.standby_reader.unregister(id);
            self.forget(id);
            if let Some(standby) = self.standbys.remove(&id) {
                standby.close();
            }
        }
    }

    /// Registers `standby`'s logged stores with the tailing reader (a copy
    /// outside its changelog's range is wiped and read in full).
    pub(super) fn add_standby(&mut self, mut standby: StandbyTask) -> Result<(), TaskError> {
        let id = standby.id();
        for ChangelogStart {
            store,
            name,
            topic,
            recorded,
            from_source,
        } in standby.changelog_starts()?
        {
            let at = StorePosition {
                task: id,
                store,
                store_name: &name,
                topic: &topic,
                partition: id.partition,
            };
            // A store restored from its source holds where it is until
            // `refresh_standby_limits` learns what the active committed.
            let tail = |reader: &mut ChangelogReader, recorded: Option<i64>| match from_source {
                true => reader.register_tail_until(at, recorded, recorded.unwrap_or(0)),
                false => reader.register_tail(at, recorded),
            };
            if let RestoreStart::Corrupted {
                recorded,
                low,
                high,
            } = tail(&mut self.standby_reader, recorded)?
            {
                tracing::warn!(
                    task_id = %id, store = %name, recorded, low, high,
                    "standby state does not match changelog `{topic}`: wiping it and reading it in full"
                );
                standby.wipe_store(store)?;
                tail(&mut self.standby_reader, None)?;
            }
        }
        self.standbys.insert(id, standby);
        Ok(())
    }

    /// Lets the standbys of stores restored from their source read on up
    /// to the offsets the actives have committed (Kafka Streams keeps
    /// them there too: a promoted task processes again what follows, and
    /// a table ahead of it would join those records with later values).
    /// One request for all of them; a broker that cannot answer leaves
    /// them where they are until the next try.
    pub(super) fn refresh_standby_limits(&mut self, consumer: &dyn SourceConsumer) {
        // From the declarations: no store is read for it.
        let plan = &self.setup.plan;
        let sourced: Vec<(usize, &str)> = (self.setup.component.topology().stores.iter())
            .enumerate()
            .filter(|(_, s)| plan.source_changelogs.contains(&s.name))
            .filter_map(|(i, s)| Some((i, crate::task::state::changelog_of(plan, &s.name)?)))
            .collect();
        let stores: Vec<(TaskId, usize, TopicPartition)> = (self.standbys.keys())
            .flat_map(|id| {
                (sourced.iter())
                    .map(|(store, topic)| (*id, *store, (topic.to_string(), id.partition)))
            })
            .collect();
        if stores.is_empty() {
            return;
        }
        let partitions: Vec<TopicPartition> = stores.iter().map(|(_, _, tp)| tp.clone()).collect();
        let committed = match consumer.committed(&partitions) {
            Ok(committed) => committed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the committed offsets standbys read up to; retrying");
                return;
            }
        };
        for (task, store, tp) in stores {
            if let Some(Some(c)) = committed.get(&tp) {
                self.standby_reader.set_until(task, store, c.offset);
            }
        }
    }

    /// Applies a step of the standbys' changelogs. Returns whether any
    /// standby advanced: the thread then hands the new offset sums to the
    /// group at once, because a subscription sent with a stale sum tells
    /// the leader this copy is colder than it is (the last records of a
    /// burst would otherwise never be reported). Status and metrics follow
    /// at most every `PUBLISH_EVERY`. A standby that fails is closed and
    /// left out.
    pub fn standby_step(&mut self) -> bool {
        if self.standbys.is_empty() {
            return false;
        }
        let events = match self.standby_reader.poll(STANDBY_BATCH, Duration::ZERO) {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "reading the standbys' changelogs failed; retrying");
                return false;
            }
        };
        let mut advanced = false;
        for event in events {
            match event {
                RestoreEvent::Records {
                    task,
                    store,
                    records,
                    next_offset,
                } => {
                    let Some(standby) = self.standbys.get_mut(&task) else {
                        continue;
                    };
                    advanced = true;
                    if let Err(e) = standby.apply(store, records, next_offset) {
                        tracing::warn!(task_id = %task, error = %e, "standby failed; closing it");
                        self.close_standbys(|id| id == task);
                    }
                }
                RestoreEvent::CaughtUp { task, store } => {
                    tracing::debug!(task_id = %task, store, "standby caught up with its changelog");
                }
                RestoreEvent::Done { .. } => {}
            }
        }
        if advanced && self.standbys_published.elapsed() >= PUBLISH_EVERY {
            self.standbys_published = Instant::now();
            self.report_status();
        }
        advanced
    }

    /// Whether a standby is still behind its changelog (the thread then
    /// polls without waiting).
    pub fn standbys_behind(&self) -> bool {
        !self.standbys.is_empty() && self.standby_reader.is_behind()
    }

    /// The changelog offset sums the standbys have reached (-1: nothing
    /// yet).
    pub fn standby_offset_sums(&self) -> BTreeMap<TaskId, i64> {
        self.standbys
            .values()
            .map(|s| (s.id(), s.offset_sum().unwrap_or(-1)))
            .collect()
    }
}
