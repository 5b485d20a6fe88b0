//! The stores of one task on this process, whatever runs on them: opening
//! them under `<state.dir>/<application.id>/<store>/<task>/`, where each
//! logged store's changelog restore starts, wiping a copy that diverged
//! from its changelog, and the flush and checkpoint of a clean close.
//!
//! Shared by active tasks (whose processor instance holds the stores while
//! it runs) and standby tasks (which hold them with no instance), so a
//! promotion or demotion hands the same open stores over. Must never call
//! a processor or produce to Kafka.

use std::collections::BTreeMap;

use super::DiskStores;
use super::{TaskError, TaskSetup};
use crate::store::KeyValueBackend;
#[cfg(feature = "server")]
use crate::store::RocksBackend;
use crate::store::{MemoryBackend, StateStore, StoreError, StoreReader, TaskDirGuard, Write};
use crate::topics::TopicPlan;
use crate::topology::{StoreSpec, TaskId};

/// A logged store of a task and the changelog offset its local copy has.
#[derive(Debug, Clone)]
pub struct ChangelogStart {
    pub store: usize,
    pub name: String,
    pub topic: String,
    pub recorded: Option<i64>,
    /// `topic` is the store's source: restored up to the committed offset.
    pub from_source: bool,
}

/// Directory claims of a task's persistent stores, by store name.
pub(crate) type Guards = BTreeMap<String, TaskDirGuard>;

/// Opens every store `setup`'s topology declares for task `id`.
pub(super) fn open_all(
    id: TaskId,
    setup: &TaskSetup,
) -> Result<(Vec<StateStore>, Guards), TaskError> {
    let mut stores = Vec::new();
    let mut guards = BTreeMap::new();
    for spec in &setup.component.topology().stores {
        let (store, guard) =
            open_store(spec, id, setup).map_err(|source| TaskError::Store { task: id, source })?;
        stores.push(store);
        if let Some(g) = guard {
            guards.insert(spec.name.clone(), g);
        }
    }
    Ok((stores, guards))
}

/// Deletes task `id`'s local copy of its persistent stores (all, or the
/// one named `only`), which must be closed: the next open starts empty and
/// is restored from the changelog.
pub(super) fn wipe(id: TaskId, setup: &TaskSetup, only: Option<&str>) -> Result<(), StoreError> {
    let Some(disk) = &setup.disk else {
        return Ok(());
    };
    let stores = setup.component.topology().stores.iter();
    for spec in stores.filter(|s| s.persistent && only.is_none_or(|name| name == s.name)) {
        let guard = disk.dirs.claim(&spec.name, id)?;
        disk.dirs.wipe(&guard)?;
    }
    Ok(())
}

/// Opens one store: RocksDB under the state directory for a persistent
/// store (its WAL is replayed here), memory otherwise, without a disk or
/// without the `server` feature.
pub(super) fn open_store(
    spec: &StoreSpec,
    task: TaskId,
    setup: &TaskSetup,
) -> Result<(StateStore, Option<TaskDirGuard>), StoreError> {
    if cfg!(feature = "server")
        && let Some(disk) = setup.disk.as_ref().filter(|_| spec.persistent)
    {
        let guard = disk.dirs.claim(&spec.name, task)?;
        disk.dirs.clear_checkpoint(&guard);
        let backend = open_rocks(spec, task, &guard, disk)?;
        return Ok((StateStore::new(spec.clone(), task, backend), Some(guard)));
    }
    let store = StateStore::new(spec.clone(), task, Box::new(MemoryBackend::new()));
    Ok((store, None))
}

#[cfg(feature = "server")]
fn open_rocks(
    spec: &StoreSpec,
    task: TaskId,
    guard: &TaskDirGuard,
    disk: &DiskStores,
) -> Result<Box<dyn KeyValueBackend>, StoreError> {
    let backend =
        RocksBackend::open(&guard.path, &disk.rocks).map_err(|source| StoreError::Backend {
            store: spec.name.clone(),
            task: task.to_string(),
            source,
        })?;
    Ok(Box::new(backend))
}

/// The changelog topic of store `name`, if it is logged.
pub(super) fn changelog_of<'a>(plan: &'a TopicPlan, name: &str) -> Option<&'a str> {
    plan.changelogs
        .iter()
        .find(|(s, _)| s == name)
        .map(|(_, t)| t.as_str())
}

