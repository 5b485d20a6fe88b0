//! `<state.dir>/<application.id>`: the per-(store, task) directories under
//! it, the process lock on it, and cleanup of directories no task owns.
//!
//! Layout: `<state.dir>/<application.id>/<store>/<task>/` (one RocksDB each)
//! and `<state.dir>/<application.id>/.lock`, held (flock) for the life of the
//! process so two processes never open the same state. Within the process a
//! [`TaskDirGuard`] marks a directory as live; cleanup never touches a live
//! one. Every path is opened through a `cap_std` directory handle, so nothing
//! here can reach outside the state directory. Must never open databases:
//! that is the backends' job.
//!
//! Also kept here, as Kafka Streams keeps them in its state directory: the
//! process id (`.process-id`, a UUID that survives restarts so the group
//! leader recognises whose state is on this disk) and a checkpoint per
//! (store, task) directory (`weir.checkpoint`: the changelog offset the
//! local copy reached when the store was last closed cleanly), from which
//! the offset sums of tasks this process has on disk are reported to the
//! leader.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use super::StoreError;
use crate::topology::TaskId;

type Live = Arc<Mutex<BTreeSet<(String, TaskId)>>>;

/// The checkpoint file inside a (store, task) directory.
const CHECKPOINT: &str = "weir.checkpoint";

pub struct StateDirectory {
    root: PathBuf,
    dir: Dir,
    live: Live,
    _lock: std::fs::File,
}

impl std::fmt::Debug for StateDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDirectory")
            .field("root", &self.root)
            .finish()
    }
}

/// A (store, task) directory in use. Dropping it lets cleanup consider the
/// directory again.
#[derive(Debug)]
pub struct TaskDirGuard {
    key: (String, TaskId),
    live: Live,
    /// Absolute path, for the backend to open.
    pub path: PathBuf,
}

