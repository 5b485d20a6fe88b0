//! Errors of the task layer, each naming the task and, for guest failures,
//! the record, and each with a [`TaskRecovery`] class saying how the thread
//! goes on (Kafka Streams' `TaskCorruptedException`,
//! `TaskMigratedException`, a processor's exception, a fatal error). Only
//! the fatal class ends the thread, and with it the process.

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

/// How the task manager recovers from a [`TaskError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskRecovery {
    /// The task's processor failed (a trap, a returned error, a cap), or
    /// its store could not be read or written: fail that task only. It is
    /// closed without committing and retried from its last commit with
    /// backoff, its state kept.
    FailTask(TaskId),
    /// The task's local state is corrupt: close it, wipe its stores and
    /// fail it, so its retry restores them from the changelogs.
    RestoreTask(TaskId),
    /// The thread's tasks start again from the last commit: the group or
    /// the transaction coordinator refused a commit (fenced producer,
    /// rebalance), a flush failed, the consumer could not pause or resume,
    /// a changelog stayed unreadable through the reader's own retries.
    RestartFromLastCommit,
    /// Nothing the thread can do (a client that cannot be created, the
    /// state directory gone): the thread stops and the process fails.
    Fatal,
}

impl TaskError {
    /// This error's recovery class.
    pub fn recovery(&self) -> TaskRecovery {
        match self {
            TaskError::Guest { task, .. } => TaskRecovery::FailTask(*task),
            TaskError::Store { task, source } if source.is_corrupt() => {
                TaskRecovery::RestoreTask(*task)
            }
            TaskError::Store {
                task,
                source: StoreError::Backend { .. },
            } => TaskRecovery::FailTask(*task),
            TaskError::Store { .. } => TaskRecovery::Fatal,
            TaskError::Commit(_) if self.is_recoverable_by_reset() => {
                TaskRecovery::RestartFromLastCommit
            }
            TaskError::Commit(_) => TaskRecovery::Fatal,
            TaskError::Restore(RestoreError::Kafka { .. }) | TaskError::Consumer(_) => {
                TaskRecovery::RestartFromLastCommit
            }
            TaskError::Restore(RestoreError::Create { .. }) | TaskError::Fatal(_) => {
                TaskRecovery::Fatal
            }
        }
    }

    /// Whether closing the thread's tasks dirty and starting them again
    /// from the last commit recovers (Kafka Streams' `TaskMigrated` and
    /// fenced-producer handling): transaction, flush and produce failures
    /// and commits the group refused. Store, guest and client-setup
    /// failures are not.
    fn is_recoverable_by_reset(&self) -> bool {
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

    /// The store this error is about, if it is one store's.
    pub fn store(&self) -> Option<&str> {
        match self {
            TaskError::Store {
                source: StoreError::Backend { store, .. },
                ..
            } => Some(store),
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

#[cfg(test)]
mod tests {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    use super::*;
    use crate::runtime::GuestError;
    use crate::store::BackendError;

    fn store_error(corrupt: bool) -> TaskError {
        let source = if corrupt {
            BackendError::corrupt(
                "RocksDB open: Corruption: CURRENT file does not end with newline",
            )
        } else {
            BackendError::new("RocksDB write: IO error: No space left on device")
        };
        TaskError::Store {
            task: TaskId::for_partition(3),
            source: StoreError::Backend {
                store: "counts".into(),
                task: "0_3".into(),
                source,
            },
        }
    }

    #[test]
    fn each_error_has_the_recovery_kafka_streams_gives_its_kind() {
        let task = TaskId::for_partition(3);
        let guest = TaskError::Guest {
            task,
            at: "processing topic `in` partition 3 offset 7".into(),
            source: Box::new(GuestError::Failed {
                component: "c@sha256:00".into(),
                call: "process",
                message: "bad record".into(),
                batch_index: Some(0),
            }),
        };
        assert_eq!(guest.recovery(), TaskRecovery::FailTask(task));
        assert_eq!(store_error(false).recovery(), TaskRecovery::FailTask(task));
        assert_eq!(
            store_error(true).recovery(),
            TaskRecovery::RestoreTask(task)
        );
        assert_eq!(store_error(true).store(), Some("counts"));
        let gone = TaskError::Store {
            task,
            source: StoreError::Io {
                path: "/state".into(),
                source: std::io::Error::other("gone"),
            },
        };
        assert_eq!(gone.recovery(), TaskRecovery::Fatal);
        let unflushed = TaskError::Commit(CommitError::Flush(
            KafkaError::Flush(RDKafkaErrorCode::MessageTimedOut).into(),
        ));
        assert_eq!(unflushed.recovery(), TaskRecovery::RestartFromLastCommit);
        assert_eq!(
            TaskError::Commit(CommitError::Create(
                KafkaError::ClientCreation("bad".into()).into()
            ))
            .recovery(),
            TaskRecovery::Fatal
        );
        let unreadable = TaskError::Restore(RestoreError::Kafka {
            topic: "app-counts-changelog".into(),
            partition: 3,
            source: KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure).into(),
        });
        assert_eq!(unreadable.recovery(), TaskRecovery::RestartFromLastCommit);
        assert_eq!(
            TaskError::Consumer("pausing partitions of task 0_3: unknown partition".into())
                .recovery(),
            TaskRecovery::RestartFromLastCommit
        );
        assert_eq!(
            TaskError::Fatal("no state directory".into()).recovery(),
            TaskRecovery::Fatal
        );
    }
}
