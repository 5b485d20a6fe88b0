//! Which task runs where, on which version, in which state: written by the
//! task managers, read by the admin API (`GET /v1/tasks`). Reporting only;
//! nothing decides anything from it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::topology::TaskId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub task_id: String,
    pub thread: usize,
    pub topology: String,
    pub version: u32,
    pub component: String,
    /// `RESTORING`, `RUNNING`, `STANDBY` or `FAILED`.
    pub state: Cow<'static, str>,
    /// A standby's records behind the changelogs' end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    /// Why a `FAILED` task failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct TaskRegistry {
    tasks: Mutex<BTreeMap<TaskId, TaskStatus>>,
}

impl TaskRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<TaskId, TaskStatus>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set(&self, id: TaskId, status: TaskStatus) {
        self.lock().insert(id, status);
    }

    pub fn remove(&self, id: TaskId) {
        self.lock().remove(&id);
    }

    pub fn snapshot(&self) -> Vec<TaskStatus> {
        self.lock().values().cloned().collect()
    }
}
