//! A standby (or warm-up) task: the task's stores open on this process with
//! no processor instance, kept close behind the active's changelog writes
//! so that taking the task over restores only a short tail (Kafka Streams'
//! `StandbyTask`).
//!
//! Applies changelog records with their offsets in one atomic batch, as a
//! restore does. Must never call a processor, produce, or commit offsets:
//! it only reads the changelog (read_committed) and writes its own stores.

use super::state::{self, ChangelogStart, Guards};
use super::{TaskError, TaskSetup, TaskStatus};
use crate::metrics::add;
use crate::store::{StateStore, Write};
use crate::topology::TaskId;

pub struct StandbyTask {
    id: TaskId,
    stores: Vec<StateStore>,
    guards: Guards,
    setup: TaskSetup,
    span: tracing::Span,
}

impl StandbyTask {
    /// Opens the task's stores (RocksDB replays its WAL here).
    pub fn new(id: TaskId, setup: &TaskSetup) -> Result<Self, TaskError> {
        let (stores, guards) = state::open_all(id, setup)?;
        Ok(Self::on_stores(id, setup, stores, guards))
    }

    /// A standby on stores already open (a demoted active's, after its
    /// last commit).
    pub fn on_stores(
        id: TaskId,
        setup: &TaskSetup,
        stores: Vec<StateStore>,
        guards: Guards,
    ) -> Self {
        let topology = &setup.component.topology().name;
        let span = tracing::info_span!("standby", task_id = %id, topology = %topology);
        span.in_scope(|| tracing::info!("standby task opened"));
        StandbyTask {
            id,
            stores,
            guards,
            setup: setup.clone(),
            span,
        }
    }

    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Where each logged store's tailing starts.
    pub fn changelog_starts(&self) -> Result<Vec<ChangelogStart>, TaskError> {
        state::changelog_starts(self.id, &self.stores, &self.setup.plan)
    }

    /// Drops the local copy of `store` (it diverged from the changelog).
    pub fn wipe_store(&mut self, store: usize) -> Result<(), TaskError> {
        state::wipe_store(self.id, &mut self.stores, &self.guards, &self.setup, store)
    }

    /// Applies changelog records up to `next_offset` to store `store`.
    pub fn apply(
        &mut self,
        store: usize,
        records: Vec<Write>,
        next_offset: i64,
    ) -> Result<(), TaskError> {
        add(&self.setup.metrics.standby_records, records.len() as u64);
        // Written as it comes: a standby's stores are read on promotion.
        state::apply_changelog(self.id, &mut self.stores, store, records, next_offset, 0)
    }

    /// The changelog offsets reached, summed (what the subscription reports).
    pub fn offset_sum(&self) -> Option<i64> {
        state::offset_sum(&self.stores, &self.setup.plan)
    }

    /// Readers of the applied state, for stale interactive queries.
    pub fn readers(&self) -> Vec<(String, std::sync::Arc<dyn crate::store::StoreReader>)> {
        state::readers(&self.stores)
    }

    /// The open stores, for an active task to take over (promotion).
    pub fn into_stores(self) -> (Vec<StateStore>, Guards) {
        self.span
            .in_scope(|| tracing::info!("standby task promoted to active"));
        (self.stores, self.guards)
    }

    /// Flushes and checkpoints the stores, then closes them.
    pub fn close(mut self) {
        let _span = self.span.clone().entered();
        state::flush_and_checkpoint(&mut self.stores, &self.guards, &self.setup);
        tracing::info!("standby task closed");
    }

    /// What the admin API shows for this standby.
    pub fn status(&self, thread: usize, lag: i64) -> TaskStatus {
        TaskStatus {
            task_id: self.id.to_string(),
            thread: thread + 1,
            topology: self.setup.component.topology().name.clone(),
            version: self.setup.version,
            component: self.setup.component.label(),
            state: "STANDBY".into(),
            lag: Some(lag),
            error: None,
        }
    }
}
