//! Stream tasks: one sub-topology on one partition, with its processor
//! instance and stores ([`StreamTask`]), and the [`TaskManager`] that creates,
//! restores, runs, commits and closes them as the group assigns partitions.
//!
//! A task moves RESTORING → RUNNING (after every logged store caught up with
//! its changelog; only then is the processor's `init` called) → closed.
//! Records arriving while restoring are held, not dropped.
//!
//! A standby task ([`StandbyTask`]) holds the same stores with no
//! processor and tails their changelogs; promotion and demotion hand the
//! open stores over ([`state`] owns opening, wiping and checkpointing them).

mod error;
mod manager;
mod registry;
mod standby;
mod state;
mod stream_task;
mod stream_time;

pub use error::{TaskError, TaskRecovery};
#[cfg(test)]
pub(crate) use manager::fixtures;
pub use manager::{Clients, TaskManager, TaskManagerSetup};
pub use registry::{TaskRegistry, TaskStatus};
pub use standby::StandbyTask;
pub use state::ChangelogStart;
pub use stream_task::{DiskStores, ProcessingErrors, StreamTask, TaskSetup, TaskState};
