//! Errors of the task layer, each naming the task and, for guest failures,
//! the record. The variant says what recovery is needed: a guest failure
//! fails its task (the application stops without committing it); the others
//! are infrastructure failures that stop the stream thread.

use crate::changelog::RestoreError;
use crate::commit::CommitError;
use crate::runtime::GuestError;
use crate::store::StoreError;
use crate::topology::TaskId;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The processor trapped or returned an error. `at` says where
    /// ("processing topic `t` partition 0 offset 42", "in init", …).
    #[error("task {task} failed {at}: {source}")]
    Guest {
        task: TaskId,
        at: String,
        source: Box<GuestError>,
    },
    #[error("task {task}: {source}")]
    Store { task: TaskId, source: StoreError },
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("restoring: {0}")]
    Restore(#[from] RestoreError),
    #[error("kafka consumer: {0}")]
    Consumer(String),
    #[error("fatal client error: {0}")]
    Fatal(String),
}

impl TaskError {
    /// Whether closing the thread's tasks dirty and starting them again
    /// from the last commit recovers (Kafka Streams' `TaskMigrated` and
    /// fenced-producer handling): transaction, flush and produce failures
    /// and commits the group refused. Store, guest and client-setup
    /// failures are not.
    pub fn is_recoverable_by_reset(&self) -> bool {
        use crate::commit::CommitError as C;
        match self {
            TaskError::Commit(c) => match c {
                C::Produce { .. }
                | C::Flush(_)
                | C::Transaction { .. }
                | C::SendOffsets { .. }
                | C::NoGroupMetadata
                | C::MissingChangelogOffset { .. } => true,
                C::Offsets(e) => e.recovery() != crate::member::Recovery::Fatal,
                C::OffsetList(_) | C::Create(_) | C::Store(_) => false,
            },
            _ => false,
        }
    }

    /// The task whose processor caused this error (a trap, a returned
    /// error, a broken memory cap or CPU deadline), if one did: such an
    /// error fails that task only.
    pub fn failed_by_processor(&self) -> Option<TaskId> {
        match self {
            TaskError::Guest { task, .. } => Some(*task),
            _ => None,
        }
    }

    /// The task this error belongs to, if it is one task's.
    pub fn task(&self) -> Option<TaskId> {
        match self {
            TaskError::Guest { task, .. } | TaskError::Store { task, .. } => Some(*task),
            _ => None,
        }
    }
}