impl Drop for TaskDirGuard {
    fn drop(&mut self) {
        lock(&self.live).remove(&self.key);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl StateDirectory {
    /// Creates `<state_dir>/<application_id>` if needed and locks it.
    pub fn open(state_dir: &Path, application_id: &str) -> Result<Self, StoreError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        std::fs::create_dir_all(state_dir).map_err(io(state_dir))?;
        let base = Dir::open_ambient_dir(state_dir, ambient_authority()).map_err(io(state_dir))?;
        let root = state_dir.join(application_id);
        base.create_dir_all(application_id).map_err(io(&root))?;
        let dir = base.open_dir(application_id).map_err(io(&root))?;
        let mut options = cap_std::fs::OpenOptions::new();
        options.create(true).truncate(false).read(true).write(true);
        let lock_file = dir
            .open_with(".lock", &options)
            .map_err(io(&root))?
            .into_std();
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked { path: root });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StoreError::Io { path: root, source });
            }
        }
        Ok(StateDirectory {
            root,
            dir,
            live: Live::default(),
            _lock: lock_file,
        })
    }

    /// Whether `.process-id` exists (false for a state directory that is
    /// new or was emptied, e.g. an ephemeral disk after a pod restart).
    pub fn has_process_id(&self) -> bool {
        self.dir.exists(".process-id")
    }

    /// The process id kept in `.process-id`, created on first use.
    pub fn process_id(&self) -> Result<u128, StoreError> {
        let io = |source| StoreError::Io {
            path: self.root.join(".process-id"),
            source,
        };
        if let Ok(text) = self.dir.read_to_string(".process-id")
            && let Ok(id) = u128::from_str_radix(text.trim(), 16)
        {
            return Ok(id);
        }
        let mut bytes = [0u8; 16];
        std::io::Read::read_exact(
            &mut std::fs::File::open("/dev/urandom").map_err(io)?,
            &mut bytes,
        )
        .map_err(io)?;
        let id = u128::from_be_bytes(bytes);
        self.dir
            .write(".process-id", format!("{id:032x}\n"))
            .map_err(io)?;
        Ok(id)
    }

    /// Records the changelog offset a store's local copy reached, at a
    /// clean close.
    pub fn write_checkpoint(&self, guard: &TaskDirGuard, offset: i64) -> Result<(), StoreError> {
        let relative = format!("{}/{CHECKPOINT}", Self::relative(&guard.key.0, guard.key.1));
        self.dir
            .write(&relative, format!("{offset}\n"))
            .map_err(|source| StoreError::Io {
                path: guard.path.join(CHECKPOINT),
                source,
            })
    }

    /// Removes a store's checkpoint when it is opened: from then on the
    /// live task reports its offsets, and a crash must not leave an old
    /// checkpoint claiming less lag than the store really has.
    pub fn clear_checkpoint(&self, guard: &TaskDirGuard) {
        let relative = format!("{}/{CHECKPOINT}", Self::relative(&guard.key.0, guard.key.1));
        let _ = self.dir.remove_file(relative);
    }

    /// Per task with checkpointed state on this disk, the sum of its
    /// stores' checkpointed changelog offsets. Tasks whose directories have
    /// no checkpoint (never closed cleanly) are left out: unknown state
    /// counts as none.
    pub fn checkpointed_offset_sums(&self) -> std::collections::BTreeMap<TaskId, i64> {
        let mut sums = std::collections::BTreeMap::new();
        let Ok(stores) = self.dir.entries() else {
            return sums;
        };
        for store in stores.flatten() {
            let name = store.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let Ok(store_dir) = store.open_dir() else {
                continue;
            };
            let Ok(tasks) = store_dir.entries() else {
                continue;
            };
            for task in tasks.flatten() {
                let Ok(id) = task.file_name().to_string_lossy().parse::<TaskId>() else {
                    continue;
                };
                let path = format!("{}/{CHECKPOINT}", task.file_name().to_string_lossy());
                if let Ok(text) = store_dir.read_to_string(path)
                    && let Ok(offset) = text.trim().parse::<i64>()
                {
                    *sums.entry(id).or_insert(0) += offset.max(0);
                }
            }
        }
        sums
    }

    fn relative(store: &str, task: TaskId) -> String {
        format!("{store}/{task}")
    }

    /// Creates (if needed) and claims the directory of (store, task).
    pub fn claim(&self, store: &str, task: TaskId) -> Result<TaskDirGuard, StoreError> {
        let relative = Self::relative(store, task);
        let path = self.root.join(&relative);
        let key = (store.to_string(), task);
        if !lock(&self.live).insert(key.clone()) {
            return Err(StoreError::Io {
                path,
                source: std::io::Error::other("already open in this process"),
            });
        }
        let guard = TaskDirGuard {
            key,
            live: self.live.clone(),
            path: path.clone(),
        };
        self.dir
            .create_dir_all(&relative)
            .map_err(|source| StoreError::Io { path, source })?;
        Ok(guard)
    }

    /// Deletes the directory of (store, task) so the next claim starts empty
    /// (a corrupted or diverged store: it will be restored from the changelog).
    pub fn wipe(&self, guard: &TaskDirGuard) -> Result<(), StoreError> {
        let relative = Self::relative(&guard.key.0, guard.key.1);
        match self.dir.remove_dir_all(&relative) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::Io {
                    path: guard.path.clone(),
                    source,
                });
            }
        }
        self.dir
            .create_dir_all(&relative)
            .map_err(|source| StoreError::Io {
                path: guard.path.clone(),
                source,
            })
    }

    /// Deletes the directory of (store, task) for good: a store a new
    /// version no longer declares.
    pub fn remove(&self, guard: TaskDirGuard) -> Result<(), StoreError> {
        let relative = Self::relative(&guard.key.0, guard.key.1);
        match self.dir.remove_dir_all(&relative) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io {
                path: guard.path.clone(),
                source,
            }),
        }
    }

    /// Removes task directories that no task in this process holds and that
    /// were last modified more than `delay` ago. Returns what was removed.
    pub fn clean_stale(&self, delay: Duration) -> Result<Vec<PathBuf>, StoreError> {
        let io = |path: PathBuf| move |source| StoreError::Io { path, source };
        let now = SystemTime::now();
        let mut removed = Vec::new();
        for store in self.dir.entries().map_err(io(self.root.clone()))? {
            let store = store.map_err(io(self.root.clone()))?;
            let store_name = store.file_name().to_string_lossy().into_owned();
            if store_name.starts_with('.')
                || !store.file_type().map(|t| t.is_dir()).unwrap_or(false)
            {
                continue;
            }
            let store_dir = store.open_dir().map_err(io(self.root.join(&store_name)))?;
            for task in store_dir
                .entries()
                .map_err(io(self.root.join(&store_name)))?
            {
                let task = task.map_err(io(self.root.join(&store_name)))?;
                let task_name = task.file_name().to_string_lossy().into_owned();
                let Ok(task_id) = task_name.parse::<TaskId>() else {
                    continue;
                };
                // Held under the live lock so a claim cannot race the removal.
                let live = lock(&self.live);
                if live.contains(&(store_name.clone(), task_id)) {
                    continue;
                }
                let modified = task
                    .metadata()
                    .and_then(|m| m.modified())
                    .map(|t| t.into_std());
                let old_enough = modified
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|age| age >= delay);
                if old_enough {
                    let path = self.root.join(&store_name).join(&task_name);
                    store_dir
                        .remove_dir_all(&task_name)
                        .map_err(io(path.clone()))?;
                    removed.push(path);
                }
                drop(live);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_process_lock_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let first = StateDirectory::open(tmp.path(), "app").unwrap();
        let err = StateDirectory::open(tmp.path(), "app").unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("in use by another process"));
        drop(first);
        StateDirectory::open(tmp.path(), "app").unwrap();
    }

    #[test]
    fn layout_is_store_then_task() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = StateDirectory::open(tmp.path(), "app").unwrap();
        let guard = dirs.claim("counts", TaskId::for_partition(3)).unwrap();
        assert_eq!(guard.path, tmp.path().join("app/counts/0_3"));
        assert!(guard.path.is_dir());
        assert!(dirs.claim("counts", TaskId::for_partition(3)).is_err());
    }

    #[test]
    fn process_id_survives_reopening() {
        let tmp = tempfile::tempdir().unwrap();
        let first = StateDirectory::open(tmp.path(), "app")
            .unwrap()
            .process_id()
            .unwrap();
        let again = StateDirectory::open(tmp.path(), "app")
            .unwrap()
            .process_id()
            .unwrap();
        assert_eq!(first, again);
        let other = StateDirectory::open(tmp.path(), "other")
            .unwrap()
            .process_id()
            .unwrap();
        assert_ne!(first, other);
    }

    #[test]
    fn checkpoints_sum_per_task_and_clear_on_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = StateDirectory::open(tmp.path(), "app").unwrap();
        let t0 = TaskId::for_partition(0);
        let counts = dirs.claim("counts", t0).unwrap();
        let totals = dirs.claim("totals", t0).unwrap();
        let other = dirs.claim("counts", TaskId::for_partition(1)).unwrap();
        dirs.write_checkpoint(&counts, 40).unwrap();
        dirs.write_checkpoint(&totals, 2).unwrap();
        let sums = dirs.checkpointed_offset_sums();
        assert_eq!(sums.get(&t0), Some(&42));
        assert_eq!(
            sums.get(&TaskId::for_partition(1)),
            None,
            "no checkpoint: unknown"
        );
        dirs.clear_checkpoint(&counts);
        assert_eq!(dirs.checkpointed_offset_sums().get(&t0), Some(&2));
        drop(other);
    }

    #[test]
    fn cleanup_spares_live_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = StateDirectory::open(tmp.path(), "app").unwrap();
        let live = dirs.claim("counts", TaskId::for_partition(0)).unwrap();
        drop(dirs.claim("counts", TaskId::for_partition(1)).unwrap());
        std::fs::create_dir_all(tmp.path().join("app/counts/not-a-task")).unwrap();
        let removed = dirs.clean_stale(Duration::ZERO).unwrap();
        assert_eq!(removed, vec![tmp.path().join("app/counts/0_1")]);
        assert!(live.path.is_dir());
        assert!(tmp.path().join("app/counts/not-a-task").is_dir());
        // Young directories wait for the delay.
        drop(live);
        assert!(
            dirs.clean_stale(Duration::from_secs(3600))
                .unwrap()
                .is_empty()
        );
    }
}