/// Where each logged store's restore starts.
pub(super) fn changelog_starts(
    id: TaskId,
    stores: &[StateStore],
    plan: &TopicPlan,
) -> Result<Vec<ChangelogStart>, TaskError> {
    let mut out = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        let Some(topic) = changelog_of(plan, store.name()) else {
            continue;
        };
        let recorded = store
            .changelog_offset()
            .map_err(|source| TaskError::Store { task: id, source })?;
        out.push(ChangelogStart {
            store: i,
            name: store.name().to_string(),
            topic: topic.to_string(),
            recorded,
            from_source: plan.source_changelogs.iter().any(|s| s == store.name()),
        });
    }
    Ok(out)
}

/// The sum of the changelog offsets the logged stores have reached (the
/// group leader weighs placement by it), `None` if none has one.
pub(super) fn offset_sum(stores: &[StateStore], plan: &TopicPlan) -> Option<i64> {
    let offsets: Vec<i64> = stores
        .iter()
        .filter(|s| changelog_of(plan, s.name()).is_some())
        .filter_map(|s| s.changelog_offset().ok().flatten())
        .collect();
    (!offsets.is_empty()).then(|| offsets.iter().sum())
}

/// Readers of the committed state of the stores that share one, for
/// interactive queries.
pub(super) fn readers(stores: &[StateStore]) -> Vec<(String, std::sync::Arc<dyn StoreReader>)> {
    stores
        .iter()
        .filter_map(|s| Some((s.name().to_string(), s.reader()?)))
        .collect()
}

/// Applies changelog records up to `next_offset` to store `index` (a
/// restore, which may hold up to `hold_bytes` of them, see
/// `StateStore::restore`, or a standby's tail, which holds none).
pub(super) fn apply_changelog(
    id: TaskId,
    stores: &mut [StateStore],
    index: usize,
    records: Vec<Write>,
    next_offset: i64,
    hold_bytes: usize,
) -> Result<(), TaskError> {
    stores[index]
        .restore(records, next_offset, hold_bytes)
        .map_err(|source| TaskError::Store { task: id, source })
}

/// Without RocksDB no store is opened on disk, so none is reopened.
#[cfg(not(feature = "server"))]
fn open_rocks(
    spec: &StoreSpec,
    task: TaskId,
    _guard: &TaskDirGuard,
    _disk: &DiskStores,
) -> Result<Box<dyn KeyValueBackend>, StoreError> {
    Err(StoreError::Backend {
        store: spec.name.clone(),
        task: task.to_string(),
        source: crate::store::BackendError::new("RocksDB is not built in (feature `server`)"),
    })
}

/// Drops the local copy of store `index` so it restores from scratch.
pub(super) fn wipe_store(
    id: TaskId,
    stores: &mut [StateStore],
    guards: &Guards,
    setup: &TaskSetup,
    index: usize,
) -> Result<(), TaskError> {
    let err = |source| TaskError::Store { task: id, source };
    let spec = stores[index].spec().clone();
    let (Some(guard), Some(disk)) = (guards.get(&spec.name), &setup.disk) else {
        return Ok(()); // in memory: already empty
    };
    // Queries must let go of the old database before it is deleted.
    setup.queries.remove_task(id);
    // Close the database before deleting its files.
    let placeholder = StateStore::new(spec.clone(), id, Box::new(MemoryBackend::new()));
    drop(std::mem::replace(&mut stores[index], placeholder));
    disk.dirs.wipe(guard).map_err(err)?;
    let backend = open_rocks(&spec, id, guard, disk).map_err(err)?;
    stores[index] = StateStore::new(spec, id, backend);
    Ok(())
}

/// The clean-close half that touches disk: committed state flushed, and
/// each store's changelog offset written beside it as a checkpoint.
pub(super) fn flush_and_checkpoint(stores: &mut [StateStore], guards: &Guards, setup: &TaskSetup) {
    let dirs = setup.disk.as_ref().map(|d| d.dirs.clone());
    for store in stores {
        if let Err(e) = store.flush() {
            tracing::warn!(store = %store.name(), error = %e, "store flush on close failed");
            continue;
        }
        if let (Some(dirs), Some(guard), Ok(Some(offset))) =
            (&dirs, guards.get(store.name()), store.changelog_offset())
            && let Err(e) = dirs.write_checkpoint(guard, offset)
        {
            tracing::warn!(store = %store.name(), error = %e, "writing the store checkpoint failed");
        }
    }
}
